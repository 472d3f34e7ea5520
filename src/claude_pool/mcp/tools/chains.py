"""Chains as MCP tools: ``pool_chain``, ``pool_submit_chain``, ``pool_fan_out_chains``,
``pool_chain_result``, ``pool_cancel_chain``, and the resource ``pool://chains/{id}``.

The tools translate to :meth:`Pool.chain` and friends (see :mod:`claude_pool.chain` for what a
chain is). Skill steps are resolved by the pool's own skill registry, so a skill added at
runtime (``pool_skill_add``) can be a chain step at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from claude_pool.chain import (
    ChainIsolation,
    ChainResult,
    ChainSpec,
    ChainState,
    ChainStep,
    SkillResolver,
)
from claude_pool.errors import ChainNotFound
from claude_pool.mcp.arguments import (
    DEFAULT_WAIT_SECS,
    MAX_LIST_ITEMS,
    NOT_BOOL,
    Name,
    Prompt,
    Tags,
    TaskOverridesArg,
    TimeoutSecs,
    Verify,
    WaitSecs,
    overrides_of,
)
from claude_pool.mcp.progress import ProgressReporter, reporter_for
from claude_pool.mcp.tooling import READ_ONLY, REMOVES, RUNS_WORK, ToolContext, pool_tool
from claude_pool.pool import Pool

_MAX_STEPS = 100
_MAX_RETRIES = 10


# ── results ─────────────────────────────────────────────────────────


class ChainOutcome(BaseModel):
    """A chain's state and, once it has ended, its outcome; ``chain`` has every step."""

    chain_id: str
    state: ChainState
    finished: bool = Field(description="True once the chain has ended.")
    success: bool = Field(description="True when every step completed.")
    output: str | None = Field(None, description="The last step's output, once it completed.")
    current_step: str | None = Field(None, description="The running step, while it runs.")
    total_cost_microdollars: int = Field(description="Every step attempt's real cost so far.")
    error: str | None = None
    kept_branch: str | None = Field(
        None, description="Git branch kept after the chain because it holds its work."
    )
    chain: ChainResult = Field(description="Every step: state, output, variables, attempts, cost.")
    note: str | None = Field(None, description="What to do next, when there is something.")

    @classmethod
    def of(cls, result: ChainResult, note: str | None = None) -> ChainOutcome:
        finished = result.state.is_terminal
        if note is None and not finished:
            note = "not finished yet; call pool_chain_result with wait=true to wait for it"
        return cls(
            chain_id=result.id,
            state=result.state,
            finished=finished,
            success=result.success,
            output=result.output,
            current_step=result.current_step_name,
            total_cost_microdollars=result.total_cost_microdollars,
            error=result.error,
            kept_branch=result.kept_branch,
            chain=result,
            note=note,
        )


class ChainSubmitted(BaseModel):
    chain_id: str
    note: str = "started; follow it with pool_chain_result (wait=true blocks until it ends)"


class ChainFanOutResult(BaseModel):
    chains: list[ChainOutcome] = Field(description="One outcome per chain, in input order.")
    succeeded: int
    failed: int
    total_cost_microdollars: int


# ── arguments ───────────────────────────────────────────────────────


StepDependsOn = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=256)]] | None,
    Field(max_length=MAX_LIST_ITEMS, description="Task ids this step's task also waits for."),
]


class ChainStepArg(BaseModel):
    """One step: a prompt, or a skill with args (see pool_chain)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(None, description="Unique in the chain (default step-<n>).")
    prompt: Prompt | None = None
    skill: Name | None = Field(None, description="A task skill to run (pool_skill_list).")
    args: dict[Name, str] = Field(default_factory=dict, description="The skill's arguments.")
    overrides: TaskOverridesArg | None = None
    retries: Annotated[
        int,
        Field(ge=0, le=_MAX_RETRIES, description="Extra attempts after a failure."),
        NOT_BOOL,
    ] = 0
    recovery_prompt: Prompt | None = Field(
        None, description="Runs once the retries are used up; {error} is the last failure."
    )
    output_vars: dict[Name, Name] = Field(
        default_factory=dict, description="Variable name -> dot path into the JSON output."
    )
    timeout_secs: TimeoutSecs = None
    verify: Verify = None
    depends_on: StepDependsOn = None

    @model_validator(mode="after")
    def _is_a_step(self) -> Self:
        # Check the engine's own rules now, so the error names this step of the request.
        try:
            self.to_step()
        except ValidationError as exc:
            raise ValueError("; ".join(str(e["msg"]) for e in exc.errors())) from None
        return self

    def to_step(self) -> ChainStep:
        fields = self.model_dump(exclude_unset=True, exclude={"overrides"})
        if fields.get("depends_on") is None:
            fields.pop("depends_on", None)
        if self.overrides is not None:
            fields["overrides"] = overrides_of(self.overrides)
        return ChainStep.model_validate(fields)


ChainDependsOn = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=256)]] | None,
    Field(
        max_length=MAX_LIST_ITEMS,
        description=(
            "Task ids (already submitted) that must complete before the chain's steps run; "
            "step prompts may use {{<task id>.output}}. If one fails or is cancelled, the "
            "chain is cancelled, naming it."
        ),
    ),
]

Steps = Annotated[
    list[ChainStepArg],
    Field(
        min_length=1,
        max_length=_MAX_STEPS,
        description=(
            "The steps, in order. Each has a prompt (or a skill with args), and optionally a "
            "name, overrides, retries, recovery_prompt (may use {error}), output_vars "
            '(variable -> dot path into the step\'s JSON output, e.g. {"branch": "branch"}) and '
            "timeout_secs, verify (a check command) and depends_on (task ids this step also "
            "waits for). Prompts may use {previous_output} and {steps.<step>.<var>}."
        ),
    ),
]
Isolation = Annotated[
    ChainIsolation,
    Field(
        description=(
            "Where the steps run: worktree (default: a git worktree of the chain's own, its "
            "work kept on branch claude-pool/<chain id>), clone (a fresh git clone), or none "
            "(the pool's directory, shared with everything else)."
        )
    ),
]
ChainName = Annotated[Name | None, Field(description="A label for the chain.")]
ChainIdArg = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        description="A chain id as returned by pool_submit_chain or pool_chain (chain-...).",
    ),
]


class ChainSpecArg(BaseModel):
    """One chain of pool_fan_out_chains."""

    steps: Steps
    isolation: Isolation = ChainIsolation.WORKTREE
    name: ChainName = None
    tags: Tags | None = None
    depends_on: ChainDependsOn = None

    def to_spec(self) -> ChainSpec:
        return _spec(self.steps, self.isolation, self.name, self.tags, self.depends_on)

    def to_mapping(self) -> dict[str, Any]:
        """The chain as ``Pool.submit_chain`` takes it (validated there)."""
        return {
            "steps": [step.to_step() for step in self.steps],
            "isolation": self.isolation,
            "name": self.name,
            "tags": self.tags or [],
            "depends_on": self.depends_on or [],
        }


def _spec(
    steps: list[ChainStepArg],
    isolation: ChainIsolation,
    name: str | None,
    tags: list[str] | None,
    depends_on: list[str] | None = None,
) -> ChainSpec:
    return ChainSpec(
        steps=[step.to_step() for step in steps], isolation=isolation, name=name,
        tags=tags or [], depends_on=depends_on or [],
    )  # fmt: skip


# ── following a chain ───────────────────────────────────────────────


async def follow_chain(
    pool: Pool, reporter: ProgressReporter, chain_id: str, timeout: float | None
) -> ChainResult:
    """Wait for a chain, reporting its events (steps starting and ending, its tasks' progress)
    as they happen. ``TimeoutError`` after ``timeout`` seconds."""
    reporter.watch_chain(chain_id)
    return await pool.wait_chain(chain_id, timeout)


async def run_chain_reporting(
    pool: Pool, ctx: ToolContext, spec: ChainSpec, resolver: SkillResolver | None = None
) -> ChainResult:
    """Start ``spec`` and wait for it with progress; cancelling the call cancels the chain."""
    async with pool.chains_cancelled_with_caller() as mine, reporter_for(pool, ctx) as reporter:
        chain_id = await pool.submit_chain(spec, skill_resolver=resolver)
        mine.add(chain_id)
        reporter.note(f"{chain_id}: started ({len(spec.steps)} steps)")
        return await follow_chain(pool, reporter, chain_id, None)


# ── tools ───────────────────────────────────────────────────────────


def register_chain_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_chain, pool_submit_chain, pool_fan_out_chains, pool_chain_result,
    pool_cancel_chain, and the pool://chains/{id} resource. Skill steps resolve with the
    pool's own skills (``Pool.skills``), which also refuses an unknown skill up front."""
    resolver: SkillResolver | None = None

    @pool_tool(server, "pool_chain", RUNS_WORK, "Run a chain of steps and wait for it")
    async def pool_chain(
        steps: Steps,
        ctx: ToolContext,
        isolation: Isolation = ChainIsolation.WORKTREE,
        name: ChainName = None,
        tags: Tags | None = None,
        depends_on: ChainDependsOn = None,
    ) -> ChainOutcome:
        """Run ordered steps, each as one pool task that starts where the previous one ended,
        and wait for the whole chain. Use it for staged work (plan, then implement, then test)
        where each step needs the one before; for independent work use pool_fan_out.

        A step is a prompt, or a skill (see pool_skill_list) with args. Placeholders:
        {previous_output} is the prior step's output; {steps.<step>.<var>} is an output
        variable of an earlier step (output_vars map a variable to a dot path into that step's
        JSON output, e.g. ask for JSON with overrides.json_schema). A failed step is retried
        `retries` times, then its recovery_prompt runs ({error} says what failed); if that fails
        too the chain fails and the rest is skipped. By default the chain works in a git
        worktree of its own and keeps its work on branch claude-pool/<chain id>.

        Returns the chain's state, the last step's output and every step's output, variables
        and real cost (failed attempts included). Progress notifications report each step and
        the running task's activity. Costs money; steps may edit files if their permission mode
        allows it. Cancelling this call cancels the chain."""
        spec = _spec(steps, isolation, name, tags, depends_on)
        return ChainOutcome.of(await run_chain_reporting(pool, ctx, spec, resolver))

    @pool_tool(server, "pool_submit_chain", RUNS_WORK, "Start a chain in the background")
    async def pool_submit_chain(
        steps: Steps,
        isolation: Isolation = ChainIsolation.WORKTREE,
        name: ChainName = None,
        tags: Tags | None = None,
        depends_on: ChainDependsOn = None,
    ) -> ChainSubmitted:
        """Start a chain (see pool_chain for steps and placeholders) and return its id at once.
        Follow it with pool_chain_result (current step, the running step's output so far,
        finished steps), wait for it with pool_chain_result wait=true, stop it with
        pool_cancel_chain. Costs money as it runs."""
        spec = _spec(steps, isolation, name, tags, depends_on)
        return ChainSubmitted(chain_id=await pool.submit_chain(spec, skill_resolver=resolver))

    @pool_tool(server, "pool_fan_out_chains", RUNS_WORK, "Run several chains in parallel")
    async def pool_fan_out_chains(
        chains: Annotated[
            list[ChainSpecArg],
            Field(
                min_length=1,
                max_length=MAX_LIST_ITEMS,
                description="Independent chains, each with its steps (see pool_chain).",
            ),
        ],
        ctx: ToolContext,
    ) -> ChainFanOutResult:
        """Run independent chains side by side (e.g. the same pipeline for several issues) and
        wait for all of them. Returns one outcome per chain, in input order; a chain that fails,
        or could not even start, never discards the others. Progress notifications count
        finished chains. Costs money; cancelling this call cancels the chains."""
        total = len(chains)
        # The engine validates each spec and reports one it refuses in that chain's place.
        specs = [arg.to_mapping() for arg in chains]
        done = 0
        async with reporter_for(pool, ctx) as reporter:
            reporter.advance(0, total, f"starting {total} chains")

            def finished(index: int, result: ChainResult) -> None:
                nonlocal done
                done += 1
                reporter.advance(done, total, f"{done}/{total} done: {result.id} {result.state}")

            results = await pool.fan_out_chains(specs, skill_resolver=resolver, on_item=finished)
        outcomes = [ChainOutcome.of(result) for result in results]
        items = [o for o in outcomes if o is not None]
        succeeded = sum(1 for o in items if o.success)
        return ChainFanOutResult(
            chains=items,
            succeeded=succeeded,
            failed=len(items) - succeeded,
            total_cost_microdollars=sum(o.total_cost_microdollars for o in items),
        )

    @pool_tool(server, "pool_chain_result", READ_ONLY, "Get (or wait for) a chain's result")
    async def pool_chain_result(
        chain_id: ChainIdArg,
        ctx: ToolContext,
        wait: Annotated[
            bool, Field(description="Wait until the chain ends (bounded by timeout_secs).")
        ] = False,
        timeout_secs: WaitSecs = None,
    ) -> ChainOutcome:
        """A chain's progress and, once it has ended, its outcome: state, the step running now
        and its output so far, and each finished step's output, variables and cost. With
        wait=true, blocks until the chain ends, at most timeout_secs (default 300); if time
        runs out you get finished=false and can call again. Waiting reports progress."""
        if not wait:
            return ChainOutcome.of(await pool.chain_result(chain_id))
        limit = timeout_secs or DEFAULT_WAIT_SECS
        async with reporter_for(pool, ctx) as reporter:
            try:
                result = await follow_chain(pool, reporter, chain_id, limit)
            except TimeoutError:
                result = await pool.chain_result(chain_id)
                return ChainOutcome.of(
                    result,
                    note=f"still {result.state} after {limit:g}s; call again to keep waiting",
                )
        return ChainOutcome.of(result)

    @pool_tool(server, "pool_cancel_chain", REMOVES, "Cancel a chain")
    async def pool_cancel_chain(chain_id: ChainIdArg) -> ChainOutcome:
        """Cancel a chain: the running step's task is stopped, the remaining steps are skipped
        and the chain ends cancelled (what it spent still counts; its worktree's work is kept
        on its branch). A finished chain is left as it was."""
        return ChainOutcome.of(await pool.cancel_chain(chain_id))

    @server.resource(
        "pool://chains/{id}",
        name="chain",
        title="One chain",
        description="A chain's progress and outcome: state, current step, every step's result.",
        mime_type="application/json",
    )
    async def chain(id: str) -> str:
        try:
            return (await pool.chain_result(id)).model_dump_json(indent=2)
        except ChainNotFound as exc:
            raise ResourceNotFoundError(str(exc)) from exc


__all__ = [
    "ChainFanOutResult",
    "ChainOutcome",
    "ChainSpecArg",
    "ChainStepArg",
    "ChainSubmitted",
    "follow_chain",
    "register_chain_tools",
    "run_chain_reporting",
]
