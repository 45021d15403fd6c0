"""The bad-file corpus: CSV, JSON lines, Parquet and files that are not files, each with what
must land (the ids written on good rows) and how many rows or files must be quarantined.

Good rows carry ids 1, 2, 3, …; the harness (tests/support/bad_inputs.py) counts rows in from
the bytes written here and checks rows in = landed + quarantined.
"""
from __future__ import annotations

import decimal
import gzip
import io
import json
from datetime import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.bad_inputs import Case

HEAD = b"id,name,score\n"
CSV_GOOD = b"1,ann,1.5\n2,bob,2.5\n"
INT = {"id": "int64"}
CSV_SCHEMA = {"id": "int64", "score": "float64"}
BIG = "x" * (10 << 20)


def js(*rows: Any) -> bytes:
    """JSON lines, one row per argument (bytes are written as they are)."""
    return b"".join(r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n" for r in rows)


JSON_GOOD = js({"id": 1, "name": "ann", "dev": {"os": "ios"}, "tags": ["a"]}, {"id": 2, "name": "bob"})


def pq_bytes(table: pa.Table, **kw: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **kw)
    return sink.getvalue()


PARQUET = pq_bytes(pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]}))


def c(name: str, data: bytes, landed: tuple[Any, ...], bad: int = 0, reason: str = "", *, file: str = "a.csv",
      schema: dict[str, str] | None = CSV_SCHEMA, **kw: Any) -> Case:
    return Case(name, ((file, data),), landed, bad, 0, reason, schema, **kw)


def j(name: str, data: bytes, landed: tuple[Any, ...], bad: int = 0, reason: str = "", *, file: str = "a.jsonl",
      schema: dict[str, str] | None = INT, **kw: Any) -> Case:
    return Case(name, ((file, data),), landed, bad, 0, reason, schema, **kw)


def p(name: str, table: pa.Table | bytes, landed: tuple[Any, ...], bad: int = 0, reason: str = "",
      **kw: Any) -> Case:
    data = table if isinstance(table, bytes) else pq_bytes(table)
    return Case(name, (("a.parquet", data),), landed, bad, 0, reason, kw.pop("schema", None), **kw)


def whole(name: str, file: str, data: bytes | str, reason: str, landed: tuple[Any, ...] = (), **kw: Any) -> Case:
    return Case(name, ((file, data),), landed, 0, 1, reason, kw.pop("schema", None), **kw)


def many(n: int, bad_every: int) -> bytes:
    return HEAD + b"".join(f"{i},n{i}\n".encode() if i % bad_every == 0 else f"{i},n{i},{i}.5\n".encode()
                           for i in range(1, n + 1))


def deep(levels: int, kind: str = "obj") -> bytes:
    inner = b'{"a":' * levels + b"1" + b"}" * levels if kind == "obj" else b"[" * levels + b"]" * levels
    return b'{"id": 9, "d": ' + inner + b"}\n"


def corrupt_second_row_group() -> bytes:
    table = pa.table({"id": list(range(1, 1001)), "v": [f"value {i}" * 20 for i in range(1, 1001)]})
    data = bytearray(pq_bytes(table, row_group_size=500, compression="snappy"))
    meta = pq.ParquetFile(io.BytesIO(bytes(data))).metadata
    start = meta.row_group(1).column(1).data_page_offset
    data[start + 40:start + 400] = b"\xff" * 360
    return bytes(data)


CSV: list[Case] = [
    c("csv_ragged_short", HEAD + CSV_GOOD + b"3,cy\n", (1, 2), 1, "Expected 3 columns"),
    c("csv_ragged_long", HEAD + CSV_GOOD + b"4,di,4.5,extra\n5,ed,5.5\n", (1, 2, 5), 1, "Expected 3 columns"),
    c("csv_wrong_int", HEAD + CSV_GOOD + b"x,cy,1.0\n", (1, 2), 1, "column 'id'"),
    c("csv_wrong_float", HEAD + CSV_GOOD + b"3,di,nope\n", (1, 2), 1, "column 'score'"),
    c("csv_invalid_utf8", HEAD + CSV_GOOD + b"3,\xff\xfeoops,1.0\n", (1, 2), 1, "invalid UTF-8"),
    c("csv_latin1_rows", HEAD + "3,zoë,1.0\n4,ann,2.0\n5,josé,3.0\n".encode("latin-1"), (4,), 2, "invalid UTF-8"),
    c("csv_overlong_utf8", HEAD + CSV_GOOD + b"3,\xc0\xaf,1.0\n", (1, 2), 1, "invalid UTF-8"),
    c("csv_utf8_surrogate", HEAD + CSV_GOOD + b"3,\xed\xa0\x80,1.0\n", (1, 2), 1, "invalid UTF-8"),
    c("csv_nul_row", HEAD + CSV_GOOD + b"3,c\x00y,1.0\n", (1, 2), 1, "NUL"),
    c("csv_empty", b"", ()),
    c("csv_header_only", HEAD, ()),
    c("csv_header_no_newline", HEAD.rstrip(), ()),
    c("csv_only_newlines", b"\n\n\r\n\n", ()),
    c("csv_whitespace_only", b"  \n\t\n   ", ()),
    c("csv_bom", b"\xef\xbb\xbf" + HEAD + CSV_GOOD, (1, 2)),
    c("csv_crlf", (HEAD + CSV_GOOD).replace(b"\n", b"\r\n"), (1, 2)),
    c("csv_mixed_line_endings", b"id,name,score\r\n1,ann,1.5\r\n2,bob,2.5\n3,cy,3.5\r\n", (1, 2, 3)),
    c("csv_cr_only", (HEAD + CSV_GOOD).replace(b"\n", b"\r"), (1, 2)),
    c("csv_cr_only_no_schema", b"id,name\r1,ann\r2,bob", (1, 2), schema=None),
    c("csv_last_row_no_newline", HEAD + CSV_GOOD + b"3,cy,3.5", (1, 2, 3)),
    c("csv_blank_lines_between", HEAD + b"1,ann,1.5\n\n\n2,bob,2.5\n", (1, 2)),
    c("csv_spaces_line", HEAD + b"1,ann,1.5\n   \n2,bob,2.5\n", (1, 2), 1, "Expected 3 columns"),
    c("csv_trailing_garbage", HEAD + CSV_GOOD + b"\x01\x02garbage", (1, 2), 1, "Expected 3 columns"),
    c("csv_10mb_line", HEAD + CSV_GOOD + f"3,{BIG},1.0\n".encode(), (1, 2, 3)),
    c("csv_wide_row", HEAD + CSV_GOOD + b"3" + b",x" * 10000 + b"\n", (1, 2), 1, "Expected 3 columns"),
    c("csv_all_rows_bad", HEAD + b"1,ann\n2,bob\n3,cy\n", (), 3, "Expected 3 columns"),
    c("csv_every_third_bad", many(300, 3), tuple(i for i in range(1, 301) if i % 3), 100, "Expected 3 columns"),
    c("csv_header_again_mid_file", HEAD + b"1,ann,1.5\n" + HEAD + b"2,bob,2.5\n", (1, 2), 1, "is not a valid"),
    c("csv_escaped_quotes", HEAD + b'1,"a ""quoted"" name",1.5\n2,"b, with comma",2.5\n', (1, 2),
      values={"name": ('a "quoted" name', "b, with comma")}),
    c("csv_stray_quote_mid_field", HEAD + b'1,5" screen,1.5\n2,bob,2.5\n', (1, 2),
      values={"name": ('5" screen', "bob")}),
    c("csv_unclosed_quote", HEAD + b'1,ann,1.5\n2,"bob,2.5\n3,cy,3.5\n', (1,), 1, "Expected 3 columns"),
    c("csv_unclosed_quote_then_bad", HEAD + b'1,ann,1.5\n2,bob\n3,"cy,3.5\n4,di,4.5\n', (1,), 2, "Expected 3 columns"),
    c("csv_quoted_value_newline", HEAD + b'1,ann,1.5\n2,"two\nlines",2.5\n3,cy,3.5\n', (1, 2, 3),
      values={"name": ("ann", "two\nlines", "cy")}),
    c("csv_quoted_newline_beside_bad_rows", HEAD + b'1,"a\nb",x\n2,bob\n3,"c\r\nd",3.5\n4,"e\n\nf",4.5\n', (3, 4), 2,
      "", values={"name": ("c\r\nd", "e\n\nf")}),
    c("csv_quoted_header_newline", b'id,"na\nme",score\n1,ann,1.5\n2,bob,2.5\n', (1, 2),
      values={"na\nme": ("ann", "bob")}),
    c("csv_null_markers", HEAD + b"1,NULL,\n2,,NA\n3,null,nan\n", (1, 2, 3), values={"name": ("NULL", "", "null")}),
    c("csv_nan_inf", HEAD + b"1,a,nan\n2,b,inf\n3,c,-inf\n", (1, 2, 3), values={"score": (None, "inf", "-inf")}),
    c("csv_control_chars", HEAD + b"1,a\x01b\x7f,1.5\n", (1,)),
    c("csv_emoji", HEAD + "1,🦆 duck,1.5\n".encode(), (1,), values={"name": ("🦆 duck",)}),
    c("csv_big_int_declared_int", HEAD + CSV_GOOD + b"9223372036854775808,cy,1.0\n", (1, 2), 1, "column 'id'"),
    c("csv_big_int_inferred", b"id,n\n1,5\n2,6\n3,99999999999999999999\n", (1, 2), 1, "column 'n'", schema=None,
      values={"n": (5, 6)}),
    c("csv_big_negative_inferred", b"id,n\n1,-5\n2,-9223372036854775809\n", (1,), 1, "column 'n'", schema=None),
    c("csv_uint64_inferred", b"id,n\n1,18446744073709551615\n2,7\n", (2,), 1, "beyond int64", schema=None),
    c("csv_big_int_declared_string", b"id,n\n1,99999999999999999999\n", (1,), schema={"id": "int64", "n": "string"},
      values={"n": ("99999999999999999999",)}),
    c("csv_big_int_declared_decimal", b"id,n\n1,99999999999999999999\n", (1,),
      schema={"id": "int64", "n": "decimal128(38, 0)"}, values={"n": ("99999999999999999999",)}),
    c("csv_int_not_exact_as_double", b"id,n\n1,1.5\n2,9007199254740993\n", (1,), 1, "column 'n'", schema=None),
    c("csv_big_float_is_fine", b"id,n\n1,1.5\n2,1e300\n", (1, 2), schema=None),
    c("csv_bad_timestamp", b"id,ts\n1,2026-01-01T00:00:00\n2,yesterday\n", (1,), 1, "column 'ts'",
      schema={"id": "int64", "ts": "timestamp[us]"}),
    Case("csv_mixed_types_across_files", (("a.csv", b"id,v\n1,10\n"), ("b.csv", b"id,v\n2,x\n3,30\n")), (1, 3), 1,
         reason="column 'v'", schema=INT),
    Case("csv_new_column_in_second_file", (("a.csv", b"id\n1\n"), ("b.csv", b"id,extra\n2,e\n")), (1, 2), schema=INT),
    Case("csv_column_missing_in_second_file", (("a.csv", b"id,v\n1,x\n"), ("b.csv", b"id\n2\n")), (1, 2), schema=INT),
    c("csv_semicolons", b"id;name\n1;ann\n2;bob\n", (1, 2), schema=INT, options={"delimiter": ";"}),
    c("csv_gzip_empty", gzip.compress(b""), (), file="a.csv.gz"),
    c("csv_single_cr_no_newline", b"id,name,score\r1,ann,1.5", (1,)),
    c("csv_tab_delimited", b"id\tname\n1\tann\n2\tbob\n", (1, 2), file="a.tsv", schema=INT,
      options={"delimiter": "\t"}),
    c("csv_quoted_numbers", HEAD + b'"1","ann","1.5"\n"2","bob","x"\n', (1,), 1, "column 'score'"),
    c("csv_gzip_good", gzip.compress(HEAD + CSV_GOOD), (1, 2), file="a.csv.gz"),
]

CSV_WHOLE: list[Case] = [
    whole("csv_duplicate_header", "a.csv", b"id,id,name\n1,2,ann\n", "repeats column 'id'"),
    whole("csv_duplicate_header_case", "a.csv", b"id,ID,name\n1,2,ann\n", "'id' and 'ID'"),
    whole("csv_header_empty_name", "a.csv", b"id,,score\n1,x,1.5\n", "no name"),
    whole("csv_header_nul", "a.csv", b"id,na\x00me\n1,ann\n", "NUL"),
    whole("csv_header_hw_prefix", "a.csv", b"id,_hw_run_id,score\n1,x,1.5\n", "_hw_run_id"),
    whole("csv_header_hw_prefix_upper", "a.csv", b"id,_HW_extra\n1,x\n", "_HW_extra"),
    whole("csv_header_invalid_utf8", "a.csv", b"id,n\xffame\n1,ann\n", "not valid UTF-8"),
    whole("csv_utf16", "a.csv", "id,name\n1,ann\n".encode("utf-16"), "UTF-16"),
    whole("csv_is_parquet", "a.csv", PARQUET, "NUL"),
    whole("csv_truncated_gzip", "a.csv.gz", gzip.compress(HEAD + CSV_GOOD * 50)[:-30], "cannot read", count=False),
    whole("csv_gzip_garbage", "a.csv.gz", b"\x1f\x8b\x08\x00garbage", "cannot read", count=False),
    whole("csv_bz2_garbage", "a.csv.bz2", b"BZh9 this is not bzip2", "cannot read", count=False),
    whole("csv_blank_header_then_rows", "a.csv", b"   \n1,ann,1.5\n", "header", count=False),
    Case("csv_header_case_vs_earlier_file", (("a.csv", b"id,name\n1,ann\n"), ("b.csv", b"id,NAME\n2,bob\n")), (1,),
         0, 1, "'NAME'", INT, count=False),
]

JSON: list[Case] = [
    j("json_not_object", JSON_GOOD + b"[1, 2]\n42\n", (1, 2), 2, "not an object"),
    j("json_null_first", b"null\n" + JSON_GOOD, (1, 2), 1, "null", isolate=True),
    j("json_null_middle", js({"id": 1}, b"null\n", {"id": 2}), (1, 2), 1, "null", isolate=True),
    j("json_only_nulls", b"null\nnull\n", (), 2, "null", isolate=True),
    j("json_null_crlf", b"null\r\n" + JSON_GOOD, (1, 2), 1, "null", isolate=True),
    j("json_null_no_newline", b"null", (), 1, "null", isolate=True),
    j("json_null_indented", b"  null\n" + JSON_GOOD, (1, 2), 1, "null", isolate=True),
    j("json_null_gzip", gzip.compress(b"null\n" + JSON_GOOD), (1, 2), 1, "null", file="a.jsonl.gz", isolate=True),
    j("json_null_no_schema", b"null\n" + JSON_GOOD, (1, 2), 1, "null", schema=None, isolate=True),
    j("json_only_scalars", b"1\n2\n", (), 2, "not an object", isolate=True),
    j("json_string_line", JSON_GOOD + b'"x"\n', (1, 2), 1, "a string"),
    j("json_bool_line", b"true\n" + JSON_GOOD, (1, 2), 1, "a boolean", isolate=True),
    j("json_array_file", b'[{"id": 1}, {"id": 2}]\n', (), 1, "an array, not an object"),
    j("json_pretty_printed", b'{\n  "id": 1\n}\n' + JSON_GOOD, (1, 2), 3, ""),
    j("json_pretty_array", b'[\n  {"id": 1},\n  {"id": 2}\n]\n', (2,), 3, "", isolate=True),
    j("json_two_objects_one_line", JSON_GOOD + b'{"id": 3} {"id": 4}\n', (1, 2), 1, "Extra data"),
    j("json_glued_objects", JSON_GOOD + b'{"id": 3}{"id": 4}\n', (1, 2), 1, "Extra data"),
    j("json_object_then_null", JSON_GOOD + b'{"id": 3} null\n', (1, 2), 1, "Extra data"),
    j("json_object_then_garbage", JSON_GOOD + b'{"id": 3} x\n', (1, 2), 1, "not valid JSON"),
    j("json_invalid", JSON_GOOD + b'{"id": 3,\n', (1, 2), 1, "not valid JSON"),
    j("json_trailing_garbage", JSON_GOOD + b'{"id": 9, "na', (1, 2), 1, "not valid JSON"),
    j("json_comment_line", b"// rows\n" + JSON_GOOD, (1, 2), 1, "not valid JSON", isolate=True),
    j("json_single_quotes", JSON_GOOD + b"{'id': 3}\n", (1, 2), 1, "not valid JSON"),
    j("json_trailing_comma", JSON_GOOD + b'{"id": 3,}\n', (1, 2), 1, "not valid JSON"),
    j("json_leading_zero", JSON_GOOD + b'{"id": 03}\n', (1, 2), 1, "not valid JSON"),
    j("json_lone_surrogate", JSON_GOOD + b'{"id": 3, "name": "\\ud800"}\n', (1, 2), 1, "surrogate"),
    j("json_raw_control_char", JSON_GOOD + b'{"id": 3, "name": "a\x01b"}\n', (1, 2), 1, ""),
    j("json_invalid_utf8", JSON_GOOD + b'{"id": 3, "name": "\xff"}\n', (1, 2), 1, "invalid UTF-8"),
    j("json_invalid_utf8_key", JSON_GOOD + b'{"id": 3, "n\xffame": 1}\n', (1, 2), 1, "invalid UTF-8"),
    j("json_nul_bytes", JSON_GOOD + b"\x00" * 64 + b"\n", (1, 2), 1, "NUL"),
    j("json_duplicate_keys", JSON_GOOD + b'{"id": 3, "id": 4}\n', (1, 2), 1, "specified twice"),
    j("json_case_duplicate_keys", JSON_GOOD + b'{"id": 3, "ID": 4}\n', (1, 2), 1, "'ID'"),
    j("json_case_keys_across_rows", js({"id": 1, "name": "a"}, {"id": 2, "NAME": "b"}, {"id": 3, "name": "c"}),
      (1, 3), 1, "'NAME'"),
    j("json_nested_case_keys", js({"id": 1, "a": {"x": 1, "X": 2}}, {"id": 2}), (2,), 1, "'a__X'"),
    j("json_flatten_collision", js({"id": 1, "dev": {"os": "a"}, "dev__os": "b"}, {"id": 2}), (2,), 1, "dev__os"),
    j("json_flatten_across_rows", js({"id": 1, "dev": {"os": "a"}}, {"id": 2, "dev__os": "b"}), (1, 2),
      values={"dev__os": ("a", "b")}),
    j("json_empty_key", js({"id": 1}, {"id": 2, "": 5}), (1,), 1, "no name"),
    j("json_hw_key", js({"id": 1}, {"id": 2, "_hw_run_id": "mine"}), (1,), 1, "_hw_run_id"),
    j("json_hw_key_nested", js({"id": 1}, {"id": 2, "_hw": {"x": 1}}), (1,), 1, "_hw"),
    j("json_dotted_key", js({"id": 1, "a.b": 5}), (1,), values={"a.b": (5,)}),
    j("json_list_then_100_good", js({"id": [1]}, *({"id": i} for i in range(2, 102))), tuple(range(2, 102)), 1,
      "column 'id'", schema=None),
    j("json_list_then_good_declared", js({"id": [1]}, *({"id": i} for i in range(2, 52))), tuple(range(2, 52)), 1,
      "column 'id'"),
    j("json_struct_then_scalar", js({"id": 1, "t": {"a": 1}}, {"id": 2, "t": 5}, {"id": 3, "t": {"a": 3}}), (1, 2, 3)),
    j("json_scalar_then_list", js({"id": 1, "t": "a"}, {"id": 2, "t": ["a"]}, {"id": 3, "t": "c"}), (1, 3), 1,
      "column 't'"),
    j("json_mixed_list_items", JSON_GOOD + b'{"id": 3, "l": [1, "a"]}\n', (1, 2), 1, "changed from number"),
    j("json_list_of_objects", js({"id": 1, "l": [{"a": 1}, {"b": "x"}]}), (1,)),
    j("json_wrong_type", JSON_GOOD + b'{"id": "abc", "name": "cy"}\n', (1, 2), 1, "column 'id'"),
    j("json_float_for_int", js({"id": 1}, {"id": 2.5}, {"id": 3.0}), (1, 3), 1, "column 'id'"),
    j("json_string_number_for_int", js({"id": 1}, {"id": "2"}), (1, 2)),
    j("json_type_conflict", JSON_GOOD + b'{"id": 3, "name": 7}\n{"id": 4, "name": "di"}\n', (1, 2, 3, 4)),
    j("json_big_int", js({"id": 1, "n": 5}, b'{"id": 2, "n": 9223372036854775808}\n'), (1,), 1, "column 'n'",
      values={"n": (5,)}),
    j("json_big_int_first", js(b'{"id": 1, "n": 99999999999999999999}\n', {"id": 2, "n": 5}), (2,), 1, "beyond int64",
      schema=None),
    j("json_big_negative", js({"id": 1, "n": 5}, b'{"id": 2, "n": -9223372036854775809}\n'), (1,), 1, "column 'n'"),
    j("json_big_int_nested", js({"id": 1, "a": {"n": 1}}, b'{"id": 2, "a": {"n": 99999999999999999999}}\n'), (1,), 1,
      "column 'a__n'"),
    j("json_big_int_in_list", js({"id": 1, "l": [1]}, b'{"id": 2, "l": [99999999999999999999]}\n'), (1,), 1,
      "column 'l'"),
    j("json_big_int_declared_decimal", b'{"id": 1, "n": 123456789012345678901234}\n', (1,),
      schema={"id": "int64", "n": "decimal128(38, 0)"}, values={"n": ("123456789012345678901234",)}),
    j("json_int_not_exact_as_double", js({"id": 1, "n": 1.5}, b'{"id": 2, "n": 9007199254740993}\n'), (1,), 1,
      "column 'n'"),
    j("json_number_too_big", JSON_GOOD + b'{"id": 3, "x": 1e400}\n', (1, 2), 1, "too big"),
    j("json_nan_literal", js({"id": 1}, b'{"id": 2, "x": NaN}\n'), (1, 2)),
    j("json_deep_objects", JSON_GOOD + deep(100_000), (1, 2), 1, "levels deep", isolate=True),
    j("json_deep_lists", JSON_GOOD + deep(100_000, "list"), (1, 2), 1, "levels deep", isolate=True),
    j("json_deep_unclosed", JSON_GOOD + b'{"a":' * 50_000 + b"\n", (1, 2), 1, "", isolate=True),
    j("json_nested_300", JSON_GOOD + deep(300), (1, 2), 1, "levels deep"),
    j("json_nested_50", JSON_GOOD + deep(50), (1, 2, 9)),
    j("json_empty_object", JSON_GOOD + b"{}\n", (1, 2, None)),
    j("json_gzip", gzip.compress(JSON_GOOD * 3), (1, 2) * 3, file="a.jsonl.gz"),
    j("json_10mb_line", JSON_GOOD + json.dumps({"id": 3, "name": BIG}).encode() + b"\n", (1, 2, 3)),
    j("json_bom_crlf", b"\xef\xbb\xbf" + JSON_GOOD.replace(b"\n", b"\r\n"), (1, 2)),
    j("json_cr_only", JSON_GOOD.replace(b"\n", b"\r"), (1, 2)),
    j("json_blank_lines", b"\n\n" + JSON_GOOD.replace(b"\n", b"\n   \n"), (1, 2)),
    j("json_tab_indented", b"\t" + JSON_GOOD, (1, 2)),
    j("json_form_feed_line", b"\x0c" + JSON_GOOD, (2,), 1, "not valid JSON"),
    j("json_utf16", '{"id": 1}\n{"id": 2}\n'.encode("utf-16"), (), 3, ""),
    j("json_latin1", JSON_GOOD + '{"id": 3, "name": "zoë"}\n'.encode("latin-1"), (1, 2), 1, "invalid UTF-8"),
    j("json_cr_inside_object", JSON_GOOD + b'{"id": 3,\r "name": "cy"}\n', (1, 2), 2, ""),
    j("json_empty", b"", ()),
    j("json_whitespace_only", b" \n\t\r\n  ", ()),
    j("json_many_keys", json.dumps({"id": 1, **{f"k{i}": i for i in range(2000)}}).encode() + b"\n", (1,)),
    j("json_every_other_bad", b"".join(b'{"id": %d}\n' % i if i % 2 else b"[%d]\n" % i for i in range(1, 401)),
      tuple(range(1, 401, 2)), 200, "not an object"),
    Case("json_mixed_types_across_files", (("a.jsonl", js({"id": 1, "v": 1})), ("b.jsonl", js({"id": 2, "v": "x"}))),
         (1,), 1, 0, "column 'v'", INT),
    Case("json_nested_drift_across_files", (("a.jsonl", js({"id": 1, "d": {"x": 1}})),
                                            ("b.jsonl", js({"id": 2, "d": {"x": 2, "y": "n"}}))), (1, 2), schema=INT,
         values={"d__y": (None, "n")}),
]

JSON_WHOLE: list[Case] = [
    whole("json_truncated_gzip", "a.jsonl.gz", gzip.compress(JSON_GOOD * 50)[:40], "cannot read", count=False),
    whole("json_gzip_garbage", "a.jsonl.gz", b"\x1f\x8b\x08\x00 not gzip at all", "cannot read", count=False),
    whole("json_bz2_garbage", "a.jsonl.bz2", b"BZh9 not bzip2", "cannot read", count=False),
]

D = decimal.Decimal
PARQUET_CASES: list[Case] = [
    p("parquet_good", PARQUET, (1, 2, 3)),
    p("parquet_wrong_type", pa.table({"id": ["1", "x", "3"]}), (1, 3), 1, "column 'id'", schema=INT),
    p("parquet_uint64_beyond_int64", pa.table({"id": pa.array([1, 2**64 - 1], pa.uint64())}), (1,), 1, "column 'id'"),
    p("parquet_decimal256_fits", pa.table({"id": [1], "d": pa.array([D("1.25")], pa.decimal256(40, 2))}), (1,),
      values={"d": ("1.25",)}),
    p("parquet_decimal256_too_wide", pa.table({"id": [1, 2], "d": pa.array([D("125"), D("9" * 39)],
                                                                          pa.decimal256(40, 0))}),
      (1,), 1, "column 'd'"),
    p("parquet_decimal256_narrow", pa.table({"id": [1], "d": pa.array([D("3.5")], pa.decimal256(20, 1))}), (1,),
      values={"d": ("3.5",)}),
    p("parquet_duration", pa.table({"id": [1, 2], "d": pa.array([1_500_000, None], pa.duration("us"))}), (1, 2),
      values={"d": (1_500_000, None)}),
    p("parquet_duration_ns", pa.table({"id": [1, 2], "d": pa.array([2_000, 2_001], pa.duration("ns"))}), (1,), 1,
      "column 'd'", values={"d": (2,)}),
    p("parquet_float16", pa.table({"id": [1], "h": pa.array(np.array([1.5], np.float16))}), (1,), values={"h": (1.5,)}),
    p("parquet_float16_in_struct", pa.table({"id": [1], "s": pa.array([{"h": np.float16(2.5)}],
                                                                     pa.struct([("h", pa.float16())]))}), (1,)),
    p("parquet_time", pa.table({"id": [1], "t": pa.array([time(8, 30, 1)], pa.time64("us"))}), (1,),
      values={"t": ("08:30:01.000000",)}),
    p("parquet_map", pa.table({"id": [1, 2], "m": pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64()))}),
      (1, 2)),
    p("parquet_dictionary", pa.table({"id": [1, 2], "s": pa.array(["x", "y"]).dictionary_encode()}), (1, 2)),
    p("parquet_large_types", pa.table({"id": [1], "s": pa.array(["x"], pa.large_string()),
                                       "l": pa.array([[1]], pa.large_list(pa.int64()))}), (1,)),
    p("parquet_timestamp_ns_tz", pa.table({"id": [1], "t": pa.array([1_700_000_000_123_456_789],
                                                                    pa.timestamp("ns", "Asia/Tokyo"))}), (1,)),
    p("parquet_null_column", pa.table({"id": [1], "n": pa.array([None], pa.null())}), (1,)),
    p("parquet_zero_rows", pa.table({"id": pa.array([], pa.int64())}), ()),
    p("parquet_fixed_binary", pa.table({"id": [1], "b": pa.array([b"ab"], pa.binary(2))}), (1,)),
    p("parquet_list_of_structs", pa.table({"id": [1], "l": pa.array([[{"a": 1}, {"a": None}]])}), (1,)),
    p("parquet_dotted_column", pa.table({"id": [1], "a.b": [5]}), (1,), values={"a.b": (5,)}),
    p("parquet_uuid", pa.table({"id": [1], "u": pa.array([b"0123456789abcdef"], pa.uuid())}), (1,)),
    Case("parquet_int32_then_int64", (("a.parquet", pq_bytes(pa.table({"id": pa.array([1], pa.int32())}))),
                                      ("b.parquet", pq_bytes(pa.table({"id": pa.array([2], pa.int64())})))), (1, 2)),
    Case("parquet_mixed_types_across_files", (("a.parquet", pq_bytes(pa.table({"id": [1], "v": [1]}))),
                                              ("b.parquet", pq_bytes(pa.table({"id": [2, 3], "v": ["x", "3"]})))),
         (1, 3), 1, 0, "column 'v'"),
]

PARQUET_WHOLE: list[Case] = [
    whole("parquet_not_parquet", "a.parquet", b"id,name\n1,a\n", "cannot read"),
    whole("parquet_truncated", "a.parquet", PARQUET[: len(PARQUET) // 2], "cannot read"),
    whole("parquet_zero_bytes", "a.parquet", b"", "cannot read"),
    whole("parquet_magic_only", "a.parquet", b"PAR1", "cannot read"),
    whole("parquet_wrong_magic", "a.parquet", PARQUET[:-4] + b"PAR2", "cannot read"),
    whole("parquet_corrupt_footer", "a.parquet", PARQUET[:-12] + b"\x00" * 8 + PARQUET[-4:], "cannot read"),
    whole("parquet_case_duplicate_columns", "a.parquet", pq_bytes(pa.table([[1], [2]], names=["id", "ID"])), "'ID'"),
    whole("parquet_duplicate_columns", "a.parquet", pq_bytes(pa.table([[1], [2]], names=["id", "id"])), "repeats"),
    whole("parquet_hw_column", "a.parquet", pq_bytes(pa.table({"id": [1], "_hw_run_id": [7]})), "_hw_run_id"),
    whole("parquet_empty_name", "a.parquet", pq_bytes(pa.table({"id": [1], "": [7]})), "no name"),
    whole("parquet_struct_case_children", "a.parquet", pq_bytes(pa.table({"id": [1], "s": pa.StructArray.from_arrays(
        [pa.array([1]), pa.array([2])], names=["x", "X"])})), "'s'"),
    whole("parquet_corrupt_row_group", "a.parquet", corrupt_second_row_group(), "rows", landed=tuple(range(1, 501))),
]

SPECIAL_CASES: list[Case] = [
    whole("special_fifo", "x.csv", "fifo", "named pipe", isolate=True),
    whole("special_socket", "x.csv", "socket", "socket", isolate=True),
    whole("special_dev_null", "x.csv", "devnull", "device", isolate=True),
    whole("special_dev_zero", "x.jsonl", "devzero", "device", isolate=True),
    whole("special_dangling_link", "x.csv", "dangling", "link", isolate=True),
]

CASES: list[Case] = [*CSV, *CSV_WHOLE, *JSON, *JSON_WHOLE, *PARQUET_CASES, *PARQUET_WHOLE, *SPECIAL_CASES]
