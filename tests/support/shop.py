"""A small real pipeline: CSV orders + a SQLite customers table, two models, for the runner and
CLI tests. The `shop` fixture (tests/conftest.py) writes its data; `write_pipeline` its code."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

PIPELINE = '''
from engine import Pipeline, model, sources

orders = sources.files("orders", "{root}/orders/*.csv")
customers = sources.sql("customers", "sqlite:///{root}/shop.sqlite", "customers", cursor="id")

@model(inputs={{"orders": "raw.orders", "customers": "raw.customers"}})
def revenue(orders, customers, ctx):
    per = orders.groupby("customer_id", as_index=False).agg(revenue=("amount", "sum"), n=("amount", "size"))
    out = customers[["id", "country"]].merge(per, left_on="id", right_on="customer_id", how="inner")
    return out[["id", "country", "revenue", "n"]]

@model(inputs={{"revenue": "revenue"}})
def by_country(revenue):
    {body}

pipeline = Pipeline("shop", sources=[orders, customers], models=[revenue, by_country])
'''
GOOD = 'return revenue.groupby("country", as_index=False).agg(revenue=("revenue", "sum"))'


def write_pipeline(root: Path, body: str = GOOD) -> Path:
    path = root / "pipeline.py"
    path.write_text(PIPELINE.format(root=root, body=body))
    return path


def expected_by_country(root: Path) -> dict[str, float]:
    orders = pd.concat(pd.read_csv(p) for p in sorted((root / "orders").glob("*.csv")))
    with sqlite3.connect(root / "shop.sqlite") as con:
        customers = pd.read_sql("select * from customers", con)
    joined = orders.merge(customers, left_on="customer_id", right_on="id")
    return joined.groupby("country")["amount"].sum().to_dict()
