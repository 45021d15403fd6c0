"""Landing bad inputs and judging what came of it: the harness of the bad-input corpus
(cases in tests/support/bad_corpus.py and bad_sql.py, assertions in tests/load/test_bad_inputs.py).

A case writes its inputs, lands them (run 1), adds a good input and lands again (run 2: the
source must not be blocked), then once more (run 3: nothing is retried). `outcome` records what
the lake holds after each run; `judge` compares it with what the case wrote, counted here,
never by the engine. A case that may crash or hang a process runs in a child (`in_child`).

`python -m tests.support.bad_inputs --tally` lands every case, each in its own child, against
the engine of the working directory, and prints how many were clear, miscounted, blocked or
crashed (how the issue's 'before' figures were taken).
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[2]
GOOD = {"csv": ("zz_good.csv", b"id,name,score\n1001,zed,1.0\n1002,yan,2.0\n"),
        "jsonl": ("zz_good.jsonl", b'{"id": 1001, "name": "zed"}\n{"id": 1002, "name": "yan"}\n'),
        "parquet": ("zz_good.parquet", b"")}  # written with pyarrow by `_write_good`
SPECIAL = ("fifo", "socket", "devnull", "devzero", "dangling")


@dataclass(frozen=True)
class Case:
    """Files to land (name -> bytes, or one of SPECIAL), and what must come of them."""

    name: str
    files: tuple[tuple[str, bytes | str], ...]
    landed: tuple[Any, ...]  # the `id` of every row that must land, as written
    bad: int = 0  # rows quarantined one by one
    whole: int = 0  # whole-file entries
    reason: str = ""  # every entry's reason holds this
    schema: dict[str, str] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    values: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # column -> landed values, by id
    count: bool = True  # rows in can be counted from the bytes written
    isolate: bool = False  # may crash or hang a process: land it in a child

    @property
    def fmt(self) -> str:
        name = self.files[0][0]
        return "parquet" if ".parquet" in name else "jsonl" if ".json" in name else "csv"


@dataclass(frozen=True)
class SqlCase:
    """A SQLite table (statements), a source over it, and what must come of it."""

    name: str
    setup: tuple[str, ...]  # CREATE and INSERT statements
    source: dict[str, Any]  # arguments of sources.sql besides name and url
    landed: tuple[Any, ...]
    bad: int = 0
    reason: str = ""
    error: str = ""  # a refusal: run 1 fails with this in its one-line error
    after: tuple[str, ...] = ()  # statements that add good rows 1001 and 1002 before run 2
    rows_in: int = 0  # rows the read of run 1 covers, counted from `setup`
    values: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    isolate: bool = False


def rows_in(name: str, data: bytes, delimiter: str = ",") -> int | None:
    """Rows a file holds, counted without the engine: Parquet rows; JSON lines that are not
    blank (CR, LF and CRLF end a line); CSV records that are not empty (Python's csv module: a
    quoted value may hold line breaks), less the header; None when unreadable."""
    if ".parquet" in name:
        try:
            return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
        except Exception:  # noqa: BLE001 - not Parquet: not countable
            return None
    try:
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        elif name.endswith(".bz2"):
            data = bz2.decompress(data)
    except (OSError, EOFError, ValueError, zlib.error):
        return None
    data = re.sub(rb"\r(?!\n)", b"\n", data.removeprefix(b"\xef\xbb\xbf"))
    if ".json" in name:
        return sum(1 for ln in data.split(b"\n") if ln.strip())
    if not data.strip():
        return 0
    records = [r for r in csv.reader(io.StringIO(data.decode("latin-1"), newline=""), delimiter=delimiter) if r]
    return max(len(records) - 1, 0)


def _write(folder: Path, name: str, data: bytes | str) -> None:
    path = folder / name
    if data == "fifo":
        os.mkfifo(path)
    elif data == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif data in ("devnull", "devzero"):
        path.symlink_to(f"/dev/{str(data)[3:]}")
    elif data == "dangling":
        path.symlink_to(folder / "nowhere.csv")
    else:
        assert isinstance(data, bytes)
        path.write_bytes(data)


def _write_good(folder: Path, fmt: str) -> str:
    name, data = GOOD[fmt]
    if fmt == "parquet":
        import pyarrow as pa

        pq.write_table(pa.table({"id": [1001, 1002], "name": ["zed", "yan"]}), folder / name)
    else:
        (folder / name).write_bytes(data)
    return str(folder / name)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return "nan"
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def outcome(case: Case | SqlCase, root: Path) -> dict[str, Any]:
    """Land `case` under `root` three times (bad inputs; a good one added; nothing new) and
    record what each run said and what the lake and its quarantine hold after run 1."""
    from engine.config import Config
    from engine.pipeline import Pipeline
    from engine.runs.runner import Runner
    from engine.sources import files, sql

    folder = root / "in"
    folder.mkdir(parents=True)
    if isinstance(case, SqlCase):
        import sqlite3

        url = f"sqlite:///{root / 'src.sqlite'}"
        with sqlite3.connect(root / "src.sqlite") as db:
            for statement in case.setup:
                db.execute(statement)
        source = sql("s", url, **case.source)
    else:
        for name, data in case.files:
            _write(folder, name, data)
        source = files("s", str(folder), schema=case.schema, **case.options)
    runner = Runner(Pipeline("t", sources=[source]), Config(lake=str(root / "lake")))
    lake = runner.lake
    out: dict[str, Any] = {"runs": []}
    good = ""
    for run in (1, 2, 3):
        if run == 2 and isinstance(case, SqlCase):
            with sqlite3.connect(root / "src.sqlite") as db:
                for statement in case.after:
                    db.execute(statement)
        elif run == 2:
            good = _write_good(folder, case.fmt)
        step = runner.load("s", f"run{run}", NOW)
        out["runs"].append({"status": step.status, "detail": step.detail, "rows": step.rows,
                            "quarantined": step.quarantined})
        table = lake.read("raw.s") if lake.exists("raw.s") else None
        if run == 1:
            rows = table.to_pylist() if table is not None else []
            out["landed"] = [_plain(r.get("id")) for r in rows]
            out["values"] = {c: [_plain(r.get(c)) for r in sorted(rows, key=lambda r: str(r.get("id")))]
                             for c in case.values}
            entries = lake.read("quarantine.s").to_pylist() if lake.exists("quarantine.s") else []
            out["entries"] = [{k: _plain(e[k]) for k in ("source", "file", "line", "kind", "reason")}
                              for e in entries]
        if run == 2:
            if isinstance(case, SqlCase):
                ids = [r["id"] for r in table.to_pylist()] if table is not None else []
                out["good_after"] = sum(1 for i in ids if str(i) in ("1001", "1002"))
            else:
                files_col = table.column("_hw_source_file").to_pylist() if table is not None else []
                out["good_after"] = files_col.count(good)
    return out


def in_child(case_name: str, root: Path, timeout: float = 120) -> dict[str, Any]:
    """`outcome` of the named case in a child process (4 GiB of address space at most); a
    child that dies by a signal or runs past `timeout` is reported as {"crashed": why}."""
    code = ("import json, sys; from tests.support.bad_inputs import by_name, outcome, limit_memory; "
            "from pathlib import Path; limit_memory(); "
            f"print('@@' + json.dumps(outcome(by_name({case_name!r}), Path({str(root)!r})), default=str))")
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd(), capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "PYTHONPATH": os.getcwd()})
    except subprocess.TimeoutExpired:
        return {"crashed": f"still running after {timeout:.0f} s"}
    if done.returncode < 0:
        return {"crashed": f"killed by signal {-done.returncode}"}
    marked = [ln for ln in done.stdout.splitlines() if ln.startswith("@@")]
    if done.returncode or not marked:  # an exception: the lake could not even be read back
        return {"failed": f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1]}"}
    return dict(json.loads(marked[-1][2:]))


def limit_memory(limit: int = 4 << 30) -> None:
    """Cap this process's address space, so an input read without end fails instead of
    exhausting the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def judge(case: Case | SqlCase, out: dict[str, Any]) -> tuple[str, list[str]]:
    """('clear' | 'miscounted' | 'blocked' | 'crashed', what is wrong): clear when the run
    survived, the rows that must land landed (by value), every other row is quarantined
    (rows in = landed + quarantined, counted from what was written), and a good input added
    later lands. Reasons are not judged here: the tests check them."""
    if "crashed" in out:
        return "crashed", [out["crashed"]]
    if "failed" in out:
        return "blocked", [out["failed"]]
    runs = out["runs"]
    if isinstance(case, SqlCase) and case.error:
        ok = runs[0]["status"] == "failed" and case.error in runs[0]["detail"]
        return ("clear", []) if ok else ("blocked", [f"expected a refusal naming {case.error!r}: {runs[0]}"])
    if runs[0]["status"] == "failed":
        return "blocked", [f"run 1 failed: {runs[0]['detail']}"]
    if runs[1]["status"] == "failed" or out["good_after"] != 2:
        return "blocked", [f"a good input added later did not land: {runs[1]}"]
    problems = []
    if Counter(map(str, out["landed"])) != Counter(map(str, case.landed)):
        problems.append(f"landed ids {sorted(map(str, out['landed']))}, want {sorted(map(str, case.landed))}")
    kinds = Counter(e["kind"] for e in out["entries"])
    whole = 0 if isinstance(case, SqlCase) else case.whole
    if (kinds["row"], kinds["file"]) != (case.bad, whole):
        problems.append(f"quarantined {kinds['row']} row(s) and {kinds['file']} file(s), want {case.bad} and {whole}")
    counted = case.rows_in if isinstance(case, SqlCase) else sum(
        n for n in (rows_in(name, data, case.options.get("delimiter", ","))
                    for name, data in case.files if isinstance(data, bytes)) if n is not None)
    countable = isinstance(case, SqlCase) or (case.count and not whole)
    if countable and counted != len(out["landed"]) + kinds["row"]:
        problems.append(f"rows in {counted} != landed {len(out['landed'])} + quarantined {kinds['row']}")
    for column, want in case.values.items():
        if [str(v) for v in out["values"][column]] != [str(v) for v in want]:
            problems.append(f"column {column!r} landed {out['values'][column]}, want {list(want)}")
    return ("miscounted", problems) if problems else ("clear", [])


def all_cases() -> list[Case | SqlCase]:
    from tests.support.bad_corpus import CASES
    from tests.support.bad_sql import SQL_CASES

    return [*CASES, *SQL_CASES]


def by_name(name: str) -> Case | SqlCase:
    return next(c for c in all_cases() if c.name == name)


def tally(jobs: int = 2) -> dict[str, list[str]]:
    """Every case landed in its own child: case names by verdict."""
    from concurrent.futures import ThreadPoolExecutor

    def one(case: Case | SqlCase) -> tuple[str, str, list[str]]:
        with tempfile.TemporaryDirectory() as tmp:
            verdict, problems = judge(case, in_child(case.name, Path(tmp)))
        return case.name, verdict, problems

    verdicts: dict[str, list[str]] = {"clear": [], "miscounted": [], "blocked": [], "crashed": []}
    with ThreadPoolExecutor(jobs) as pool:
        for name, verdict, problems in pool.map(one, all_cases()):
            verdicts[verdict].append(name)
            print(f"{verdict:10} {name:40} {'; '.join(problems).splitlines()[0][:300] if problems else ''}",
                  flush=True)
    return verdicts


if __name__ == "__main__":
    if "--tally" in sys.argv:
        from tests.support.bad_inputs import tally as tally_here  # the module's own classes, not __main__'s

        result = tally_here()
        print(json.dumps({k: len(v) for k, v in result.items()} | {"tried": sum(map(len, result.values()))}))
    else:
        sys.exit("usage: python -m tests.support.bad_inputs --tally")
