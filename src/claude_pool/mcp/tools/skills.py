"""Skills as MCP tools, and as MCP prompts.

Tools: ``pool_skill_list``, ``pool_skill_get``, ``pool_skill_add``, ``pool_skill_remove``,
``pool_skill_save``, ``pool_skill_eject`` and ``pool_skill_run``. They act on the pool's skill
registry (:attr:`Pool.skills`).

Every skill of the registry is also an MCP prompt (same name, its declared arguments), kept in
step with the registry through ``SkillRegistry.on_change``. The server advertises
``prompts.listChanged`` and, when a change comes through one of these tools, tells every
connected client: ``notifications/prompts/list_changed`` on each handshake-era (2025) session
it has seen (see :class:`SkillPrompts`), a ``PromptsListChanged`` event on
``subscriptions/listen`` streams (2026-07-28). A change made elsewhere (a host program calling
``pool.skills.add``) updates the prompts silently, as sending needs a running request to await
it in: clients see it on their next ``prompts/list``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt as McpPrompt
from mcp.server.mcpserver.prompts.base import PromptArgument
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, InitializeRequestParams
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

from claude_pool.config import merge_overrides
from claude_pool.errors import ClaudePoolError
from claude_pool.mcp.arguments import (
    MAX_PROMPT_CHARS,
    Name,
    Overrides,
    Tags,
    TimeoutSecs,
    Wait,
    overrides_of,
)
from claude_pool.mcp.models import TaskOutcome
from claude_pool.mcp.progress import reporter_for
from claude_pool.mcp.tooling import (
    CHANGES,
    READ_ONLY,
    REMOVES,
    RUNS_WORK,
    SETS_FILES,
    ToolContext,
    pool_tool,
)
from claude_pool.pool import Pool
from claude_pool.skills import (
    GLOBAL_SKILLS_DIR,
    Skill,
    SkillArgument,
    SkillError,
    SkillRegistry,
    SkillScope,
    SkillSource,
    parse_skill,
)
from claude_pool.types import TaskOverrides

log = logging.getLogger(__name__)


FREE_TEXT_ARGUMENT = "arguments"
"""The one prompt argument of a skill that declares none: free text, split like a shell line."""
MAX_TRACKED_SESSIONS = 256
"""Most handshake-era sessions told about prompt changes: the most recently active ones (the
SDK does not say when a session ends, so the oldest are forgotten past this)."""


# ── results ─────────────────────────────────────────────────────────


class SkillSummary(BaseModel):
    name: str
    description: str
    scope: SkillScope = Field(
        description="task: run it with pool_skill_run; coordinator: instructions for you to "
        "follow (read it with pool_skill_get); chain: meant as a chain step."
    )
    source: SkillSource = Field(description="Where the winning definition comes from.")
    argument_hint: str | None = None
    arguments: list[SkillArgument] = Field(default_factory=list)
    shadows: list[SkillSource] = Field(
        default_factory=list, description="Lower sources that also define it (hidden by this one)."
    )
    path: str | None = Field(None, description="The file it was read from, if any.")

    @classmethod
    def of(cls, skill: Skill, registry: SkillRegistry) -> SkillSummary:
        lower = [d.source for d in registry.definitions(skill.name) if d.source != skill.source]
        return cls(
            name=skill.name,
            description=skill.description,
            scope=skill.scope,
            source=skill.source,
            argument_hint=skill.argument_hint,
            arguments=skill.arguments,
            shadows=lower if registry.get(skill.name) is skill else [],
            path=str(skill.path) if skill.path is not None else None,
        )


class SkillDetail(SkillSummary):
    body: str = Field(description="The prompt template.")
    overrides: TaskOverrides | None = Field(None, description="Task settings a run gets.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    markdown: str = Field(description="The whole skill as SKILL.md text.")

    @classmethod
    def of_skill(cls, skill: Skill, registry: SkillRegistry) -> SkillDetail:
        summary = SkillSummary.of(skill, registry)
        return cls(
            **summary.model_dump(),
            body=skill.body,
            overrides=skill.overrides,
            metadata=skill.metadata,
            markdown=skill.to_markdown(),
        )


class SkillList(BaseModel):
    skills: list[SkillSummary]
    load_errors: list[str] = Field(
        default_factory=list, description="Skill files that could not be read, with the reason."
    )


class SkillChanged(BaseModel):
    name: str
    action: Literal["added", "replaced", "removed", "saved", "ejected"]
    path: str | None = Field(None, description="The file written, for save and eject.")
    now: SkillSummary | None = Field(
        None, description="The definition in effect now (None: no skill of that name is left)."
    )
    note: str


class SkillRun(BaseModel):
    skill: str
    prompt: str = Field(description="The rendered prompt the task runs.")
    overrides: TaskOverrides | None = Field(
        None, description="The task's settings: the skill's, with yours on top."
    )
    outcome: TaskOutcome


# ── argument types ──────────────────────────────────────────────────

SkillName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="A skill name, e.g. code-review (pool_skill_list shows them).",
    ),
]
SkillText = Annotated[
    str,
    Field(
        min_length=1,
        description=(
            "The whole SKILL.md: YAML front matter between '---' lines (name, description, "
            "arguments with required flags, scope, overrides), then the prompt template using "
            "{argument} placeholders."
        ),
        json_schema_extra={"maxLength": MAX_PROMPT_CHARS},
    ),
]


SkillArgs = Annotated[
    dict[Name, str] | None,
    Field(description="The skill's arguments by name (see its `arguments`)."),
]
FreeArgs = Annotated[
    str | None,
    Field(
        description=(
            "Or: all arguments as one line, split like a shell command line, in declaration "
            'order (extra words go to the last argument), e.g. "src/app.py be strict".'
        ),
        json_schema_extra={"maxLength": MAX_PROMPT_CHARS},
    ),
]


Overwrite = Annotated[bool, Field(description="Replace an existing file.")]


def _skill_args(args: dict[str, str] | None, arguments: str | None) -> Mapping[str, str] | str:
    if args is not None and arguments is not None:
        raise ValueError(
            "give the skill's arguments either by name (args) or as one line, not both"
        )
    if arguments is not None:
        return arguments
    return args or {}


# ── skills as prompts ───────────────────────────────────────────────


class SkillPrompts:
    """Keeps one MCP prompt per skill of ``registry`` on ``server``, and tells clients when the
    list changes.

    The SDK's ``MCPServer`` advertises ``prompts.listChanged: false`` to handshake-era clients
    (such as Claude Code) and only reaches the session of the request at hand; so this also
    sits in the server's middleware, where it marks the capability true in the ``initialize``
    result and remembers each session, to notify them all (:meth:`announce`).
    """

    def __init__(self, server: MCPServer[Any], registry: SkillRegistry) -> None:
        self._server = server
        self._registry = registry
        self._exposed: dict[str, Skill] = {}
        # Per connection (keyed by its handshake parameters, one object per connection; kept
        # so the key stays unique): the latest request's session, whose notifications go out
        # on the connection's own channel.
        self._sessions: OrderedDict[int, tuple[InitializeRequestParams, ServerSession]] = (
            OrderedDict()
        )
        self.sync()
        registry.on_change(self.sync)
        server.middleware.append(self._middleware)

    async def _middleware(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method == "initialize":
            return _advertising_prompt_changes(await call_next(ctx))
        self._remember(ctx.session)
        return await call_next(ctx)

    def _remember(self, session: ServerSession) -> None:
        params = session.client_params
        if params is None or session.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return  # 2026-07-28 clients hear of changes on their subscriptions/listen streams
        key = id(params)
        self._sessions[key] = (params, session)
        self._sessions.move_to_end(key)
        while len(self._sessions) > MAX_TRACKED_SESSIONS:
            self._sessions.popitem(last=False)

    async def announce(self, ctx: ToolContext) -> None:
        """Tell every client the prompt list changed (both protocol eras; a client that does not
        listen, or has gone, just misses it)."""
        try:
            await ctx.notify_prompts_changed()
        except Exception as exc:
            log.debug("could not publish PromptsListChanged: %r", exc)
        self._remember(ctx.session)
        for _, session in list(self._sessions.values()):
            try:
                await session.send_prompt_list_changed()
            except Exception as exc:
                log.debug("could not send prompts/list_changed: %r", exc)

    def sync(self) -> None:
        wanted = {skill.name: skill for skill in self._registry}
        for name, skill in list(self._exposed.items()):
            if wanted.get(name) != skill:
                self._server.remove_prompt(name)
                del self._exposed[name]
        for name, skill in wanted.items():
            if name not in self._exposed:
                self._server.add_prompt(_prompt_for(skill))
                self._exposed[name] = skill


def _prompt_for(skill: Skill) -> McpPrompt:
    if skill.arguments:
        arguments = [
            PromptArgument(
                name=a.name,
                description=a.description or None,
                required=a.required and a.default is None,
            )
            for a in skill.arguments
        ]
    else:
        arguments = [
            PromptArgument(
                name=FREE_TEXT_ARGUMENT,
                description="Anything the skill should work on ($ARGUMENTS).",
                required=False,
            )
        ]
    description = skill.description
    if skill.argument_hint:
        description = f"{description} Arguments: {skill.argument_hint}"
    if skill.scope is SkillScope.TASK:
        description += f" (To hand it to a pool slot instead: pool_skill_run name={skill.name}.)"

    async def render(**values: str) -> str:
        args: Mapping[str, str] | str = (
            values if skill.arguments else values.get(FREE_TEXT_ARGUMENT) or ""
        )
        try:
            return skill.render(args)
        except ClaudePoolError as exc:
            # The SDK hides other errors behind "Error rendering prompt"; say what was wrong.
            raise MCPError(INVALID_PARAMS, str(exc)) from exc

    return McpPrompt(
        name=skill.name,
        title=skill.name,
        description=description,
        arguments=arguments,
        fn=render,
    )


def _advertising_prompt_changes(result: HandlerResult) -> HandlerResult:
    """An ``initialize`` result that says the prompt list may change (it does: skills)."""
    if not isinstance(result, dict):
        return result
    capabilities = result.get("capabilities")
    if not isinstance(capabilities, dict) or not isinstance(capabilities.get("prompts"), dict):
        return result
    prompts = {**capabilities["prompts"], "listChanged": True}
    return {**result, "capabilities": {**capabilities, "prompts": prompts}}


# ── skill tools ─────────────────────────────────────────────────────


def register_skill_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_skill_* tools, and every skill as an MCP prompt."""
    registry = pool.skills
    prompts = SkillPrompts(server, registry)

    @pool_tool(server, "pool_skill_list", READ_ONLY, "List skills")
    async def pool_skill_list(
        scope: Annotated[SkillScope | None, Field(description="Only skills of this scope.")] = None,
        source: Annotated[
            SkillSource | None,
            Field(
                description="Only this source's skills (builtin, global, project, runtime), "
                "including ones a later source overrides."
            ),
        ] = None,
    ) -> SkillList:
        """The skills this pool knows: reusable prompt templates (code review, implement, write
        tests, refactor, summarise, pre-push checks, create PR...) with their arguments.
        Task skills run on a slot with pool_skill_run; coordinator skills are instructions for
        you (read them with pool_skill_get). Later sources win: builtin < global < project <
        runtime. Each skill is also offered as an MCP prompt of the same name."""
        return SkillList(
            skills=[SkillSummary.of(s, registry) for s in registry.list(scope, source)],
            load_errors=[str(issue) for issue in registry.errors],
        )

    @pool_tool(server, "pool_skill_get", READ_ONLY, "Read a skill")
    async def pool_skill_get(name: SkillName) -> SkillDetail:
        """One skill in full: its arguments, the task settings a run gets, its template and its
        SKILL.md text (a starting point for pool_skill_add)."""
        return SkillDetail.of_skill(registry.get(name), registry)

    @pool_tool(server, "pool_skill_add", CHANGES, "Add a skill")
    async def pool_skill_add(skill_md: SkillText, ctx: ToolContext) -> SkillChanged:
        """Add a skill for this server's lifetime from SKILL.md text, or replace one added
        before; it wins over built-in and on-disk skills of the same name until removed. Keep
        it with pool_skill_save. Example:
        ---
        name: explain
        description: Explain code to a given reader.
        arguments:
          - {name: path, description: File to explain, required: true}
          - {name: reader, description: Who reads it}
        overrides: {permission_mode: dontAsk, allowed_tools: [Read, Grep]}
        ---
        Explain {path} for {reader}."""
        if len(skill_md) > MAX_PROMPT_CHARS:
            raise ValueError(f"the skill is over {MAX_PROMPT_CHARS:,} characters")
        parsed = parse_skill(skill_md)
        replaced = any(s.name == parsed.name for s in registry.list(source=SkillSource.RUNTIME))
        skill = registry.add(parsed)
        await prompts.announce(ctx)
        return SkillChanged(
            name=skill.name,
            action="replaced" if replaced else "added",
            now=SkillSummary.of(skill, registry),
            note=f"run it with pool_skill_run name={skill.name}; keep it with pool_skill_save",
        )

    @pool_tool(server, "pool_skill_remove", REMOVES, "Remove a runtime skill")
    async def pool_skill_remove(name: SkillName, ctx: ToolContext) -> SkillChanged:
        """Remove a skill added with pool_skill_add. A built-in, global or project skill of the
        same name (if any) is in effect again. Skills from files are not removed this way
        (delete the file); built-ins cannot be removed."""
        registry.remove(name)
        await prompts.announce(ctx)
        now = registry.get(name) if name in registry else None
        return SkillChanged(
            name=name,
            action="removed",
            now=SkillSummary.of(now, registry) if now is not None else None,
            note=f"the {now.source} definition is in effect again" if now else "no such skill now",
        )

    @pool_tool(server, "pool_skill_save", SETS_FILES, "Save a skill to disk")
    async def pool_skill_save(
        name: SkillName,
        ctx: ToolContext,
        location: Annotated[
            Literal["project", "global"],
            Field(
                description="project: .claude-pool/skills in the pool's directory (default); "
                "global: ~/.claude-pool/skills, for every project."
            ),
        ] = "project",
        overwrite: Overwrite = False,
    ) -> SkillChanged:
        """Write a skill (usually one added with pool_skill_add) to <dir>/<name>/SKILL.md so it
        outlives this server. Refuses to replace an existing file unless overwrite=true."""
        directory = registry.project_dir if location == "project" else _global_dir(registry)
        path = registry.save(name, directory, overwrite=overwrite)
        await prompts.announce(ctx)
        return SkillChanged(
            name=name,
            action="saved",
            path=str(path),
            now=SkillSummary.of(registry.get(name), registry),
            note=f"saved to {path}",
        )

    @pool_tool(server, "pool_skill_eject", SETS_FILES, "Copy a built-in skill for editing")
    async def pool_skill_eject(
        name: SkillName, ctx: ToolContext, overwrite: Overwrite = False
    ) -> SkillChanged:
        """Copy a built-in skill (its whole folder) into the project's .claude-pool/skills so
        it can be edited; the copy then wins over the built-in. Refuses to replace an existing
        copy unless overwrite=true."""
        path = registry.eject(name, overwrite=overwrite)
        await prompts.announce(ctx)
        return SkillChanged(
            name=name,
            action="ejected",
            path=str(path),
            now=SkillSummary.of(registry.get(name), registry),
            note=f"edit {path}; the project copy is in effect",
        )

    @pool_tool(server, "pool_skill_run", RUNS_WORK, "Run a skill as a task")
    async def pool_skill_run(
        name: SkillName,
        ctx: ToolContext,
        args: SkillArgs = None,
        arguments: FreeArgs = None,
        overrides: Overrides = None,
        tags: Tags | None = None,
        wait: Wait = True,
        timeout_secs: TimeoutSecs = None,
        role: Annotated[
            Name | None, Field(description="Run only on a slot with this role.")
        ] = None,
        fresh_session: Annotated[
            bool, Field(description="Start a new conversation on the slot.")
        ] = False,
    ) -> SkillRun:
        """Render a task skill with its arguments and run it on a pool slot, with the skill's
        own task settings (e.g. read-only tools for a review) and your overrides on top.
        With wait=true (default) returns the finished task (a failed task is a result with
        success=false) and reports progress; with wait=false returns at once with the task id
        for pool_result. Missing required or unknown arguments are refused, naming them.
        Costs money; the task may edit files if its permission mode allows it. Cancelling a
        waiting call cancels the task."""
        skill = registry.get(name)
        if skill.scope is SkillScope.COORDINATOR:
            raise SkillError(
                f"skill {name!r} is a coordinator skill: instructions for you, not a task for "
                "a slot; read it with pool_skill_get (or use the MCP prompt) and follow it"
            )
        prompt = skill.render(_skill_args(args, arguments))
        task_overrides = merge_overrides(skill.overrides, overrides_of(overrides))
        task_id = await pool.submit(
            prompt,
            task_overrides,
            [*(tags or ()), f"skill:{skill.name}"],
            timeout=timeout_secs,
            role=role,
            fresh_session=fresh_session,
        )
        if not wait:
            record = await pool.get_task(task_id)
        else:
            async with pool.cancelled_with_caller() as mine, reporter_for(pool, ctx) as reporter:
                mine.add(task_id)
                reporter.note(f"{task_id}: queued ({skill.name})")
                reporter.watch(task_id)
                record = await pool.wait(task_id)
                reporter.ended(record)
        return SkillRun(
            skill=skill.name,
            prompt=prompt,
            overrides=task_overrides,
            outcome=TaskOutcome.of(record),
        )


def _global_dir(registry: SkillRegistry) -> Path:
    return registry.global_dir or GLOBAL_SKILLS_DIR.expanduser()


__all__ = [
    "SkillChanged",
    "SkillDetail",
    "SkillList",
    "SkillPrompts",
    "SkillRun",
    "SkillSummary",
    "register_skill_tools",
]
