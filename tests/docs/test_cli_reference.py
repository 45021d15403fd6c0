"""The CLI reference of the docs is the `headwater` command itself: docs/hooks.py builds it from
the Typer app (plugins' commands included), so every command and option is there with its help
and default, without MkDocs. And the README's links lead somewhere."""
from __future__ import annotations

import importlib.util
import re
from types import ModuleType

import typer

from engine.cli import app
from tests.docs.runnable import DOCS, ROOT


def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_command_and_option_is_in_the_reference() -> None:
    reference = hooks().cli_reference()
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="headwater")
    names = group.list_commands(ctx)
    assert {"run", "demo", "doctor", "show", "query", "deploy", "serve"} <= set(names)  # plugins come in
    for name in names:
        command = group.get_command(ctx, name)
        assert f"### headwater {name}\n" in reference
        section = reference.split(f"### headwater {name}\n", 1)[1].split("\n### ", 1)[0]
        first_line = (command.help or "").strip().splitlines()[0]
        assert first_line.split(":")[0].split("(")[0] in section.replace("\\", ""), f"{name}: its help"
        for param in command.params:
            if param.name == "help" or getattr(param, "hidden", False):
                continue
            spelled = [(param.metavar or param.name).upper()] if param.param_type_name == "argument" else param.opts
            for text in spelled:
                assert re.search(rf"`[^`]*{re.escape(text)}\b", section), f"{name}: no {text} in the reference"
    assert "| `--limit <int>` | rows to show | `20` |" in reference  # help and default side by side
    assert "raw.&lt;source&gt;" in reference  # help text shows as written, not as an HTML tag


def test_the_marker_becomes_the_reference() -> None:
    module = hooks()
    page = (DOCS / "cli.md").read_text()
    assert module.MARKER in page and module.MARKER not in module.on_page_markdown(page, None, None, None)
    prefect = (DOCS / "prefect.md").read_text()
    assert "usage: python -m flows.elt" in module.on_page_markdown(prefect, None, None, None)


def test_the_readme_links_lead_somewhere() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert any(link.startswith("docs/") for link in links)
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert not missing, f"README.md links to files that are not there: {missing}"
