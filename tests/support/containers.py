"""Readers for the container files, for tests: a Dockerfile's final stage, `.dockerignore` rules
and compose's `${VAR:-default}` interpolation. No Docker engine is needed (or used) by any of them.

`parse_dockerfile` understands what docker/ uses: line continuations, comments, `ENV k=v` and the
legacy `ENV k v`, `$VAR`/`${VAR}` substitution in ENV, WORKDIR, USER, VOLUME, COPY (flags, JSON
form) and the JSON (exec) and shell forms of ENTRYPOINT and CMD. A `FROM` starts a new stage;
only the last stage is described, as that is the image that runs.
"""
from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

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
    for line in logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            stage = Dockerfile(base=args.split()[0])
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
