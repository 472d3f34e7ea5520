"""Chains: ordered steps run as pool tasks, with their progress kept in the store.

- :mod:`claude_pool.chain.model`: specs, results, placeholders, output variables (pure);
- :mod:`claude_pool.chain.runner`: the runner that drives a pool's chains over a task port;
- :mod:`claude_pool.chain.fanout`: independent chains side by side;
- :mod:`claude_pool.chain.workflows`: named, parameterised chains, and turning skills and
  workflows into chain steps.
"""

from claude_pool.chain.model import (
    CLONE_DIR,
    ChainIsolation,
    ChainResult,
    ChainSpec,
    ChainState,
    ChainStep,
    OutputVarError,
    SkillResolver,
    StepAttempt,
    StepResult,
    StepState,
    extract_vars,
    new_chain_id,
    parse_json_output,
    substitute,
)

__all__ = [
    "CLONE_DIR",
    "ChainIsolation",
    "ChainResult",
    "ChainSpec",
    "ChainState",
    "ChainStep",
    "OutputVarError",
    "SkillResolver",
    "StepAttempt",
    "StepResult",
    "StepState",
    "extract_vars",
    "new_chain_id",
    "parse_json_output",
    "substitute",
]
