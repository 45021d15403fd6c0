"""Remote Parquet over HTTP: projection and row-group streaming, proven by the bytes served."""
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.sources import files
from tests.support.http_range import HttpFolder
from tests.support.landing import land

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
ROWS, GROUP_ROWS, WIDTH = 20_000, 2_000, 10


def wide_table(seed: int = 0) -> pa.Table:
    """ROWS x WIDTH random doubles (incompressible, so each column is ~1/WIDTH of the file)."""
    rng = np.random.default_rng(seed)
    return pa.table({f"c{i}": rng.random(ROWS) for i in range(WIDTH)})


def write_wide(folder: HttpFolder, name: str, seed: int = 0) -> pa.Table:
    table = wide_table(seed)
    pq.write_table(table, folder.root / name, row_group_size=GROUP_ROWS, compression="none",
                   use_dictionary=False)
    return table



def test_one_column_of_a_wide_remote_file_is_fetched_alone_row_group_by_row_group(
        http_folder: HttpFolder) -> None:
    table = write_wide(http_folder, "wide.parquet")
    size = (http_folder.root / "wide.parquet").stat().st_size
    url = http_folder.url("wide.parquet")
    source = files("wide", url, columns=["c3"], batch_rows=1_000_000)
    assert source.list_files() == [url]

    batches = source.read_file(url)
    first = next(batches)
    after_first = http_folder.tally.bytes_sent
    rest = list(batches)
    total = http_folder.tally.bytes_sent

    got = [first, *rest]
    assert [b.num_rows for b in got] == [GROUP_ROWS] * (ROWS // GROUP_ROWS)  # one batch per row group
    assert all(b.schema.names == ["c3"] for b in got)
    assert pa.Table.from_batches(got).column("c3").to_pylist() == table.column("c3").to_pylist()
    column_bytes = ROWS * 8
    assert total < size / 5  # one of ten columns: the footer and that column's chunks only
    # plus two footer reads of 64 KiB at most: the schema plan's, then the reader's
    assert column_bytes <= total < column_bytes + 2 * 80_000
    # the first row group arrived before the others were fetched (9 of its 10 column chunks)
    assert after_first < total - column_bytes * 0.8
    ranged = [r for r in http_folder.tally.requests if r[0] == "GET"]
    assert all(r[2] is not None for r in ranged)  # never the whole file
    print(f"\nwide.parquet {size} bytes; c3 of it: {total} bytes in {len(ranged)} ranged GETs "
          f"({total / size:.1%}); after the first of {len(got)} batches: {after_first} bytes")


def test_all_columns_cost_the_whole_file(http_folder: HttpFolder) -> None:
    write_wide(http_folder, "wide.parquet")
    size = (http_folder.root / "wide.parquet").stat().st_size
    url = http_folder.url("wide.parquet")
    rows = sum(b.num_rows for b in files("wide", url).read_file(url))
    assert rows == ROWS
    assert size * 0.95 < http_folder.tally.bytes_sent < size * 1.1


def test_a_list_of_urls_lands_projected_once_each(http_folder: HttpFolder, tmp_path: Path) -> None:
    a, b = write_wide(http_folder, "a.parquet", 1), write_wide(http_folder, "b.parquet", 2)
    urls = [http_folder.url("a.parquet"), http_folder.url("b.parquet")]
    lake = Lake(str(tmp_path / "lake"))
    source = files("scores", urls, columns=["c0", "c9"])
    assert land(lake, source).rows == 2 * ROWS
    landed = lake.read("raw.scores")
    assert landed.schema.names == ["c0", "c9", "_hw_source_file", "_hw_loaded_at", "_hw_run_id"]
    by_file = {u: landed.filter(pa.compute.equal(landed["_hw_source_file"], u)) for u in urls}
    assert sorted(by_file[urls[0]].column("c9").to_pylist()) == sorted(a.column("c9").to_pylist())
    assert sorted(by_file[urls[1]].column("c0").to_pylist()) == sorted(b.column("c0").to_pylist())
    sent = http_folder.tally.bytes_sent
    assert land(lake, source, "r2").version is None  # both landed: nothing is fetched again
    assert http_folder.tally.bytes_sent == sent


def test_columns_select_from_csv_and_jsonl_and_a_missing_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,name,city\n1,ann,oslo\n2,bob,rome\n")
    (tmp_path / "b.jsonl").write_text('{"id": 3, "who": {"name": "cy"}, "city": "nice"}\n')
    pq.write_table(pa.table({"id": [4], "name": ["di"]}), tmp_path / "c.parquet")
    csv = list(files("csv", tmp_path / "a.csv", columns=["name", "id"]).read_file(str(tmp_path / "a.csv")))
    assert pa.Table.from_batches(csv).to_pylist() == [{"name": "ann", "id": 1}, {"name": "bob", "id": 2}]
    logs = files("logs", tmp_path / "b.jsonl", columns=["id", "who__name"])
    assert pa.Table.from_batches(list(logs.read_file(str(tmp_path / "b.jsonl")))).to_pylist() == [
        {"id": 3, "who__name": "cy"}]
    for name, columns in (("a.csv", ["id", "nope"]), ("c.parquet", ["nope"])):
        source = files("x", tmp_path / name, columns=columns)
        with pytest.raises(HeadwaterError, match=r"source 'x'.*no column\(s\) \['nope'\]"):
            list(source.read_file(str(tmp_path / name)))


def test_a_missing_url_is_a_clear_error(http_folder: HttpFolder) -> None:
    url = http_folder.url("gone.parquet")
    with pytest.raises(HeadwaterError, match="source 'x': no file at .*gone.parquet"):
        list(files("x", url).read_file(url))
