"""`headwater backfill`: rebuild a date range of a partitioned model, one partition per step."""
from __future__ import annotations

from typing import Annotated

import typer

from engine.cli.app import PIPELINE_HELP, BackendOpt, Failed, LakeOpt, WarehouseOpt, app, console, friendly, guarded
from engine.cli.report import summary_view
from engine.config import Config
from engine.pipeline import load_pipeline
from engine.runs.backfill import backfill, plan_backfill
from engine.runs.runner import Runner


@app.command("backfill")
@friendly
def backfill_cmd(pipeline: Annotated[str, typer.Argument(metavar="PIPELINE", help=PIPELINE_HELP)],
                 select: Annotated[str, typer.Option("--select", "-s", metavar="MODEL",
                                                     help="the partitioned model to backfill")],
                 start: Annotated[str, typer.Option("--from", metavar="DATE", help="first day (YYYY-MM-DD)")],
                 end: Annotated[str, typer.Option("--to", metavar="DATE", help="last day, included")],
                 parallel: Annotated[int, typer.Option(help="partitions built at a time")] = 1,
                 restart: Annotated[bool, typer.Option(
                     "--restart", help="rebuild every partition, even those a backfill that died had done")] = False,
                 lake: LakeOpt = None, warehouse: WarehouseOpt = None, backend: BackendOpt = None) -> None:
    """Rebuild the partitions of MODEL from --from to --to from what is landed (no loads), then
    publish them. A backfill that dies goes on from the partitions not done when run again."""
    p = load_pipeline(pipeline)
    config = guarded(Config.load(p.base_dir, lake=lake, warehouse=warehouse, backend=backend))
    runner = Runner(p, config)
    plan = plan_backfill(runner, select, start, end, restart=restart)
    if plan.done:
        console.print(f"resuming backfill {plan.id}: {len(plan.done)} of {len(plan.partitions)} partition(s) "
                      "done before (--restart rebuilds them too)", highlight=False)
    if not plan.todo:
        console.print("nothing left to do", highlight=False)
        return
    with console.status(f"backfilling {len(plan.todo)} partition(s) of {plan.model}") as status:
        finished: list[str] = []

        def seen(step: object) -> None:
            finished.append(getattr(step, "name", ""))
            status.update(f"backfilling {plan.model}: {len(finished)} of {len(plan.todo)} partition(s) done")

        summary = backfill(runner, plan, parallel, on_step=seen)
    console.print(summary_view(summary, console.width))
    if not summary.ok:
        raise Failed(summary.error or "the backfill failed", [s.traceback for s in summary.failed if s.traceback])
    console.print(f"backfilled {len(plan.todo)} partition(s) of {plan.model} ({plan.partitions[0]} to "
                  f"{plan.partitions[-1]})", highlight=False)
