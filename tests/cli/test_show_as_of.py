"""`headwater show TABLE --as-of TIME`: the rows of an SCD2 table valid at that time, compared with
the versions valid then in a history computed independently (tests/support/history.py)."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.lake import Lake
from tests.support.history import COLUMNS, LOADED, expected_history, land_snapshots, valid_then

cli = CliRunner()


def shown(lake: Path, *args: str) -> list[dict[str, str]]:
    result = cli.invoke(app, ["show", "raw.customers", "--lake", str(lake), "--format", "csv", *args])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.output)))


@pytest.mark.parametrize("when", ["2026-02-28", "2026-03-01", "2026-03-01T12:00", "2026-03-02",
                                  "2026-03-02T01:00:00+02:00", "2026-03-03", "2026-04-01"])
def test_show_as_of_gives_the_versions_valid_then(tmp_path: Path, when: str) -> None:
    land_snapshots(Lake(str(tmp_path)))
    at = datetime.fromisoformat(when)
    at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at
    want = valid_then(expected_history(LOADED, columns=COLUMNS), at)
    rows = shown(tmp_path, "--as-of", when)
    assert sorted((int(r["id"]), r["name"], r["plan"]) for r in rows) == sorted(v[:3] for v in want.values())
    assert len(shown(tmp_path)) == len(expected_history(LOADED, columns=COLUMNS))  # without it: every version


def test_show_as_of_explains_what_it_cannot_do(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    land_snapshots(lake)
    lake.land("raw.plain", pa.table({"id": [1]}).to_batches(), run_id="r", state={})
    bad = cli.invoke(app, ["show", "raw.customers", "--lake", str(tmp_path), "--as-of", "March"])
    assert bad.exit_code != 0 and "--as-of 'March' is not a date or time" in bad.output
    plain = cli.invoke(app, ["show", "raw.plain", "--lake", str(tmp_path), "--as-of", "2026-03-01"])
    assert plain.exit_code != 0 and "keeps no history" in plain.output and "write='scd2'" in plain.output

