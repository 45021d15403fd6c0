"""What `pip install` installs: the `engine` and `flows` packages (the demo inside the engine),
no top-level `examples`, the `headwater` command and the entry point that adds Prefect's
commands to it; and the `headwater` command runs without importing Prefect."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_engine_and_flows_and_no_examples(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, timeout=600, capture_output=True)
    (wheel,) = tmp_path.glob("headwater-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} - {info} == {"engine", "flows"}
    demo = {f"engine/demo/{m}.py" for m in ("generate", "daily", "models", "pipeline")}
    assert demo <= names  # `headwater demo` works from a plain install
    assert "headwater = engine.cli:main" in entry_points
    assert "[headwater.cli]\nflows = flows.cli:register" in entry_points


def test_the_command_and_the_engine_do_not_import_prefect() -> None:
    code = ("import sys, engine, engine.cli; from engine.cli import app; "
            "names = [c.name or c.callback.__name__ for c in app.registered_commands]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'flows', 'examples'))); "
            "print('deploy' in names and 'serve' in names)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported, plugged = done.stdout.split("\n")[:2]
    assert imported == "['flows', 'flows.cli']"  # the plugin module only: no Prefect, no examples
    assert plugged == "True"  # deploy and serve came through the headwater.cli entry point
