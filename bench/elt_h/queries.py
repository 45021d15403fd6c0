"""The three ELT-H models, once per dialect: frames (pandas, cuDF and dask), DuckDB SQL, polars.

* `q1`: TPC-H Q1, lineitem filtered by ship date, grouped by return flag and line status.
* `q3`: TPC-H Q3, customer ⋈ orders ⋈ lineitem filtered, grouped by order, top 10 by revenue.
* `wide`: every column of lineitem ⋈ orders ⋈ customer for the 1995 lines shipped by MAIL or
  SHIP, written in full.

The frame functions are shared by Headwater's models and the hand-written pandas script, so
both run the same transform code; `KEYS` names the columns each output is sorted on before
outputs are compared.
"""
from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np

Q1_SHIPPED_BY = "1998-09-02"  # 1998-12-01 minus 90 days
Q3_SEGMENT, Q3_DAY = "BUILDING", "1995-03-15"
WIDE_FROM, WIDE_TO, WIDE_MODES = "1995-01-01", "1996-01-01", ("MAIL", "SHIP")

LINEITEM = ("l_orderkey", "l_partkey", "l_suppkey", "l_linenumber", "l_quantity", "l_extendedprice",
            "l_discount", "l_tax", "l_returnflag", "l_linestatus", "l_shipdate", "l_commitdate",
            "l_receiptdate", "l_shipinstruct", "l_shipmode", "l_comment")
ORDERS = ("o_orderkey", "o_custkey", "o_orderstatus", "o_totalprice", "o_orderdate", "o_orderpriority",
          "o_clerk", "o_shippriority", "o_comment")
CUSTOMER = ("c_custkey", "c_name", "c_address", "c_nationkey", "c_phone", "c_acctbal", "c_mktsegment",
            "c_comment")
OUTPUTS = ("q1", "q3", "wide")
KEYS = {"q1": ["l_returnflag", "l_linestatus"], "q3": ["l_orderkey"], "wide": ["l_orderkey", "l_linenumber"]}
Q1_AGGS = {"sum_qty": ("l_quantity", "sum"), "sum_base_price": ("l_extendedprice", "sum"),
           "sum_disc_price": ("disc_price", "sum"), "sum_charge": ("charge", "sum"),
           "avg_qty": ("l_quantity", "mean"), "avg_price": ("l_extendedprice", "mean"),
           "avg_disc": ("l_discount", "mean"), "count_order": ("l_quantity", "count")}


def day(column: Any, iso: str) -> Any:
    """The day `iso` as a value comparable with `column`: a `date` for pandas' object dates
    (Arrow date32), a numpy datetime64 for datetime columns (cuDF)."""
    return date.fromisoformat(iso) if column.dtype == object else np.datetime64(iso)


# -- frames: pandas, cuDF and dask ------------------------------------------------------------
def ordered(frame: Any, by: list[str], ascending: bool | list[bool] = True, n: int | None = None) -> Any:
    """`frame` sorted by `by` (its first `n` rows when `n` is given). A partitioned (dask) frame
    is meant to be small here (an aggregate) or cut to `n` rows per partition first; it is
    gathered into one partition and sorted there, staying lazy: dask's own `sort_values` would
    compute the whole input once more just to find its partition boundaries, and its `head`
    computes the first partition only."""
    def sort(part: Any) -> Any:
        out = part.sort_values(by, ascending=ascending)
        return out if n is None else out.head(n)

    if hasattr(frame, "npartitions"):  # dask
        if n is not None:
            frame = frame.map_partitions(sort)
        return frame.repartition(npartitions=1).map_partitions(sort)
    return sort(frame)


def q1(lineitem: Any) -> Any:
    """TPC-H Q1 on a lineitem frame."""
    li = lineitem[lineitem["l_shipdate"] <= day(lineitem["l_shipdate"], Q1_SHIPPED_BY)]
    li = li[["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount", "l_tax"]]
    disc_price = li["l_extendedprice"] * (1 - li["l_discount"])
    li = li.assign(disc_price=disc_price, charge=disc_price * (1 + li["l_tax"]))
    out = li.groupby(KEYS["q1"]).agg(**Q1_AGGS).reset_index()  # dask has no as_index=False
    return ordered(out, KEYS["q1"]).reset_index(drop=True)


def q3(customer: Any, orders: Any, lineitem: Any) -> Any:
    """TPC-H Q3 on customer, orders and lineitem frames: the 10 unshipped orders of most revenue."""
    c = customer.loc[customer["c_mktsegment"] == Q3_SEGMENT, ["c_custkey"]]
    o = orders.loc[orders["o_orderdate"] < day(orders["o_orderdate"], Q3_DAY),
                   ["o_orderkey", "o_custkey", "o_orderdate", "o_shippriority"]]
    li = lineitem.loc[lineitem["l_shipdate"] > day(lineitem["l_shipdate"], Q3_DAY),
                      ["l_orderkey", "l_extendedprice", "l_discount"]]
    joined = c.merge(o, left_on="c_custkey", right_on="o_custkey").merge(
        li, left_on="o_orderkey", right_on="l_orderkey")
    joined = joined.assign(revenue=joined["l_extendedprice"] * (1 - joined["l_discount"]))
    out = joined.groupby(["l_orderkey", "o_orderdate", "o_shippriority"]).agg(
        revenue=("revenue", "sum")).reset_index()
    out = ordered(out, ["revenue", "o_orderdate"], [False, True], n=10)
    return out[["l_orderkey", "revenue", "o_orderdate", "o_shippriority"]].reset_index(drop=True)


def wide(customer: Any, orders: Any, lineitem: Any) -> Any:
    """Every column of the 1995 MAIL/SHIP lines with their order and customer."""
    ship = lineitem["l_shipdate"]
    li = lineitem.loc[(ship >= day(ship, WIDE_FROM)) & (ship < day(ship, WIDE_TO))
                      & lineitem["l_shipmode"].isin(list(WIDE_MODES)), list(LINEITEM)]
    return li.merge(orders[list(ORDERS)], left_on="l_orderkey", right_on="o_orderkey").merge(
        customer[list(CUSTOMER)], left_on="o_custkey", right_on="c_custkey").reset_index(drop=True)


# -- SQL (DuckDB's dialect) ------------------------------------------------------------------
def sql(lineitem: str = "lineitem", orders: str = "orders", customer: str = "customer") -> dict[str, str]:
    """The three models as SQL over tables of these names: bare view names for the DuckDB peer,
    `raw.lineitem`, … for Headwater's SQL models (which find their inputs in the SQL)."""
    return {
        "q1": f"""
        SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty,
               sum(l_extendedprice) AS sum_base_price,
               sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
               sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
               avg(l_quantity) AS avg_qty, avg(l_extendedprice) AS avg_price,
               avg(l_discount) AS avg_disc, count(*) AS count_order
        FROM {lineitem} WHERE l_shipdate <= DATE '{Q1_SHIPPED_BY}'
        GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus""",
        "q3": f"""
        SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate, o_shippriority
        FROM {customer} JOIN {orders} ON c_custkey = o_custkey JOIN {lineitem} ON l_orderkey = o_orderkey
        WHERE c_mktsegment = '{Q3_SEGMENT}' AND o_orderdate < DATE '{Q3_DAY}'
          AND l_shipdate > DATE '{Q3_DAY}'
        GROUP BY l_orderkey, o_orderdate, o_shippriority
        ORDER BY revenue DESC, o_orderdate LIMIT 10""",
        "wide": f"""
        SELECT {', '.join(LINEITEM + ORDERS + CUSTOMER)}
        FROM {lineitem} JOIN {orders} ON l_orderkey = o_orderkey JOIN {customer} ON o_custkey = c_custkey
        WHERE l_shipdate >= DATE '{WIDE_FROM}' AND l_shipdate < DATE '{WIDE_TO}'
          AND l_shipmode IN ({', '.join(repr(m) for m in WIDE_MODES)})""",
    }


SQL = sql()  # over views named lineitem, orders, customer


# -- polars (lazy frames) --------------------------------------------------------------------
def _on(iso: str) -> date:
    return date.fromisoformat(iso)


def _disc_price() -> Any:
    import polars as pl

    return pl.col("l_extendedprice") * (1 - pl.col("l_discount"))


def polars_q1(lineitem: Any) -> Any:
    """TPC-H Q1 as a polars LazyFrame over a lineitem LazyFrame."""
    import polars as pl

    return (lineitem.filter(pl.col("l_shipdate") <= _on(Q1_SHIPPED_BY))
            .group_by(KEYS["q1"]).agg(
                pl.col("l_quantity").sum().alias("sum_qty"),
                pl.col("l_extendedprice").sum().alias("sum_base_price"),
                _disc_price().sum().alias("sum_disc_price"),
                (_disc_price() * (1 + pl.col("l_tax"))).sum().alias("sum_charge"),
                pl.col("l_quantity").mean().alias("avg_qty"),
                pl.col("l_extendedprice").mean().alias("avg_price"),
                pl.col("l_discount").mean().alias("avg_disc"),
                pl.len().alias("count_order"))
            .sort(KEYS["q1"]))


def polars_q3(customer: Any, orders: Any, lineitem: Any) -> Any:
    """TPC-H Q3 as a polars LazyFrame."""
    import polars as pl

    return (customer.filter(pl.col("c_mktsegment") == Q3_SEGMENT)
            .join(orders.filter(pl.col("o_orderdate") < _on(Q3_DAY)), left_on="c_custkey", right_on="o_custkey")
            .join(lineitem.filter(pl.col("l_shipdate") > _on(Q3_DAY)), left_on="o_orderkey", right_on="l_orderkey")
            .group_by(pl.col("o_orderkey").alias("l_orderkey"), "o_orderdate", "o_shippriority")
            .agg(_disc_price().sum().alias("revenue"))
            .sort(["revenue", "o_orderdate"], descending=[True, False]).head(10)
            .select("l_orderkey", "revenue", "o_orderdate", "o_shippriority"))


def polars_wide(customer: Any, orders: Any, lineitem: Any) -> Any:
    """The wide filtered join as a polars LazyFrame."""
    import polars as pl

    return (lineitem.filter((pl.col("l_shipdate") >= _on(WIDE_FROM)) & (pl.col("l_shipdate") < _on(WIDE_TO))
                            & pl.col("l_shipmode").is_in(list(WIDE_MODES)))
            .join(orders, left_on="l_orderkey", right_on="o_orderkey", coalesce=False)
            .join(customer, left_on="o_custkey", right_on="c_custkey", coalesce=False)
            .select(list(LINEITEM + ORDERS + CUSTOMER)))


def polars_queries(lineitem: Any, orders: Any, customer: Any) -> dict[str, Any]:
    """The three models as polars LazyFrames over the given LazyFrames."""
    return {"q1": polars_q1(lineitem), "q3": polars_q3(customer, orders, lineitem),
            "wide": polars_wide(customer, orders, lineitem)}
