"""ELT-H results: saved measurements, the markdown tables in bench/RESULTS.md (between the
ELT-H markers) and the chart of ratios per stage and scale."""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from engine.errors import HeadwaterError

BENCH = Path(__file__).resolve().parents[1]
RESULTS_JSON = BENCH / "elt_h_results.json"
RESULTS_MD = BENCH / "RESULTS.md"
STAGES = ("land", "transform", "publish")
GPU_BACKENDS = ("cudf", "dask-cudf")
PEERS = {"headwater": "Headwater (pandas)", "pandas": "hand pandas", "headwater-sql": "Headwater SQL",
         "duckdb": "DuckDB SQL", "headwater-polars": "Headwater polars", "polars": "polars"}  # in table order
MODEL_PEERS = {"headwater-sql": "duckdb", "headwater-polars": "polars"}  # Headwater's model kind -> its engine alone
MODEL_TARGETS = {"wall_s": 1.10, "transform_s": 1.2, "peak_rss_mb": 1.0}  # at most this × the peer's (issue 15)
SF10 = "python -m bench.elt_h --scale 10 --runs 3 --format parquet csv --chart"


def section_id(results: Path) -> str:
    """The RESULTS.md section a results file fills: `elt-h` for elt_h_results.json, `elt-h-gpu`
    for elt_h_gpu_results.json (a GPU machine's runs, kept apart from this machine's)."""
    return results.stem.removesuffix("_results").replace("_", "-")


def markers(results: Path) -> tuple[str, str]:
    """The start and end markers of the section `results` fills."""
    sid = section_id(results)
    return f"<!-- {sid}:start -->", f"<!-- {sid}:end -->"


START, END = markers(RESULTS_JSON)  # this machine's section: <!-- elt-h:start --> … <!-- elt-h:end -->


def chart_name(results: Path) -> str:
    """The chart file drawn from `results`, beside it."""
    return f"{results.stem.removesuffix('_results')}_ratios.png"


def baseline(summary: dict) -> str:
    """The engine the chart divides by: hand pandas, or Headwater's pandas backend where hand
    pandas was not run (a GPU machine's session)."""
    return "pandas" if any(k[2] == "pandas" for k in summary) else "headwater"


def on_gpu(engine: str) -> bool:
    """True for Headwater on a GPU backend (`headwater:cudf`, `headwater:dask-cudf`)."""
    return engine.partition(":")[2] in GPU_BACKENDS


def label(engine: str) -> str:
    """The engine's name in tables and charts."""
    base, _, backend = engine.partition(":")
    if backend:
        return f"Headwater ({backend})" if base == "headwater" else f"{PEERS.get(base, base)} ({backend})"
    return PEERS.get(base, engine)


def save(path: Path, records: list[dict[str, Any]], session: dict[str, Any]) -> None:
    """Merge `records` into the results file: they replace earlier runs of the same scale,
    format and engine; `session` is kept per scale."""
    old = load(path) if path.exists() else {"records": [], "sessions": {}}
    fresh = {(r["scale"], r["format"], r["engine"]) for r in records}
    kept = [{"date": old["sessions"].get(f"{r['scale']:g}", {}).get("date", "?"), **r}  # runs before dates were kept
            for r in old["records"] if (r["scale"], r["format"], r["engine"]) not in fresh]
    records = [{**r, "date": session.get("date", "?")} for r in records]
    sessions = old["sessions"] | {f"{r['scale']:g}": session for r in records}
    path.write_text(json.dumps({"records": kept + records, "sessions": sessions}, indent=1) + "\n")


def load(path: Path) -> dict[str, Any]:
    """The saved results (records and sessions)."""
    if not path.exists():
        raise HeadwaterError(f"no ELT-H results at {path}", "run `python -m bench.elt_h --scale 0.1` first")
    return json.loads(path.read_text())


def summarise(records: list[dict[str, Any]]) -> dict[tuple[float, str, str], dict[str, Any]]:
    """Per (scale, format, engine): median, min and max of each measurement, and the rows."""
    groups: dict[tuple[float, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["scale"], r["format"], r["engine"]), []).append(r)
    out = {}
    for key, runs in groups.items():
        stats: dict[str, Any] = {"runs": len(runs), "land_rows": runs[0]["land_rows"],
                                 "out_rows": runs[0]["out_rows"], "date": runs[0].get("date")}
        for m in ("wall_s", "cpu_s", "peak_rss_mb", "land_peak_rss_mb", "land_s", "transform_s", "publish_s"):
            values = [r[m] for r in runs]
            stats[m] = (statistics.median(values), min(values), max(values))
        out[key] = stats
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b > 0 else "–"


def _per_scale(summary: dict, scale: float, date: str | None = None) -> list[str]:
    """The tables of `scale`, one per format; a row measured in another session than `date`
    (the scale's latest) is marked † and dated below the table."""
    lines, base = [], baseline(summary)
    for fmt in sorted({k[1] for k in summary if k[0] == scale}, reverse=True):
        rows = {k[2]: v for k, v in summary.items() if k[0] == scale and k[1] == fmt}
        duck, ref = rows.get("duckdb"), rows.get(base)
        any_row = next((r for r in rows.values() if r.get("date") in (None, date)), next(iter(rows.values())))
        lines += ["", f"**SF {scale:g}, {fmt}** ({any_row['land_rows']:,} source rows, {any_row['out_rows']:,} "
                  f"rows published; median of {any_row['runs']} runs, [min–max]):", "",
                  "| engine | wall s | CPU s | peak RSS MB | land peak RSS MB | land s | transform s | publish s "
                  f"| land rows/s | transform rows/s | publish rows/s | wall ÷ DuckDB | wall ÷ {label(base)} |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        earlier = {}
        for engine, s in sorted(rows.items(), key=lambda kv: list(PEERS).index(kv[0].partition(":")[0])):
            wall = s["wall_s"]
            mark = ""
            if date and s.get("date") not in (None, date):
                mark, earlier[label(engine)] = " †", s["date"]
            rates = [f"{(s['out_rows'] if st == 'publish' else s['land_rows']) / s[f'{st}_s'][0]:,.0f}"
                     if s[f"{st}_s"][0] > 0 else "–" for st in STAGES]
            lines.append(f"| {label(engine)}{mark} | {wall[0]:.2f} [{wall[1]:.2f}–{wall[2]:.2f}] | "
                         f"{s['cpu_s'][0]:.1f} | "
                         f"{s['peak_rss_mb'][0]:,.0f} | {s['land_peak_rss_mb'][0]:,.0f} | "
                         + " | ".join(f"{s[f'{st}_s'][0]:.2f}" for st in STAGES) + " | " + " | ".join(rates)
                         + f" | {_ratio(wall[0], duck['wall_s'][0]) if duck else '–'}"
                         f" | {_ratio(wall[0], ref['wall_s'][0]) if ref else '–'} |")
        if earlier:
            lines += ["", "† not run in this session: " + ", ".join(f"{e} measured {d}" for e, d in earlier.items())
                      + " (its ratios compare runs of different sessions)."]
    return lines


def _not_run(summary: dict, scale: float, machine: str) -> list[str]:
    """Why engines run at a smaller scale are missing at `scale`: their peak memory there,
    scaled linearly from the largest smaller scale, against the machine's memory."""
    here = {k[2] for k in summary if k[0] == scale}
    smaller = [k for k in summary if k[0] < scale and k[2] not in here]
    if not smaller:
        return []
    base = max(k[0] for k in smaller)
    peaks: dict[str, float] = {}
    for sc, _, engine in smaller:
        if sc == base:
            peaks[engine] = max(peaks.get(engine, 0.0), summary[(sc, _, engine)]["peak_rss_mb"][0])
    found = re.search(r"(\d+) GiB", machine)
    gib = found.group(1) if found else "?"
    return ["", f"Not run at SF {scale:g}: " + ", ".join(
        f"{label(e)} (peak RSS {p / 1024:.1f} GB at SF {base:g}, so about {p * scale / base / 1024:.0f} GB here)"
        for e, p in sorted(peaks.items())) + f", against this machine's {gib} GiB: they hold whole tables in memory."]


def _ratios(summary: dict, base: str) -> list[str]:
    lines = ["| scale | format | engine | land | transform | publish | end to end (wall) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for (scale, fmt, engine), s in sorted(summary.items()):
        ref = summary.get((scale, fmt, base))
        if ref is None or engine == base:
            continue
        cells = [_ratio(s[f"{st}_s"][0], ref[f"{st}_s"][0]) for st in STAGES]
        lines.append(f"| {scale:g} | {fmt} | {label(engine)} | " + " | ".join(cells)
                     + f" | {_ratio(s['wall_s'][0], ref['wall_s'][0])} |")
    return lines


def _overhead(summary: dict) -> list[str]:
    lines = ["| scale | format | land | transform | publish | end to end (wall) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for (scale, fmt, engine), s in sorted(summary.items()):
        hand = summary.get((scale, fmt, "pandas"))
        if engine != "headwater" or hand is None:
            continue
        cells = [f"{s[m][0] - hand[m][0]:+.2f} s ({_ratio(s[m][0], hand[m][0])})"
                 for m in [f"{st}_s" for st in STAGES] + ["wall_s"]]
        lines.append(f"| {scale:g} | {fmt} | " + " | ".join(cells) + " |")
    return lines


def _paired(records: list[dict[str, Any]], key: tuple[float, str, str], peer: str, measure: str) -> str:
    """The median over rounds of `measure`'s ratio to `peer`'s in the same round (engines of a
    round run one after the other, so a busy minute weighs on both); with its range."""
    scale, fmt, engine = key
    rounds: dict[tuple[str | None, int], dict[str, float]] = {}
    for r in records:
        if (r["scale"], r["format"]) == (scale, fmt) and r["engine"] in (engine, peer):
            rounds.setdefault((r.get("date"), r["run"]), {})[r["engine"]] = r[measure]
    ratios = [v[engine] / v[peer] for v in rounds.values() if len(v) == 2 and v[peer] > 0]
    if not ratios:
        return "–"
    return f"{statistics.median(ratios):.2f}× [{min(ratios):.2f}–{max(ratios):.2f}]"


def _against_engines(summary: dict, records: list[dict[str, Any]]) -> list[str]:
    """Headwater's SQL and polars models against the same queries run by their engine alone:
    medians' ratios, and the same round's ratios (their median and range) for wall and transform."""
    lines = ["| scale | format | Headwater | against | end to end (wall) | transform | publish | CPU s | peak RSS MB "
             "| wall, per round | transform, per round |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, s in sorted(summary.items()):
        scale, fmt, engine = key
        ref = summary.get((scale, fmt, MODEL_PEERS.get(engine, "")))
        if ref is None:
            continue
        peer = MODEL_PEERS[engine]
        cells = [_ratio(s[m][0], ref[m][0]) for m in ("wall_s", "transform_s", "publish_s", "cpu_s")]
        mine, theirs = s["peak_rss_mb"][0], ref["peak_rss_mb"][0]
        peak = f"{mine:,.0f} vs {theirs:,.0f} ({_ratio(mine, theirs)})"
        lines.append(f"| {scale:g} | {fmt} | {label(engine)} | {label(peer)} | " + " | ".join(cells)
                     + f" | {peak} | {_paired(records, key, peer, 'wall_s')} | "
                     f"{_paired(records, key, peer, 'transform_s')} |")
    return lines


def _model_targets(summary: dict) -> list[str]:
    """Rows of the targets table for Headwater's SQL and polars models (issue 15)."""
    def where(engine: str, measure: str) -> str:
        found = []
        for (scale, fmt, e), s in sorted(summary.items()):
            ref = summary.get((scale, fmt, MODEL_PEERS[engine]))
            if e == engine and ref is not None and ref[measure][0] > 0:
                ratio = s[measure][0] / ref[measure][0]
                found.append(f"SF{scale:g} {fmt} {ratio:.2f}× "
                             f"({'met' if ratio <= MODEL_TARGETS[measure] else 'missed'})")
        return ", ".join(found) or "not run"

    return [f"| Headwater SQL models end to end ≤ 1.10× DuckDB SQL alone | {where('headwater-sql', 'wall_s')} |",
            f"| Headwater SQL models' transform stage ≤ 1.2× DuckDB's | {where('headwater-sql', 'transform_s')} |",
            f"| Headwater polars models end to end ≤ 1.10× polars alone | {where('headwater-polars', 'wall_s')} |",
            f"| peak RSS of Headwater SQL models ≤ DuckDB SQL's | {where('headwater-sql', 'peak_rss_mb')} |",
            f"| peak RSS of Headwater polars models ≤ polars' | {where('headwater-polars', 'peak_rss_mb')} |"]


def _targets(summary: dict) -> list[str]:
    def pick(scale: float, fmt: str, engine: str) -> dict | None:
        return summary.get((scale, fmt, engine))

    scales = sorted({k[0] for k in summary})
    e2e, landing, memory = [], [], []
    def apart(a: dict, b: dict) -> str:  # † when the two were measured in different sessions
        return " †" if a.get("date") != b.get("date") else ""

    for (scale, fmt, engine), s in sorted(summary.items()):
        if engine.partition(":")[0] not in ("headwater", "headwater-sql", "headwater-polars"):
            continue  # the SQL and polars engines land the same way as the pandas one
        hand, duck = pick(scale, fmt, "pandas"), pick(scale, fmt, "duckdb")
        if hand and scale == 1 and engine == "headwater":
            e2e.append(f"{fmt} {_ratio(s['wall_s'][0], hand['wall_s'][0])}{apart(s, hand)}")
        if duck:
            backend = "" if engine == "headwater" else f" ({label(engine)})"
            landing.append(f"SF{scale:g} {fmt} {_ratio(s['land_s'][0], duck['land_s'][0])}{backend}{apart(s, duck)}")
        if scale == max(scales):
            memory.append(f"SF{scale:g} {fmt} {s['land_peak_rss_mb'][0]:,.0f} MB ({label(engine)})")
    return ["| target | where Headwater stands (median) |", "| --- | --- |",
            f"| Headwater (pandas) ≤ 1.10× hand pandas end to end at SF1 | {', '.join(e2e) or 'SF1 not run'} |",
            f"| landing at least as fast as DuckDB copying the files to Parquet (land s ÷ DuckDB's ≤ 1) "
            f"| {', '.join(landing) or '–'} |",
            f"| landing peak RSS at SF10 < 1.5 GB | SF10 not run here; "
            f"{', '.join(memory) or '–'} at the largest scale run |"
            if 10 not in scales else f"| landing peak RSS at SF10 < 1.5 GB | {', '.join(memory)} |",
            *_model_targets(summary),
            *([] if not any("†" in x for x in e2e + landing) else
              ["", "† the two medians come from different sessions (an engine not re-run in the latest one)."])]


def markdown(results: dict[str, Any], path: Path = RESULTS_JSON) -> str:
    """The ELT-H section of RESULTS.md that the results saved at `path` fill, markers included."""
    summary = summarise(results["records"])
    sessions = results["sessions"]
    start, end = markers(path)
    gpu = any(on_gpu(k[2]) for k in summary)
    title = ("ELT-H on a GPU machine: Headwater on cuDF against its pandas backend and DuckDB SQL" if gpu
             else "ELT-H: Headwater (pandas, SQL and polars models) against hand pandas, DuckDB SQL and polars")
    lines = [start, f"## {title}", "",
             "The job: land TPC-H `lineitem`, `orders`, `customer` (from Parquet, and from CSV with the "
             "types declared), build Q1, Q3 and a wide filtered join (every column of the 1995 MAIL/SHIP "
             "lines, written in full), publish them to a DuckDB file. Headwater runs the models as pandas-API "
             "functions (the frame queries of `queries.py`), as SQL models (the DuckDB peer's SQL; "
             "DuckDB over the lake's files) and as polars models (the polars peer's lazy queries; polars' "
             "streaming engine), one `engine.Runner` run each, with the same loads and publishes. "
             "Each engine runs in a fresh process, "
             "round robin; a round's outputs are checked equal across engines (sorted, floats to rel 1e-9) "
             "before its times count. Wall time includes interpreter start and imports; stage seconds are "
             "each engine's own (Headwater's: its run's `Step` seconds). Land and transform rows/s count "
             "source rows, publish rows/s rows published. Peak RSS is the process's high-water mark "
             "(the kernel's VmHWM); land peak RSS is that value once landing finished.", ""]
    for scale in sorted({k[0] for k in summary}):
        s = sessions.get(f"{scale:g}", {})
        lines += [f"### SF {scale:g}", "", f"Measured {s.get('date', '?')} on {s.get('machine', '?')}; "
                  + ", ".join(f"{k} {v}" for k, v in s.get("versions", {}).items()) + ".", "",
                  f"`{s.get('command', '?')}`"]
        files = s.get("data", {}).get(f"{scale:g}", {})
        if files:
            lines += ["", f"Data: `tpchgen-cli {files['command']}` ({files['generator']}), normalised; sha256: "
                      + ", ".join(f"`{name}` {f['sha256'][:16]}… ({f['bytes'] / 1e6:,.1f} MB)"
                                  for name, f in files["files"].items()) + "."]
        lines += _per_scale(summary, scale, s.get("date")) + _not_run(summary, scale, s.get("machine", "")) + [""]
    if 10 not in {k[0] for k in summary} and not gpu:
        lines += ["### SF 10", "", f"Not run here (the shared 2-core machine); the command is `{SF10}`.", ""]
    if any(k[2] in MODEL_PEERS for k in summary):
        lines += ["### Headwater's SQL and polars models against their engines alone (median ÷ the engine's)", ""]
        lines += _against_engines(summary, results["records"]) + [""]
    lines += ["### Ratios per stage to DuckDB SQL (median seconds ÷ DuckDB's)", ""] + _ratios(summary, "duckdb")
    if gpu:
        lines += ["", "### Ratios per stage to Headwater on pandas (median seconds ÷ the pandas backend's)", ""]
        lines += _ratios(summary, "headwater")
        lines += ["", "### GPU targets", ""] + _gpu_targets(summary)
    else:
        lines += ["", "### Ratios per stage to hand pandas (median seconds ÷ hand pandas')", ""]
        lines += _ratios(summary, "pandas")
        lines += ["", "### Headwater's overhead over hand pandas, by stage (median)", ""] + _overhead(summary)
        lines += ["", "### Targets", ""] + _targets(summary)
    flag = "" if path == RESULTS_JSON else f" --results bench/{path.name}"
    lines += ["", f"Chart: [{chart_name(path)}]({chart_name(path)}) (`python -m bench.elt_h --report-only{flag}` "
              f"redraws it and these tables from `bench/{path.name}`).", end]
    return "\n".join(lines)


def _gpu_targets(summary: dict) -> list[str]:
    """Where Headwater on a GPU backend stands against the GPU mode's bars."""
    e2e, models = [], []
    for (scale, fmt, engine), s in sorted(summary.items()):
        if not on_gpu(engine):
            continue
        duck, cpu = summary.get((scale, fmt, "duckdb")), summary.get((scale, fmt, "headwater"))
        if duck and s["wall_s"][0] > 0:
            e2e.append(f"SF{scale:g} {fmt} {duck['wall_s'][0] / s['wall_s'][0]:.2f}×")
        if cpu and s["transform_s"][0] > 0:
            models.append(f"SF{scale:g} {fmt} {cpu['transform_s'][0] / s['transform_s'][0]:.2f}×")
    return ["| target | where Headwater on the GPU stands (median; higher is faster) |", "| --- | --- |",
            f"| end to end at least 3× faster than DuckDB SQL (DuckDB wall ÷ GPU wall ≥ 3) | {', '.join(e2e) or '–'} |",
            f"| model stage at least 10× the pandas backend at SF10 (pandas transform ÷ GPU transform) "
            f"| {', '.join(models) or '–'} |"]


def write_markdown(path: Path, section: str, start: str = START, end: str = END) -> None:
    """Put `section` between the `start` and `end` markers of `path` (the ELT-H ones by default;
    appended when they are missing)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def chart(results: dict[str, Any], path: Path) -> Path:
    """A PNG of each engine's median seconds ÷ the baseline's (hand pandas, or the pandas backend
    on a GPU machine; DuckDB's at a scale the baseline was not run in that scale's latest
    session), per stage and scale, one panel per format."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(results["records"])
    formats = sorted({k[1] for k in summary}, reverse=True)
    scales = sorted({k[0] for k in summary})
    base = baseline(summary)
    engines = sorted({k[2] for k in summary} - {base}, key=lambda e: (list(PEERS).index(e.partition(":")[0]), e))
    latest = {sc: results.get("sessions", {}).get(f"{sc:g}", {}).get("date") for sc in scales}
    measures = [f"{st}_s" for st in STAGES] + ["wall_s"]
    fig, axes = plt.subplots(1, len(formats), figsize=(7 * len(formats), 4.5), squeeze=False)
    for ax, fmt in zip(axes[0], formats):
        # per scale run in this format: the baseline, or DuckDB where the baseline was not run (SF10)
        under = {sc: base if (sc, fmt, base) in summary and summary[sc, fmt, base]["date"] in (None, latest[sc])
                 else "duckdb"
                 for sc in scales if any(k[:2] == (sc, fmt) for k in summary)}
        groups = [(sc, m) for sc in under for m in measures]
        width = 0.8 / max(len(engines), 1)
        for i, engine in enumerate(engines):
            values = []
            for sc, m in groups:
                s, ref = summary.get((sc, fmt, engine)), summary.get((sc, fmt, under[sc]))
                values.append(s[m][0] / ref[m][0] if s and ref and ref[m][0] > 0 else float("nan"))
            ax.bar([g + i * width for g in range(len(groups))], values, width, label=label(engine))
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks([g + width * (len(engines) - 1) / 2 for g in range(len(groups))])
        ax.set_xticklabels([f"SF{sc:g}{'' if under[sc] == base else '*'}\n{m[:-2].replace('wall', 'total')}"
                            for sc, m in groups], fontsize=7)
        starred = ("" if set(under.values()) == {base}
                   else f"\n* ÷ DuckDB SQL: {label(base)} not run in that scale's latest session")
        ax.set_title(f"ELT-H from {fmt}: seconds ÷ {label(base)} (lower is faster){starred}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
