"""Secrets out of failure reports: the command line and stderr tail of a failed CLI run reach
task results, logs and every face, so credentials in them are masked first.

The detectors are detect-secrets' (Yelp's maintained set): every regex-based plugin it ships
(AWS, GitHub, GitLab, Slack, Stripe, JWTs, private keys, URL credentials, npm, PyPI, ...), so a
detector added upstream is used here too. Its public-IP detector is left out (an address is
not a credential). A few formats it does not know yet are added here: Anthropic keys, OpenAI
project and service-account keys, GitHub fine-grained tokens, whole PEM private-key blocks,
``Bearer`` headers and ``NAME_TOKEN=value`` assignments.

A match is masked whole, keeping its recognisable prefix (``ghp_***``, ``xoxb-***``); where a
detector captures the secret part of a longer match (the password of ``user:pass@host``), only
that part is masked.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from typing import cast

MASK = "***"

_LEFT_OUT = frozenset({"IPPublicDetector"})
"""detect-secrets plugins whose findings are not credentials."""

_OURS: tuple[re.Pattern[str], ...] = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END [^-]*-----|\Z)"),
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"github_pat_[A-Za-z0-9_]{22,}"),
    re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/=\-]{6,})"),
    re.compile(
        r"(?i)\b[A-Z0-9_]*(?:api[_-]?key|token|secret|password|passwd|auth)[A-Z0-9_]*"
        r"\"?\s*[=:]\s*\"?([^\s\"',}]+)"
    ),
)

_PREFIX = re.compile(r"[A-Za-z0-9]{2,10}[_\-](?:[a-z]{2,7}[_\-])?")
"""The kind-of-key prefix kept visible: ``ghp_``, ``xoxb-``, ``sk-``."""

_TOKEN_CHARS = frozenset("_-.+/=")


@functools.cache
def detectors() -> tuple[re.Pattern[str], ...]:
    """Every pattern used: detect-secrets' regex plugins, then ours."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector

    found: list[re.Pattern[str]] = []
    plugins: Iterable[type] = get_mapping_from_secret_type_to_class().values()
    for plugin in sorted(plugins, key=lambda p: p.__name__):
        if not issubclass(plugin, RegexBasedDetector) or plugin.__name__ in _LEFT_OUT:
            continue
        # A class attribute on every regex plugin (typed as a property upstream).
        found.extend(cast("Iterable[re.Pattern[str]]", plugin.denylist))
    return (*found, *_OURS)


def _spans(text: str, patterns: Sequence[re.Pattern[str]]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for pattern in patterns:
        for match in pattern.finditer(text):
            start, end = match.span()
            if pattern.groups and match.group(1) and match.start(1) > start:
                # The detector captured the secret inside a longer match (a URL's password,
                # the value of an assignment): mask that part. A group at the very start is
                # a label (GitHub's ``ghp``), and the whole match is the secret.
                start, end = match.span(1)
            else:
                # A token runs to the end of its word, whatever length the detector expects.
                while end < len(text) and (text[end].isalnum() or text[end] in _TOKEN_CHARS):
                    end += 1
                if (prefix := _PREFIX.match(text, start, end)) and end - prefix.end() >= 4:
                    start = prefix.end()
            if end > start:
                spans.append((start, end))
    return spans


def redact(text: str) -> str:
    """``text`` with every credential found masked as ``***``."""
    if not text:
        return text
    spans = sorted(_spans(text, detectors()))
    if not spans:
        return text
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces: list[str] = []
    last = 0
    for start, end in merged:
        pieces.append(text[last:start])
        pieces.append(MASK)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


__all__ = ["MASK", "detectors", "redact"]
