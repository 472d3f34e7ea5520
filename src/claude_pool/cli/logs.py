"""Logging for the long-running commands (``worker``, ``serve``): on stderr, as text or as one
JSON object per line, with the task and slot ids the engine attaches to its records."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


LogLevelOpt = Annotated[LogLevel, typer.Option(help="Least severe log level on stderr.")]
LogFormatOpt = Annotated[
    LogFormat,
    typer.Option(
        help="Log lines on stderr as text, or as one JSON object per line (time, level, "
        "logger, message, task_id/slot_id when known)."
    ),
]

_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
"""What every log record has; anything else on one came in ``extra=`` (the engine passes
``task_id`` and ``slot_id``, and more), and a JSON line carries it."""


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, what the record got in ``extra=`` (``task_id``, ``slot_id``...), and
    ``exception`` with its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2025-01-02T03:04:05.678+00:00 INFO claude_pool.runner: message``."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return f"{_timestamp(record)} {super().format(record)}"


def configure_logging(level: LogLevel, fmt: LogFormat) -> None:
    """Send every log record at ``level`` or above to stderr in ``fmt``, replacing whatever
    handlers the root logger had (stdout stays free: ``serve`` speaks MCP on it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt is LogFormat.JSON else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


__all__ = [
    "JsonFormatter",
    "LogFormat",
    "LogFormatOpt",
    "LogLevel",
    "LogLevelOpt",
    "TextFormatter",
    "configure_logging",
]
