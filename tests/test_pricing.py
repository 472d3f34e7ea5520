"""The price table used to estimate what a task cost when the CLI reported no total."""

from __future__ import annotations

import pytest

from claude_pool.pricing import (
    DEFAULT_PRICED_MODEL,
    PRICES,
    estimate_cost_usd,
    known_price,
    price_of,
)
from claude_pool.testing import mock_api
from claude_pool.testing.mock_api import Usage, expected_cost_usd

MILLION_OF_EACH = {
    "input_tokens": 1_000_000,
    "output_tokens": 1_000_000,
    "cache_creation_input_tokens": 1_000_000,
    "cache_read_input_tokens": 1_000_000,
}


@pytest.mark.parametrize(
    ("model", "total"),
    [
        ("claude-sonnet-4-5", 3 + 15 + 3.75 + 0.30),
        ("claude-haiku-4-5", 1 + 5 + 1.25 + 0.10),
        ("claude-opus-5-5", 4 + 20 + 5 + 0.20),
        ("claude-sonnet-5-5", 2 + 10 + 2.5 + 0.10),
        ("claude-haiku-5-5", 0.1 + 0.5 + 0.125 + 0.01),
        ("claude-opus-4-6", 5 + 25 + 6.25 + 0.50),
        ("claude-3-5-haiku", 0.8 + 4 + 1 + 0.08),
    ],
)
def test_each_kind_of_token_is_priced_as_the_cli_prices_it(model: str, total: float) -> None:
    assert estimate_cost_usd(model, [MILLION_OF_EACH]) == pytest.approx(total)


def test_usages_add_up_and_missing_counts_are_zero() -> None:
    usages = [{"input_tokens": 1_000_000}, {"output_tokens": 100_000, "service_tier": "std"}]
    assert estimate_cost_usd("claude-sonnet-4-5", usages) == pytest.approx(3 + 1.5)
    assert estimate_cost_usd("claude-sonnet-4-5", []) == 0.0


def test_an_unknown_model_is_priced_like_the_cli_default() -> None:
    assert known_price("claude-next-9") is None
    assert price_of("claude-next-9") == PRICES[DEFAULT_PRICED_MODEL]
    assert price_of(None) == PRICES["claude-opus-5-5"]
    assert estimate_cost_usd("claude-next-9", [MILLION_OF_EACH]) == pytest.approx(29.2)


def test_dated_ids_and_aliases_have_their_model_s_price() -> None:
    assert known_price("claude-sonnet-4-5-20250929") == PRICES["claude-sonnet-4-5"]
    assert known_price("claude-haiku-4-5-20251001") == PRICES["claude-haiku-4-5"]
    assert known_price("haiku") == PRICES["claude-haiku-5-5"]
    assert known_price("sonnet") == PRICES["claude-sonnet-5-5"]


def test_the_mock_prices_with_the_same_table() -> None:
    assert mock_api.PRICES is PRICES
    usage = Usage(input_tokens=1000, output_tokens=100, cache_read_input_tokens=50)
    assert expected_cost_usd("claude-haiku-4-5", [usage, usage]) == estimate_cost_usd(
        "claude-haiku-4-5",
        [{"input_tokens": 1000, "output_tokens": 100, "cache_read_input_tokens": 50}] * 2,
    )
