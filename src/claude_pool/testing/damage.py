"""Damaging a SQLite store on purpose, for tests of what a pool does when its file goes bad."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def corrupt_table(path: Path, table: str) -> None:
    """Overwrite the root page of ``table`` in the SQLite file at ``path``, even while pools
    have it open, then make a write through another connection so that their page caches are
    dropped: their next use of the table meets the damage, as after a disk error or a stray
    write by another program."""
    with sqlite3.connect(path) as conn:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError(f"{path}: another connection is in a transaction; try again")
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    with path.open("r+b") as raw:
        raw.seek((root - 1) * page_size)
        raw.write(b"\xff" * 512)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE counters SET value = value WHERE name = 'spend_microdollars'")


__all__ = ["corrupt_table"]
