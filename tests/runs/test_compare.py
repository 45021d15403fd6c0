"""engine.runs.compare: order-insensitive equality with float tolerance, nulls, widths and nesting."""
import pyarrow as pa

from engine.runs.compare import differences


def test_equal_tables_in_another_order_with_nulls_nan_and_other_int_widths() -> None:
    a = pa.table({"k": pa.array([1, 2, 3], pa.int32()), "x": [1.0, float("nan"), None],
                  "s": ["a", None, "c"], "l": [[1, 2], [], None]})
    b = pa.table({"k": pa.array([3, 1, 2], pa.int64()), "x": [None, 1.0 + 1e-12, float("nan")],
                  "s": ["c", "a", None], "l": [None, [1, 2], []]})
    assert differences(a, b) == []


def test_each_kind_of_difference_is_named() -> None:
    a = pa.table({"k": [1, 2], "x": [1.0, 2.0], "s": ["a", "b"], "l": [[1], [2]]})
    assert differences(a, a.set_column(1, "x", pa.array([1.0, 2.0001]))) == [
        "x: 1 value(s) differ, first at sorted row 1: 2.0 != 2.0001"]
    assert differences(a, a.set_column(2, "s", pa.array(["a", None])))[0].startswith("s: 1 value(s)")
    assert differences(a, a.set_column(3, "l", pa.array([[1], [3]])))[0].startswith("l: 1 value(s)")
    assert differences(a, a.set_column(2, "s", pa.array([1, 2]))) == ["s: type string vs int64"]
    assert differences(a, a.slice(1)) == ["row counts differ: 2 vs 1"]
