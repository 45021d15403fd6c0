"""Readers for the container files, for tests: a Dockerfile's final stage, `.dockerignore` rules
and compose's `${VAR:-default}` interpolation. No Docker engine is needed (or used) by any of them.

`parse_dockerfile` understands what docker/ uses: line continuations, comments, `ARG name=default`
(before FROM: substituted into FROM, as `docker build` does without --build-arg), `ENV k=v` and the
legacy `ENV k v`, `$VAR`/`${VAR}` substitution in ENV, WORKDIR, USER, VOLUME, COPY (flags, JSON
form) and the JSON (exec) and shell forms of ENTRYPOINT and CMD. A `FROM` starts a new stage;
only the last stage is described, as that is the image that runs.

`Podman` runs podman with the flags docker/local-base.sh gives this kind of machine, for the tests
that build and run the images (tests/docker/test_podman*.py); `assert_demo_folder` checks what the
image's default command (the demo) left in its /data volume, whether that ran in a container or not.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from engine.demo.pipeline import make_pipeline
from engine.lake import Lake
from tests.support.demo import assert_matches_oracle

RAW = ("users", "photos", "events", "classifier")  # the demo's sources
MODELS = tuple(m.name for m in make_pipeline("unused").models)  # what the demo builds

_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
                  r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass
class Copy:
    """One COPY/ADD: its sources (relative to the build context), destination and flags."""

    sources: list[str]
    dest: str
    flags: dict[str, str]


@dataclass
class Dockerfile:
    """What the last stage of a Dockerfile sets up."""

    base: str = ""
    args: dict[str, str] = field(default_factory=dict)  # the ARGs before the first FROM, with defaults
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str = "root"
    workdir: str = "/"
    volumes: list[str] = field(default_factory=list)
    copies: list[Copy] = field(default_factory=list)
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def command(self) -> list[str]:
        """The argv a container of this image runs with no arguments: ENTRYPOINT + CMD."""
        return [*self.entrypoint, *self.cmd]


def substitute(text: str, values: dict[str, str]) -> str:
    """`$VAR`, `${VAR}` and `${VAR:-default}` replaced from `values` (unset: the default, else '')."""
    def one(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        value = values.get(name, "")
        return value if value or match.group("default") is None else match.group("default")

    return _VAR.sub(one, text.replace("$$", "\0")).replace("\0", "$")


def logical_lines(text: str) -> list[str]:
    """The instructions of a Dockerfile, one string each: comments dropped, continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append((pending + stripped).strip())
        pending = ""
    if pending:
        lines.append(pending.strip())
    return lines


def _exec_form(args: str) -> list[str]:
    """JSON (exec) form as its list; shell form as `/bin/sh -c <text>`, as Docker runs it."""
    if args.startswith("["):
        value = json.loads(args)
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(f"not a JSON list of strings: {args}")
        return value
    return ["/bin/sh", "-c", args]


def _env_pairs(args: str, env: dict[str, str]) -> dict[str, str]:
    tokens = shlex.split(args, posix=True)
    if tokens and "=" not in tokens[0]:  # legacy `ENV key value with spaces`
        key, _, value = args.partition(" ")
        return {key: substitute(value.strip(), env)}
    out: dict[str, str] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep:
            raise ValueError(f"ENV token without '=': {token}")
        out[key] = substitute(value, {**env, **out})
    return out


def _copy(args: str) -> Copy:
    flags: dict[str, str] = {}
    while args.startswith("--"):
        flag, _, args = args.partition(" ")
        key, _, value = flag[2:].partition("=")
        flags[key] = value
        args = args.strip()
    parts = json.loads(args) if args.startswith("[") else shlex.split(args)
    if len(parts) < 2:
        raise ValueError(f"COPY needs a source and a destination: {args}")
    return Copy(parts[:-1], parts[-1], flags)


def parse_dockerfile(path: Path) -> Dockerfile:
    """The last stage of the Dockerfile at `path`."""
    stage = Dockerfile()
    build_args: dict[str, str] = {}
    for line in logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "ARG" and not stage.base:  # a global ARG: usable in FROM lines
            name, _, default = args.partition("=")
            build_args[name.strip()] = default.strip().strip('"')
        if keyword == "FROM":
            stage = Dockerfile(base=substitute(args.split()[0], build_args), args=dict(build_args))
        stage.instructions.append((keyword, args))
        if keyword == "ENV":
            stage.env.update(_env_pairs(args, stage.env))
        elif keyword == "ENTRYPOINT":
            stage.entrypoint, stage.cmd = _exec_form(args), []  # ENTRYPOINT resets an inherited CMD
        elif keyword == "CMD":
            stage.cmd = _exec_form(args)
        elif keyword == "USER":
            stage.user = substitute(args, stage.env)
        elif keyword == "WORKDIR":
            stage.workdir = posixpath.normpath(posixpath.join(stage.workdir, substitute(args, stage.env)))
        elif keyword == "VOLUME":
            stage.volumes += json.loads(args) if args.startswith("[") else args.split()
        elif keyword in ("COPY", "ADD"):
            stage.copies.append(_copy(args))
    return stage


def ignore_rules(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """`.dockerignore` as (exclude?, regex) rules, in order (a later rule wins, `!` re-includes)."""
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", pattern):
            if part in ("**", "**/"):
                regex += "(?:.*/)?" if part == "**/" else ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        rules.append((not include, re.compile(regex + r"\Z")))
    return rules


def ignored(relpath: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether `.dockerignore` keeps `relpath` (relative to the context) out of the build context:
    the path or a folder above it matches an exclude rule not overridden by a later `!` rule."""
    parts = posixpath.normpath(relpath).split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    out = False
    for exclude, regex in rules:
        if any(regex.match(p) for p in prefixes):
            out = exclude
    return out


# --- podman, with this machine's flags ----------------------------------------------------------


@dataclass
class Podman:
    """`podman build` and `podman run --rm` with the flags docker/local-base.sh's `env` verb exports
    (runc and no default ulimits through CONTAINERS_CONF, host network, the CA bundle and pip.conf
    mounted into builds), read from the script itself so that the tests use what it documents, and
    the podman-compose it installs."""

    build_argv: list[str]
    run_argv: list[str]
    env: dict[str, str]
    compose: str

    @classmethod
    def from_script(cls, script: Path) -> Podman:
        show = 'printf "%s\\n" "$CONTAINERS_CONF" "$PODMAN_BUILD" "$PODMAN_RUN" "$PODMAN_COMPOSE"'
        done = subprocess.run(["bash", "-c", f'. "{script}" env && {show}'], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stderr
        conf, build, run, compose = done.stdout.splitlines()
        return cls(shlex.split(build), shlex.split(run), {**os.environ, "CONTAINERS_CONF": conf}, compose)

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`podman ARGS`; with `check`, a failure fails the test with podman's output."""
        done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=self.env)
        assert not check or done.returncode == 0, f"podman {shlex.join(args)}: exit {done.returncode}\n" + (
            done.stdout[-3000:] + done.stderr[-3000:])
        return done

    def build(self, dockerfile: Path, context: Path, tag: str, build_args: dict[str, str],
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
        argv = [*self.build_argv, "-f", str(dockerfile), "-t", tag]
        for key, value in build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        return subprocess.run([*argv, str(context)], capture_output=True, text=True, timeout=timeout, env=self.env)

    def run(self, image: str, *args: str, volumes: tuple[str, ...] = (), env: dict[str, str] | None = None,
            entrypoint: str | None = None, workdir: str | None = None, name: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """A container of `image` with `args` as its command (the image's CMD when none), removed when
        it exits; its exit status and output, unchecked."""
        argv = list(self.run_argv)
        for volume in volumes:
            argv += ["-v", volume]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        if entrypoint is not None:
            argv += ["--entrypoint", entrypoint]
        if workdir is not None:
            argv += ["-w", workdir]
        if name is not None:
            argv += ["--name", name]
        return subprocess.run([*argv, image, *args], capture_output=True, text=True, timeout=timeout, env=self.env)

    def volume(self, name: str) -> Path:
        """A new named volume; where its files are on this machine (rootful podman keeps them in its storage)."""
        self("volume", "create", name)
        return Path(self("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip())


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first table that `headwater` prints (rich box drawing), as cell texts."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("┡"))  # the line under the header
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("│"):
            break
        rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return rows


# --- what the demo leaves in /data --------------------------------------------------------------


def source_rows(data: Path) -> dict[str, int]:
    """Rows of each raw source, counted straight from the generated files."""
    with closing(sqlite3.connect(data / "photos.sqlite")) as con:
        users, photos = (con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("users", "photos"))
    events = sum(len(f.read_text().splitlines()) for f in (data / "events").glob("*.jsonl"))
    classifier = sum(pq.read_metadata(f).num_rows for f in (data / "classifier").glob("*.parquet"))
    return {"users": users, "photos": photos, "events": events, "classifier": classifier}


def assert_demo_folder(root: Path) -> None:
    """`root` (the /data volume) holds the demo's data, a lake whose raw tables have every generated
    row, a DuckDB warehouse with every model's lake rows, and a training set equal to the independent
    pandas oracle's (tests/support/photo_reference.py)."""
    lake = Lake(str(root / "lake"))
    assert set(lake.tables()) >= {*(f"raw.{s}" for s in RAW), *(f"models.{m}" for m in MODELS)}
    assert {s: lake.dataset(f"raw.{s}").count_rows() for s in RAW} == source_rows(root / "data" / "photo_popularity")
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        published = {m: con.execute(f"select count(*) from {m}").fetchone()[0] for m in MODELS}
    assert published == {m: lake.dataset(f"models.{m}").count_rows() for m in MODELS}
    assert_matches_oracle(root)  # training_set equals an independent pandas computation
