"""MkDocs hooks (mkdocs.yml `hooks:`): what the docs take from the repository instead of copying it.

* The CLI reference: `<!-- cli-reference -->` in a page becomes a section per command of the
  `headwater` command, built from the Typer app itself (`engine.cli.app`, with the commands
  that plugins add through the `headwater.cli` entry point, such as `deploy` and `serve`):
  usage, help, arguments and options with their help and defaults. A new option or a changed
  help text reaches the docs with no edit here.
* `<!-- flows-elt-help -->` becomes the help of `python -m flows.elt` (an argparse parser).
* Files kept at the repository's root, published as pages: `ARCHITECTURE.md` as
  `architecture.md`, and `bench/RESULTS.md` with the chart it links to, at the same paths as in
  the repository (so `bench/RESULTS.md` links work from the docs and the README alike).

`cli_reference()` is plain Python over the app: tests/docs/test_cli_reference.py calls it without
MkDocs.
"""
from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- cli-reference -->"
FLOW_MARKER = "<!-- flows-elt-help -->"  # `python -m flows.elt --help`, as a text block
# repository files published as they are: docs path -> repository path
REPO_FILES = {
    "architecture.md": "ARCHITECTURE.md",
    "bench/RESULTS.md": "bench/RESULTS.md",
    "bench/elt_h_ratios.png": "bench/elt_h_ratios.png",
}


def _app() -> Any:
    """The `headwater` command as click sees it (Typer's own click), plugins included: the
    repository's `engine` first on the path, so the docs describe this checkout."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import typer

    import engine.cli

    return typer.main.get_command(engine.cli.app)


def _help_text(text: str | None) -> str:
    """A docstring or help string as markdown paragraphs (a line break inside a paragraph is a
    space; a blank line starts a new paragraph)."""
    if not text:
        return ""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text))
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _escaped_paragraphs(text: str) -> str:
    return "\n\n".join(_escaped(p) for p in text.split("\n\n"))


def _escaped(text: str) -> str:
    """Help text as markdown that shows it as written: outside `code spans`, characters markdown
    would read (`<source>` as an HTML tag, `_` and `*` as emphasis, `|` as a table cell's end)
    are escaped; line breaks become spaces. Code spans stay as they are: a `|` in one does not
    end a table cell."""
    parts = re.split(r"(`[^`]*`)", text.replace("\n", " "))
    for i, part in enumerate(parts):
        if not (part.startswith("`") and part.endswith("`") and len(part) > 1):  # a code span stays
            part = part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            parts[i] = re.sub(r"([\\*_\[\]|])", r"\\\1", part)
    return "".join(parts)


def _code(text: str) -> str:
    """`text` as a code span (a `|` in a code span does not end a table cell)."""
    return f"`{text}`"


def _split_help(record_help: str) -> tuple[str, str, bool]:
    """(help, default, required) from click's help column, which ends with `[default: x]`
    and `[required]`."""
    default, required = "", False
    while m := re.search(r"\s*\[(default: [^\]]*|required)\]\s*$", record_help):
        if m.group(1) == "required":
            required = True
        else:
            default = m.group(1).removeprefix("default: ")
        record_help = record_help[:m.start()]
    return record_help.strip(), default, required


def _usage(command: Any, ctx: Any, path: str) -> str:
    """`headwater run [OPTIONS] PIPELINE`: arguments by name, optional ones in brackets."""
    pieces = [path, "[OPTIONS]"]
    for param in command.get_params(ctx):
        if param.param_type_name != "argument":
            continue
        name = (param.metavar or param.name or "").upper()
        name += "..." if param.nargs == -1 else ""
        pieces.append(name if param.required else f"[{name}]")
    return " ".join(pieces)


def _params_table(command: Any, ctx: Any, kind: str) -> list[str]:
    """A markdown table of the command's arguments or options (`kind`), help option left out."""
    rows = []
    for param in command.get_params(ctx):
        if param.param_type_name != kind or getattr(param, "hidden", False) or param.name == "help":
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        spelled, help_column = record
        if kind == "argument":
            spelled = (param.metavar or param.name or "").upper()
        help_text, default, required = _split_help(help_column)
        shown = "required" if required else _code(default) if default else ""
        rows.append(f"| {_code(spelled)} | {_escaped(help_text)} | {shown} |")
    if not rows:
        return []
    title = "argument" if kind == "argument" else "option"
    return [f"| {title} | what | default |", "| --- | --- | --- |", *rows, ""]


def cli_reference(heading_level: int = 3) -> str:
    """Markdown for every command of `headwater`: its usage, help, arguments and options."""
    group = _app()
    ctx = group.context_class(group, info_name="headwater")
    hashes = "#" * heading_level
    out: list[str] = []
    globals_ = _params_table(group, ctx, "option")
    if globals_:
        out += ["Options before the command (`headwater --version`):", "", *globals_]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = command.context_class(command, info_name=name, parent=ctx)
        out += [f"{hashes} headwater {name}", "", "```text", _usage(command, sub, f"headwater {name}"), "```", ""]
        help_text = _help_text(command.help)
        if help_text:
            out += [_escaped_paragraphs(help_text), ""]
        out += _params_table(command, sub, "argument")
        out += _params_table(command, sub, "option")
    return "\n".join(out).rstrip() + "\n"


def flows_elt_help(width: int = 100) -> str:
    """`python -m flows.elt --help` (an argparse parser) as a text block, `width` columns wide."""
    _app()  # the repository first on the path
    from flows.elt import parser

    elt = parser()
    formatter = elt.formatter_class
    elt.formatter_class = lambda prog: formatter(prog, width=width)  # type: ignore[misc,call-arg]
    return "```text\n" + elt.format_help().rstrip() + "\n```\n"


# ---- MkDocs hooks ------------------------------------------------------------------------------

def on_files(files: Any, config: Any) -> Any:
    """Publish the repository files of REPO_FILES as if they were in docs/."""
    from mkdocs.structure.files import File

    for docs_path, repo_path in REPO_FILES.items():
        source = ROOT / repo_path
        if not source.is_file():
            raise FileNotFoundError(f"docs/hooks.py publishes {repo_path}, which is not there")
        existing = files.get_file_from_path(docs_path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, docs_path, abs_src_path=str(source)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Put the generated CLI reference where a page has the marker."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_reference())
    if FLOW_MARKER in markdown:
        markdown = markdown.replace(FLOW_MARKER, flows_elt_help())
    return markdown
