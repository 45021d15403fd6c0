"""The lake: Delta tables under one root, each land or write one commit carrying its state.

`Lake` (store.py) names, reads and writes tables; `guard` bases a commit on the version its
writer read; `types` maps Arrow types to what Delta stores; `write` is the parallel Parquet
writer, `merge` the keyed upsert, `scd2` the SCD2 load (every version of each key) and `history`
what such a table holds, `changes` what changed between two versions, `vacuum` old versions whose
files are gone, `storage` the object-store settings, clients and errors, `faults` the crash points
of the exactly-once tests.
"""
from engine.lake.guard import META_PREFIX, Based
from engine.lake.store import ZONES, Commit, Lake
from engine.lake.types import WriteMode, as_delta, cast, conform, delta_schema, delta_type

__all__ = ["META_PREFIX", "ZONES", "Based", "Commit", "Lake", "WriteMode", "as_delta", "cast", "conform",
           "delta_schema", "delta_type"]
