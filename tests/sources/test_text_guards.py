"""The line guards of text sources (engine/sources/guards.py): what may reach pyarrow's JSON
reader, what it parsed that cannot land, lone CRs, quoted CSV headers, and a seeded fuzz of
mutated JSON lines and CSV rows landed in a child process (a crash must not take pytest down):
every row is landed or quarantined, none twice."""
from __future__ import annotations

import io
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pjson
import pytest

from engine.load.quarantine import Quarantine
from engine.sources.guards import (
    MAX_DEPTH,
    BadLines,
    flatten_rows,
    json_depth,
    json_rows,
    line_spans,
    long_int_lines,
)
from engine.sources.parse import FileUnreadable, TextReader, csv_header_record, json_reason, text_blocks
from engine.sources.sample import sample_schema

REPO = Path(__file__).resolve().parents[2]


def test_json_rows_are_the_non_blank_lines_and_each_starts_an_object() -> None:
    assert json_rows(b'{"a": 1}\n\n  \t\r\n{"a": 2}', json_reason).tolist() == [0, 3]
    with pytest.raises(BadLines) as bad:
        json_rows(b'{"a": 1}\nnull\n  [1]\n\t{"a": 2}\n"s"\n', json_reason)
    assert sorted(bad.value.lines) == [1, 2, 4]
    assert "null, not an object" in bad.value.lines[1] and "an array" in bad.value.lines[2]


def test_deep_lines_are_named_before_pyarrow_sees_them() -> None:
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    shallow_but_long = b'{"a": [' + b"[1]," * 2000 + b"[1]]}"  # many brackets, depth 3
    with pytest.raises(BadLines) as bad:
        json_rows(b'{"a": 1}\n' + deep + b"\n" + shallow_but_long + b"\n", json_reason)
    assert list(bad.value.lines) == [1] and "5000 levels deep" in bad.value.lines[1]
    assert json_depth(shallow_but_long) == 3
    assert json_depth(b'{"s": "[[[{{{", "t": "\\"]]", "u": [[1]]}') == 3  # brackets in strings do not count
    assert MAX_DEPTH < 1000  # pyarrow crashed at 10-20k levels; Python's recursion stops near 1000


def test_flattening_names_rows_whose_keys_collide() -> None:
    table = pjson.read_json(pa.BufferReader(
        b'{"id": 1, "dev": {"os": "a"}, "dev__os": "b"}\n{"id": 2, "dev__os": "c"}\n{"id": 3, "dev": {"os": "d"}}\n'
        b'{"id": 4, "ID": 5}\n{"id": 6, "_hw_run_id": "x"}\n{"id": 7, "": 1}\n'))
    flat, bad = flatten_rows(table)
    assert flat.column_names == ["id", "dev__os"]
    assert flat.column("dev__os").to_pylist()[:3] == ["a", "c", "d"]  # one row each: coalesced
    assert sorted(bad) == [0, 3, 4, 5]
    assert "collides" in bad[0] and "differ only in case" in bad[3] and "_hw_" in bad[4] and "no name" in bad[5]


def test_long_integer_literals_are_found_by_line() -> None:
    data = (b'{"a": 0.12345678901234567890}\n{"a": 12345678901234567890}\n{"a": 1.2345678901234567e+30}\n'
            b'{"a": -99999999999999999}\n{"s": "1234567890123456789"}\n{"a": 12345678901234567e5}\n')
    starts, _ = line_spans(data)
    assert long_int_lines(data, starts).tolist() == [1, 3, 4]  # line 4 is a string: checked, then cleared


def test_int_beyond_int64_in_a_float_column_is_quarantined_by_line() -> None:
    q = Quarantine("s", "r", datetime(2026, 1, 1, tzinfo=timezone.utc))
    data = b"id,n\n1,1.5\n2,99999999999999999999\n3,1e300\n4,-12345678901234567\n"
    types = {"id": pa.int64(), "n": pa.float64()}
    tables = list(TextReader("csv", "f.csv", q, types, "evolve", set()).read(io.BytesIO(data)))
    assert [i for t in tables for i in t.column("id").to_pylist()] == [1, 3]
    assert [(e["line"], e["reason"].split(";")[0]) for e in q.entries] == [
        (3, "column 'n': 99999999999999999999 is beyond int64 and would be rounded as a float"),
        (5, "column 'n': -12345678901234567 cannot be stored exactly as a float")]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64])
def test_a_lone_cr_ends_a_line_wherever_the_blocks_are_cut(size: int) -> None:
    data = b"a\rbb\r\nccc\r\rd\n\re"
    blocks = b"".join(b for _, b in text_blocks(io.BytesIO(data), size))
    assert blocks == b"a\nbb\r\nccc\n\nd\n\ne"  # CRLF stays whole even when cut between CR and LF


def test_a_quoted_csv_header_may_span_lines() -> None:
    header, used, rest = csv_header_record(bytearray(b'id,"two\nlines",x\n1,2,3\n'))
    assert (bytes(header), used, bytes(rest)) == (b'id,"two\nlines",x', 2, b"1,2,3\n")


def test_a_long_field_beside_an_inexact_integer_is_one_bad_row_not_a_failed_source() -> None:
    """The integer check reads the line with the csv module, whose default field limit (128 KiB)
    a 200 KB value is over: the row is quarantined, the others land."""
    q = Quarantine("s", "r", datetime(2026, 1, 1, tzinfo=timezone.utc))
    data = b"id,n,t\n1,1.5,a\n2,99999999999999999999," + b"x" * 200_000 + b"\n3,2.5,b\n"
    types = {"id": pa.int64(), "n": pa.float64(), "t": pa.string()}
    tables = list(TextReader("csv", "f.csv", q, types, "evolve", set()).read(io.BytesIO(data)))
    assert [i for t in tables for i in t.column("id").to_pylist()] == [1, 3]
    assert [e["line"] for e in q.entries] == [3]


def test_a_stray_quote_does_not_join_lines_when_the_block_is_bisected() -> None:
    """A quote left open for more than 64 lines opens no value: its line is a bad row of its own,
    also in the halves of the block that bisection parses (under 64 lines each)."""
    q = Quarantine("s", "r", datetime(2026, 1, 1, tzinfo=timezone.utc))
    good = [b"%d,name%d,%d.5" % (i, i, i) for i in range(2, 71)]
    data = b"id,name,v\n" + b'1,"bob,1.5\n' + b"\n".join(good) + b"\n"
    types = {"id": pa.int64(), "name": pa.string(), "v": pa.float64()}
    tables = list(TextReader("csv", "f.csv", q, types, "evolve", set()).read(io.BytesIO(data)))
    landed = [i for t in tables for i in t.column("id").to_pylist()]
    assert sorted(landed) == list(range(2, 71))  # every good line, each one row
    assert [(e["line"], e["raw"]) for e in q.entries] == [(2, '1,"bob,1.5\n')]  # 70 in = 69 + 1


def test_a_header_quote_left_open_is_refused_within_64_lines() -> None:
    block = bytearray(b'id,"name,x\n' + b"1,2,3\n" * 100_000)
    with pytest.raises(FileUnreadable, match="not closed within 64 lines"):
        csv_header_record(block)


def test_the_sample_takes_the_type_most_values_have() -> None:
    lines = b'{"id": [1]}\n' + b"".join(b'{"id": %d}\n' % i for i in range(50)) + b'{"id": 2.5}\n'
    assert sample_schema("jsonl", io.BytesIO(lines)).field("id").type == pa.float64()  # int widened by the float
    lines = b'{"t": "a"}\n{"t": ["x"]}\n{"t": ["y"]}\n'
    assert sample_schema("jsonl", io.BytesIO(lines)).field("t").type == pa.list_(pa.string())


FUZZ = r'''
import csv, io, random, re, sys
from datetime import datetime, timezone
import pyarrow as pa
from engine.load.quarantine import Quarantine
from engine.sources.parse import FileUnreadable, TextReader
from engine.sources.sample import sample_schema

rng = random.Random(int(sys.argv[1]))
JSON = [b'{"id": 1, "a": {"b": [1, 2, {"c": null}]}, "s": "x"}', b'{"id": 2}', b"null", b"[]", b"{}",
        b'{"x": [[[[]]]]}', b'{"id": 99999999999999999999}', b'{"a": 1e400}']
TOKENS = [b"null", b"{", b"}", b"[", b"]", b",", b":", b'"k"', b"1", b"1e5", b"true", b"\\", b"\n", b" ", b"\r",
          b"\x00", b"\xff", b'"', b"\t", b"99999999999999999999", b"9007199254740993", b"1.5"]
CSV = [b"1,ann,1.5", b"2,bob,2.5", b"3,cy,3.5"]

def mutate(line):
    line = bytearray(line)
    for _ in range(rng.randint(0, 4)):
        pos = rng.randint(0, len(line))
        if rng.random() < 0.6:
            line[pos:pos] = rng.choice(TOKENS) * (rng.randint(1, 40) if rng.random() < 0.1 else 1)
        else:
            del line[pos:pos + rng.randint(1, 3)]
    return bytes(line)

for trial in range(int(sys.argv[2])):
    fmt = rng.choice(["jsonl", "csv"])
    rows = [mutate(rng.choice(JSON if fmt == "jsonl" else CSV)) for _ in range(rng.randint(1, 10))]
    data = (b"id,name,score\n" if fmt == "csv" else b"") + b"\n".join(rows) + rng.choice([b"", b"\n"])
    text = re.sub(rb"\r(?!\n)", b"\n", data)
    if fmt == "jsonl":
        rows_in = sum(1 for ln in text.split(b"\n") if ln.strip(b" \t\r"))
    else:  # records, as Python's csv module reads them
        rows_in = sum(1 for r in csv.reader(io.StringIO(text.decode("latin-1"), newline="")) if r) - 1
    q = Quarantine("s", "r", datetime(2026, 1, 1, tzinfo=timezone.utc))
    sample_schema(fmt, io.BytesIO(data))
    types = rng.choice([{}, {"id": pa.int64()}])
    reader = TextReader(fmt, "f", q, types, "discard_columns", set(), block_bytes=rng.choice([16, 64, 1 << 20]))
    landed = sum(t.num_rows for t in reader.read(io.BytesIO(data)))
    assert landed + q.count == rows_in, (landed, q.count, data)
print("fuzzed", sys.argv[2])
'''


def test_mutated_lines_are_all_accounted_for_and_crash_nothing(tmp_path: Path) -> None:
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ)
    for seed in (1, 2, 3, 4, 5, 6):
        done = subprocess.run([sys.executable, str(script), str(seed), "400"], cwd=REPO, capture_output=True,
                              text=True, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": ""})
        assert done.returncode == 0, done.stderr[-3000:]


def test_bad_lines_are_blanked_not_removed_so_later_lines_keep_their_numbers() -> None:
    q = Quarantine("s", "r", datetime(2026, 1, 1, tzinfo=timezone.utc))
    data = b'{"id": 1}\nnull\n{"id": 3}\n[4]\n{"id": 5, "n": 99999999999999999999}\n{"id": 6}\n'
    tables = list(TextReader("jsonl", "f", q, {"id": pa.int64()}, "discard_columns", set()).read(io.BytesIO(data)))
    assert [i for t in tables for i in t.column("id").to_pylist()] == [1, 3, 6]
    assert [e["line"] for e in q.entries] == [2, 4, 5]
    assert np.array_equal(json_rows(data.replace(b"null", b"    ").replace(b"[4]", b"   "), json_reason)[:2], [0, 2])


def test_a_compression_this_machine_cannot_read_fails_the_run_instead_of_quarantining_every_file(
        tmp_path: Path) -> None:
    from fsspec.utils import infer_compression

    from engine.errors import SourceError
    from engine.sources import files

    if infer_compression("a.csv.zst") is not None:
        pytest.skip("zstandard is installed here")
    (tmp_path / "a.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(SourceError, match=r"source 's': cannot decompress .*a.csv.zst.*pip install zstandard"):
        list(files("s", str(tmp_path)).extract({}, run_id="r", loaded_at=datetime.now(timezone.utc)).batches)


def test_a_line_without_end_stops_the_file_instead_of_filling_memory() -> None:
    from engine.sources.parse import FileUnreadable

    blocks = text_blocks(io.BytesIO(b"a\nb\n" + b"x" * (3 << 20)), 1 << 16, max_line=1 << 20)
    assert next(blocks) == (1, bytearray(b"a\nb\n"))
    with pytest.raises(FileUnreadable, match="line 3 runs past 1 MiB without a line break"):
        next(blocks)
