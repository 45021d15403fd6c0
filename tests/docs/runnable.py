"""The docs' runnable code blocks: finding them in a page and running a page's blocks in a folder.

The convention (docs/contributing.md, "Runnable examples"), an HTML comment on the line right
before a block's fence:

    <!-- runnable -->              a bash or python block that runs
    <!-- runnable file=PATH -->    a block written to PATH (relative to the page's folder)
    <!-- output -->                a text block: lines the runnable block before it must print
    <!-- runnable-backends: pandas dask -->   anywhere: run the page once per backend
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
COLUMNS = "100"  # the terminal width the blocks run at: output blocks show what 100 columns show

MARKER = re.compile(r"^<!--\s*(?P<what>runnable(?:\s+file=(?P<path>\S+))?|output)\s*-->\s*$")
LOOKS_LIKE_A_MARKER = re.compile(r"^<!--\s*(run|output)", re.IGNORECASE)
BACKENDS = re.compile(r"^<!--\s*runnable-backends:\s*(?P<names>[\w\s-]+?)\s*-->\s*$", re.MULTILINE)
FENCE = re.compile(r"^(?P<ticks>`{3,})(?P<lang>[\w+-]*)\s*$")
PANDAS_MODEL = re.compile(r"@model\((?P<args>.*?)\)\s*\ndef ", re.DOTALL)
BASH_PREAMBLE = 'set -euo pipefail\nheadwater() { "$HEADWATER_DOCS_PYTHON" -m engine.cli "$@"; }\n'
# On the other backends only the commands that build run: what the others print does not depend
# on the backend, and each costs a second of start-up
BASH_PREAMBLE_BUILDS_ONLY = ('set -euo pipefail\nheadwater() { case "${1:-}" in\n'
                             '  run|demo) "$HEADWATER_DOCS_PYTHON" -m engine.cli "$@";;\n'
                             '  *) echo "headwater $1: run on pandas only";;\nesac; }\n')


@dataclass
class Block:
    """One marked block: `kind` is "run", "file" or "output" ("plain": not marked)."""

    page: str
    line: int  # of the fence, 1-based
    kind: str
    lang: str
    code: str
    path: str | None = None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def blocks(page: Path, every: bool = False) -> list[Block]:
    """The marked blocks of `page`, in order (`every`: the unmarked ones too, of kind "plain").
    A marker that is not followed by a fenced block, or a comment that looks like a marker but
    is none, is an error (a typo must not silently turn a test off)."""
    lines = page.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:  # an unmarked block: skip it whole, markers inside it are text
            end = _fence_end(lines, i, fence.group("ticks"), page)
            if every:
                out.append(Block(page.name, i + 1, "plain", fence.group("lang"), "\n".join(lines[i + 1:end]) + "\n"))
            i = end + 1
            continue
        mark = MARKER.match(line)
        if mark is None:
            if LOOKS_LIKE_A_MARKER.match(line) and not BACKENDS.match(line):
                raise ValueError(f"docs/{page.name}:{i + 1}: not a runnable marker: {line!r} "
                                 "(see docs/contributing.md, Runnable examples)")
            i += 1
            continue
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if fence is None:
            raise ValueError(f"docs/{page.name}:{i + 1}: {line.strip()} must be right before a fenced block")
        end = _fence_end(lines, i + 1, fence.group("ticks"), page)
        what, lang = mark.group("what"), fence.group("lang")
        kind = "output" if what == "output" else "file" if mark.group("path") else "run"
        if kind == "run" and lang not in ("bash", "python"):
            raise ValueError(f"docs/{page.name}:{i + 2}: a runnable block is bash or python, not {lang!r}")
        out.append(Block(page.name, i + 2, kind, lang, "\n".join(lines[i + 2:end]) + "\n", mark.group("path")))
        i = end + 1
    return out


def _fence_end(lines: list[str], start: int, ticks: str, page: Path) -> int:
    for j in range(start + 1, len(lines)):
        if lines[j].strip() == ticks:
            return j
    raise ValueError(f"docs/{page.name}:{start + 1}: a fenced block that never closes")


def backends(page: Path) -> list[str]:
    """The backends the page's blocks run on: pandas, and those `runnable-backends` names."""
    found = BACKENDS.search(page.read_text())
    names = found.group("names").split() if found else ["pandas"]
    if names[0] != "pandas":
        raise ValueError(f"docs/{page.name}: runnable-backends must start with pandas (the reference)")
    return names


def pandas_api_models(block: Block) -> list[str]:
    """The decorators of pandas-API models (`@model` without `frame="polars"`) in a Python block."""
    if block.lang != "python":
        return []
    return [m.group(0) for m in PANDAS_MODEL.finditer(block.code)
            if not re.search(r"""frame\s*=\s*["']polars["']""", m.group("args"))]


def environment(backend: str) -> dict[str, str]:
    """What a block runs with: no HEADWATER_* setting of the caller's, this checkout first on
    PYTHONPATH, `python` this interpreter, a 100-column terminal, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env.update(HEADWATER_BACKEND=backend, HEADWATER_DOCS_PYTHON=sys.executable, COLUMNS=COLUMNS,
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
               PATH=os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", ""))),
               DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("LINES", None)
    return env


def run_page(page: Path, folder: Path, backend: str, reference: bool) -> None:
    """Run `page`'s blocks in order in `folder` on `backend`; raise AssertionError naming the
    block that failed, or the output line that a block did not print. Output is checked on the
    `reference` run only, and the others run of `headwater` only `run` and `demo`."""
    folder.mkdir(parents=True, exist_ok=True)
    env = environment(backend)
    printed: str | None = None
    scripts = folder.parent / f"{folder.name}-blocks"
    scripts.mkdir(exist_ok=True)
    for n, block in enumerate(blocks(page)):
        if block.kind == "file":
            assert block.path is not None
            target = folder / block.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code)
        elif block.kind == "run":
            if block.lang == "bash":
                command = ["bash", "-c", (BASH_PREAMBLE if reference else BASH_PREAMBLE_BUILDS_ONLY) + block.code]
            else:
                script = scripts / f"block{n}.py"
                script.write_text(block.code)
                command = [sys.executable, str(script)]
            done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
            printed = done.stdout + done.stderr
            assert done.returncode == 0, (f"{block.where} failed on {backend} (exit {done.returncode}):\n"
                                          f"{block.code}\n--- output ---\n{printed[-4000:]}")
        elif reference:
            assert printed is not None, f"{block.where}: an output block must follow a runnable block"
            missing = missing_lines(block.code, printed)
            assert not missing, (f"{block.where}: the block before it did not print {missing[0]!r} "
                                 f"(in this order, after the lines before it)\n--- it printed ---\n{printed[-4000:]}")


def _normal(text: str) -> str:
    return " ".join(text.split())


def missing_lines(expected: str, printed: str) -> list[str]:
    """The lines of `expected` that `printed` lacks, in order: each expected line must start a
    printed line (spaces not counted) after the one the line before it matched; a line `…` is
    for the reader only, and `…` inside a line stands for anything."""
    got = [_normal(line) for line in printed.splitlines()]
    at = 0
    for line in expected.splitlines():
        want = _normal(line)
        if not want or want in ("…", "..."):
            continue
        pattern = re.compile(".*?".join(re.escape(part.strip()) for part in want.split("…")))
        for j in range(at, len(got)):
            if pattern.match(got[j]):
                at = j + 1
                break
        else:
            return [line]
    return []
