"""A pipeline folder with JSON-lines events and a SQLite users table, for tests of runs on real
Delta tables (materializations, checks inside runs, the run manifest)."""
from __future__ import annotations

import sqlite3
from pathlib import Path


def write_events(root: Path, day: int, rows: list[tuple[int, str, int]]) -> None:
    (root / "events").mkdir(exist_ok=True)
    lines = [f'{{"event_id": {e}, "kind": "{k}", "user_id": {u}}}' for e, k, u in rows]
    (root / "events" / f"day{day}.jsonl").write_text("\n".join(lines) + "\n")


def make_users(root: Path, users: list[tuple[int, str, str]]) -> None:
    con = sqlite3.connect(root / "users.sqlite")
    con.execute("create table if not exists users (id integer primary key, country text, updated text)")
    con.executemany("insert or replace into users values (?, ?, ?)", users)
    con.commit()
    con.close()


def pipeline_folder(root: Path, pipeline_text: str) -> Path:
    """`root` with two days of events, two users and `pipeline_text` (formatted with `root`) as
    pipeline.py."""
    write_events(root, 1, [(1, "view", 1), (2, "like", 1), (3, "view", 2)])
    make_users(root, [(1, "fr", "a"), (2, "de", "a")])
    (root / "pipeline.py").write_text(pipeline_text.format(root=root))
    return root
