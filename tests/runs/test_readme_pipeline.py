"""The README's starter pipeline ("Write your own pipeline"), run exactly as printed: the block
after its `<!-- tested: ... -->` marker is written out as pipeline.py beside a SQLite app
database and gzipped JSON-lines logs, and run from another working directory. Every count is
checked against plain Python over the files written: one row per photo, also after a photo is
edited, and likes as integers in the lake and in the warehouse; on pandas and on Dask."""
from __future__ import annotations

import gzip
import json
import re
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from engine.config import Config
from engine.lake import Lake
from engine.pipeline import load_pipeline
from engine.runs.runner import Runner

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- tested: tests/runs/test_readme_pipeline.py runs this block as pipeline.py -->"
KINDS = ("like", "view", "share")


def starter_code() -> str:
    """The Python block that follows the marker in README.md."""
    text = (ROOT / "README.md").read_text()
    assert text.count(MARKER) == 1, "the README must mark its starter pipeline once"
    block = re.match(r"\s*```python\n(.*?)\n```", text[text.index(MARKER) + len(MARKER):], re.DOTALL)
    assert block, "a ```python block must follow the marker"
    return block.group(1) + "\n"


def write_photos(db: Path, rows: list[tuple[int, str, str]]) -> None:
    with closing(sqlite3.connect(db)) as con:
        con.execute("create table if not exists photos (photo_id integer primary key, title text, "
                    "updated_at timestamp)")
        con.executemany("insert or replace into photos values (?, ?, ?)", rows)
        con.commit()


def write_log(path: Path, events: list[dict[str, object]]) -> None:
    path.parent.mkdir(exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in events)


def expected_likes(logs: Path) -> Counter[int]:
    """Likes per photo, counted line by line over every log file."""
    counts: Counter[int] = Counter()
    for path in sorted(logs.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as fh:
            counts.update(e["photo_id"] for e in map(json.loads, fh) if e["kind"] == "like")
    return counts


def events_for(day: int, photos: int) -> list[dict[str, object]]:
    """A deterministic day of events: photo p gets (p * day) % 5 likes, some views and shares;
    photos divisible by 7 get none at all."""
    out: list[dict[str, object]] = []
    for p in range(1, photos + 1):
        if p % 7 == 0:
            continue
        out += [{"photo_id": p, "kind": "like", "user": u} for u in range((p * day) % 5)]
        out += [{"photo_id": p, "kind": KINDS[1 + (p + u) % 2], "user": u} for u in range(p % 3)]
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "pipeline.py").write_text(starter_code())
    write_photos(folder / "app.sqlite", [(p, f"photo {p}", f"2026-03-01 10:{p:02d}:00") for p in range(1, 31)])
    write_log(folder / "logs" / "day1.jsonl.gz", events_for(1, 30))
    return folder


def check(folder: Path, config: Config) -> None:
    """photo_likes and top_photos, in the lake and the warehouse, against the files."""
    with closing(sqlite3.connect(folder / "app.sqlite")) as con:
        photos = dict(con.execute("select photo_id, title from photos").fetchall())
    likes = expected_likes(folder / "logs")
    assert set(likes) < set(photos)  # some photos have no likes: the left join gives them NaN
    table = Lake(config.lake).read("models.photo_likes")
    assert table.schema.field("likes").type == pa.int64()
    got = {r["photo_id"]: (r["title"], r["likes"]) for r in table.to_pylist()}
    assert table.num_rows == len(got) == len(photos)  # one row per photo
    assert got == {p: (title, likes.get(p, 0)) for p, title in photos.items()}
    with duckdb.connect(config.warehouse.removeprefix("duckdb:///"), read_only=True) as con:
        kind = con.execute("select data_type from information_schema.columns "
                           "where table_name = 'photo_likes' and column_name = 'likes'").fetchone()
        assert kind == ("BIGINT",)
        top = con.execute("select likes from top_photos order by likes desc").fetchall()
    assert [n for (n,) in top] == sorted((likes.get(p, 0) for p in photos), reverse=True)[:100]


@pytest.mark.parametrize("backend", ["pandas", "dask"])  # the README promises the same code on both
def test_the_readme_starter_pipeline_lands_each_photo_once_with_integer_likes(
        backend: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"  # relative paths start at the pipeline's folder, not here
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = Config(lake=str(tmp_path / "lake"), warehouse=f"duckdb:///{tmp_path / 'wh.duckdb'}", backend=backend)

    first = Runner(load_pipeline(project / "pipeline.py"), config).run()
    assert first.ok, first.error
    check(project, config)

    # an edited photo (its updated_at bumped), a new one, and a second day of logs
    write_photos(project / "app.sqlite", [(3, "photo 3, edited", "2026-03-02 09:00:00"),
                                          (31, "photo 31", "2026-03-02 09:30:00")])
    write_log(project / "logs" / "day2.jsonl.gz", events_for(2, 31))
    second = Runner(load_pipeline(project / "pipeline.py"), config).run()
    assert second.ok, second.error
    check(project, config)
    raw = Lake(config.lake).read("raw.photos").column("photo_id").to_pylist()
    assert sorted(raw) == list(range(1, 32))  # merged on photo_id: the edit replaced its row
    loads = {s.name: s for s in second.steps if s.kind == "load"}
    assert loads["photos"].rows == 2 and "1 new, 1 updated" in loads["photos"].detail
    assert loads["events"].detail.startswith("1 new file(s) of 2")
    assert list(elsewhere.iterdir()) == []  # nothing was made in the working directory
