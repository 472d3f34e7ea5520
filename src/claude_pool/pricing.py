"""What the Claude Code CLI charges per token, to estimate a task's cost from its token usage.

The CLI reports a task's cost (``total_cost_usd``) only in its ``result`` event. A task whose
process died, or that was killed because it ignored an interrupt, never gets one, yet the API
calls it made were paid for: :func:`estimate_cost_usd` prices the token usage the CLI streamed
before it ended, the way the CLI would have.

Prices are USD per million tokens, measured from Claude Code 2.1.330's own ``costUSD`` (one
10k-token call of each kind per model, against ``claude_pool.testing.mock_api``). The CLI
prices a call by the model it requested, from ``input_tokens``, ``cache_creation_input_tokens``
and ``cache_read_input_tokens`` (as in ``message_start``) and ``output_tokens`` (as in
``message_delta``). Models it does not know (it prints ``[claude-code:unrecognized_model]``)
are priced like its default model, ``claude-opus-5-5``; so are some it knows but maps to that
default (``claude-opus-4-1``, ``claude-opus-4-0``, ``claude-3-opus``, ``claude-3-haiku``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "ALIASES",
    "DEFAULT_PRICED_MODEL",
    "PRICES",
    "ModelPrice",
    "estimate_cost_usd",
    "known_price",
    "price_of",
]


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens, as the CLI prices them."""

    input: float
    output: float
    cache_write: float
    cache_read: float


PRICES: dict[str, ModelPrice] = {
    "claude-sonnet-4-5": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-4-5": ModelPrice(1.0, 5.0, 1.25, 0.10),
    "claude-opus-5-5": ModelPrice(4.0, 20.0, 5.0, 0.20),
    "claude-sonnet-5-5": ModelPrice(2.0, 10.0, 2.5, 0.10),
    "claude-haiku-5-5": ModelPrice(0.1, 0.5, 0.125, 0.01),
    "claude-opus-5": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-sonnet-5": ModelPrice(2.0, 10.0, 2.5, 0.20),
    "claude-opus-4-8": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-7": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-6": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-5": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-sonnet-4-6": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4-0": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-3-7-sonnet": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-3-5-sonnet": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-3-5-haiku": ModelPrice(0.8, 4.0, 1.0, 0.08),
}
"""Prices measured from CLI 2.1.330's ``modelUsage[...].costUSD``, by model id without a date
suffix (``claude-sonnet-4-5-20250929`` is priced as ``claude-sonnet-4-5``)."""

ALIASES: dict[str, str] = {
    "opus": "claude-opus-5-5",
    "sonnet": "claude-sonnet-5-5",
    "haiku": "claude-haiku-5-5",
}
"""``--model`` aliases, as CLI 2.1.330 resolves them (its ``system/init`` shows the result)."""

DEFAULT_PRICED_MODEL = "claude-opus-5-5"
"""The CLI's default model, whose price it also charges for models it does not know."""

_DATE_SUFFIX = re.compile(r"-\d{8}$")


def known_price(model: str | None) -> ModelPrice | None:
    """The price of ``model`` (an id, a dated id or an alias), or None when it is not known."""
    if not model:
        return None
    name = ALIASES.get(model, model)
    return PRICES.get(name) or PRICES.get(_DATE_SUFFIX.sub("", name))


def price_of(model: str | None) -> ModelPrice:
    """The price the CLI charges for ``model``: its own, else the default model's."""
    return known_price(model) or PRICES[DEFAULT_PRICED_MODEL]


def estimate_cost_usd(model: str | None, usages: Iterable[Mapping[str, object]]) -> float:
    """What the CLI would charge for API calls to ``model`` with these token usages.

    Each usage is the API's ``usage`` object of one message (``input_tokens``,
    ``output_tokens``, ``cache_creation_input_tokens``, ``cache_read_input_tokens``; missing
    or non-numeric counts are 0). An estimate: the CLI's own ``total_cost_usd``, when there is
    one, is the figure to trust.
    """
    price = price_of(model)
    micro = sum(
        _count(usage, "input_tokens") * price.input
        + _count(usage, "output_tokens") * price.output
        + _count(usage, "cache_creation_input_tokens") * price.cache_write
        + _count(usage, "cache_read_input_tokens") * price.cache_read
        for usage in usages
    )
    return micro / 1_000_000


def _count(usage: Mapping[str, object], key: str) -> int:
    value = usage.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value))
