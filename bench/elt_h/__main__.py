"""ELT-H: Headwater against hand-written pandas, DuckDB SQL and polars on the same TPC-H job.

    python -m bench.elt_h --scale 0.1 1 --runs 3 --format parquet csv \\
        --engines headwater pandas duckdb polars [--backend cudf] [--chart]
    python -m bench.elt_h --report-only          # tables and chart again from the saved results

Results are merged into bench/elt_h_results.json (runs of the same scale, format and engine are
replaced), the tables go into bench/RESULTS.md between the ELT-H markers, the chart to
bench/elt_h_ratios.png.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.elt_h import data, measure, report
from engine.errors import HeadwaterError


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.elt_h", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, nargs="+", default=[1.0], help="TPC-H scale factors")
    parser.add_argument("--runs", type=int, default=3, help="rounds per scale and format (>= 3 for a median)")
    parser.add_argument("--format", nargs="+", default=list(data.FORMATS), choices=data.FORMATS)
    parser.add_argument("--engines", nargs="+", default=["headwater", "pandas", "duckdb", "polars"])
    parser.add_argument("--backend", default=None,
                        help="also run Headwater on this backend (cudf: the GPU mode)")
    parser.add_argument("--chart", action="store_true", help="write bench/elt_h_ratios.png too")
    parser.add_argument("--results", type=Path, default=report.RESULTS_JSON)
    parser.add_argument("--markdown", type=Path, default=report.RESULTS_MD)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch space (default: a temp folder)")
    parser.add_argument("--report-only", action="store_true", help="only regenerate tables and chart")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="start no new round after this many seconds (rounds done are saved as they end)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if not args.report_only:
            engines = list(args.engines)
            if args.backend and args.backend != "pandas" and f"headwater:{args.backend}" not in engines:
                engines.insert(0, f"headwater:{args.backend}")
            command = "python -m bench.elt_h " + " ".join(sys.argv[1:] if argv is None else argv)
            about = measure.session(command, args.scale)
            with tempfile.TemporaryDirectory(prefix="elt_h-", dir=args.workdir) as work:
                measure.measure(args.scale, args.format, engines, args.runs, Path(work), sys.stderr,
                                budget_s=args.budget, after_round=lambda done: report.save(args.results, done, about))
        results = report.load(args.results)
        section = report.markdown(results, args.results)
        report.write_markdown(args.markdown, section, *report.markers(args.results))
        print(section)
        if args.chart or args.report_only:
            report.chart(results, args.results.parent / report.chart_name(args.results))
    except HeadwaterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
