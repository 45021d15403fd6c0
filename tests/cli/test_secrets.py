"""No secret in any output of a run: a pipeline with its lake on S3 (moto, with a real secret key,
from the environment or from headwater.toml's storage options) and its warehouse on PostgreSQL
(a password in HEADWATER_WAREHOUSE), with a model whose error quotes both and a SQL source whose
URL carries a third, run by `headwater run` under HEADWATER_DEBUG=1 in this process (every log
record kept) and as a subprocess; then `runs`, `doctor`, `history`, `show` and `query`. Each
secret is looked for in stdout and stderr, the log records, the runs table's rows, every lake
table's commit metadata and the warehouse's bookkeeping."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from engine import redact
from engine.cli import app
from engine.lake import Lake
from engine.lake.storage import AWS_ENV
from engine.publish import BOOKKEEPING
from engine.runs.manifest import RUNS
from tests.support.processes import ROOT
from tests.support.s3 import S3Server

cli = CliRunner()

PIPELINE = '''
import os
from engine import Pipeline, model, sources

orders = sources.files("orders", {orders!r})
crm = sources.sql("crm", {crm!r}, "customers")  # nothing listens there: the load fails


@model(inputs={{"orders": "raw.orders"}})
def totals(orders):
    return orders.groupby("customer_id", as_index=False)["amount"].sum()


@model(inputs={{"orders": "raw.orders"}})
def leaky(orders):
    raise RuntimeError("cannot reach " + os.environ["HEADWATER_WAREHOUSE"] + " with key {aws_secret}")


pipeline = Pipeline("leaky", sources=[orders, crm], models=[totals, leaky])
'''


class Records(logging.Handler):
    """Every record of the `headwater` loggers, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter("%(name)s %(levelname)s %(message)s").format(record))


@pytest.fixture
def records() -> Iterator[Records]:
    top = logging.getLogger("headwater")
    handler, level = Records(), top.level
    top.addHandler(handler)
    top.setLevel(logging.DEBUG)
    yield handler
    top.removeHandler(handler)
    top.setLevel(level)


@pytest.fixture(params=["environment", "storage_options"])
def leaky(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, s3_server: S3Server, s3_bucket: str,
          monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The pipeline's folder, its settings in the environment, and the secrets to look for."""
    monkeypatch.setattr(redact, "_remembered", set())  # nothing learnt by earlier tests helps
    for var in AWS_ENV + ("AWS_PROFILE",):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    password, crm_password = "S3cret-" + uuid.uuid4().hex[:10], "Crm-" + uuid.uuid4().hex[:10]
    warehouse = sa.make_url(pg_url).set(password=password).render_as_string(hide_password=False)
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "a.csv").write_text("order_id,customer_id,amount\n1,1,10.5\n2,1,4.5\n3,2,7.0\n")
    (tmp_path / "pipeline.py").write_text(PIPELINE.format(
        orders=str(tmp_path / "orders" / "*.csv"), aws_secret=s3_server.secret,
        crm=f"postgresql+psycopg://crm_user:{crm_password}@127.0.0.1:1/crm"))
    env = {"HEADWATER_WAREHOUSE": warehouse, "HEADWATER_LAKE": f"s3://{s3_bucket}/lake",
           "HEADWATER_BACKEND": "pandas", "HEADWATER_DEBUG": "1"}
    if request.param == "environment":
        env.update(s3_server.env())
    else:
        (tmp_path / "headwater.toml").write_text(
            "[storage_options]\n" + "".join(f'{k} = "{v}"\n' for k, v in s3_server.env().items()))
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(tmp_path)
    options = {} if request.param == "environment" else s3_server.env()
    return {"root": tmp_path, "secrets": [password, s3_server.secret, crm_password], "warehouse": warehouse,
            "lake": Lake(f"s3://{s3_bucket}/lake", {**s3_server.env(), **options}), "env": env}


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


def test_no_secret_in_any_output_of_a_run(leaky: dict[str, Any], records: Records) -> None:
    secrets, root = leaky["secrets"], leaky["root"]
    ran = cli.invoke(app, ["run", "pipeline.py"])
    assert ran.exit_code == 1  # the crm load and the leaky model fail; orders and totals go through
    last = " ".join(ran.stdout.split()).rpartition("landed ")[2]  # the last line, wrapped at 80 columns
    assert last.startswith("3 new rows; lake s3://") and "warehouse postgresql+psycopg://postgres:***@" in last
    assert "error: load 'crm' failed" in ran.stderr and "with key ***" in ran.stderr
    assert "Traceback" in ran.stderr  # HEADWATER_DEBUG=1: the model's traceback, its source line masked too
    outputs = {"run stdout": ran.stdout, "run stderr": ran.stderr}
    for args in (["runs"], ["doctor"], ["history", "raw.orders"], ["show", RUNS, "--limit", "5"],
                 ["query", f"select * from {BOOKKEEPING}"], ["show", "raw.nope"]):
        done = cli.invoke(app, args)
        outputs[" ".join(args) + " stdout"], outputs[" ".join(args) + " stderr"] = done.stdout, done.stderr
    assert "published" not in outputs["doctor stdout"] and "postgresql" in outputs["doctor stdout"]

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}, **leaky["env"],
           "PYTHONPATH": str(ROOT)}
    (root / "orders" / "b.csv").write_text("order_id,customer_id,amount\n4,3,1.0\n")
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", "pipeline.py"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "landed 1 new rows" in proc.stdout, proc.stderr
    outputs |= {"subprocess stdout": proc.stdout, "subprocess stderr": proc.stderr}

    outputs["log records"] = "\n".join(records.lines)
    assert "load raw.orders: landed" in outputs["log records"]
    lake: Lake = leaky["lake"]
    rows = lake.read(RUNS).to_pylist()
    assert len(rows) == 2 and all(r["status"] == "failed" for r in rows)
    assert all("with key ***" in r["error"] or "crm" in r["error"] for r in rows)
    outputs["runs table"] = json.dumps(rows, default=str)
    outputs["lake commits"] = json.dumps({t: lake.history(t) for t in lake.tables() + [RUNS]}, default=str)
    engine = sa.create_engine(leaky["warehouse"])
    with engine.connect() as conn:
        outputs["warehouse bookkeeping"] = str(conn.execute(sa.text(f"SELECT * FROM {BOOKKEEPING}")).fetchall())
    engine.dispose()

    found = {where: leaks(text, secrets) for where, text in outputs.items() if leaks(text, secrets)}
    assert found == {}, f"secrets found in {sorted(found)}"
