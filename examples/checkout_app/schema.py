"""The orders database and its migrations, numbered, applied in order, recorded in SQLite's `user_version`.

Migration 2 is an *expand* migration: it only adds columns that old code can ignore (nullable, or with a
default), so the code of version 1, which names its columns and never writes the new ones, keeps working on the
new schema. That is what lets both arms of a rollout run at once, and a rollback land on a schema the stable
path can read. The *contract* step that would follow once the flag is complete (dropping what nobody reads any
more) is in the README; it is not applied here, since the stable path still runs.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS = [
    (1, "orders", """
        CREATE TABLE orders (
            id          INTEGER PRIMARY KEY,
            user_id     TEXT    NOT NULL,
            item        TEXT    NOT NULL,
            quantity    INTEGER NOT NULL,
            total_cents INTEGER NOT NULL  -- what the customer pays
        )
    """),
    (2, "expand: discount codes", """
        ALTER TABLE orders ADD COLUMN discount_code  TEXT;                       -- NULL: none
        ALTER TABLE orders ADD COLUMN discount_cents INTEGER NOT NULL DEFAULT 0; -- old INSERTs get 0
    """),
]
LATEST = MIGRATIONS[-1][0]


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10)
    db.row_factory = sqlite3.Row
    return db


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(path: str, to: int = LATEST) -> list[str]:
    """Apply the migrations above the database's version, up to `to`; the descriptions of those applied."""
    db = connect(path)
    applied = []
    try:
        for number, description, sql in MIGRATIONS:
            if version(db) < number <= to:
                # executescript commits first; the version is written in the same script, so a migration and
                # its number land together
                db.executescript(f"BEGIN; {sql}; PRAGMA user_version = {number}; COMMIT;")
                applied.append(f"{number}: {description}")
    finally:
        db.close()
    return applied
