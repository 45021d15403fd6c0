"""Moved to tests/support/pg.py. bench/publish.py still imports `Cluster` and `pg_bin_dir` from
here (`from tests.pg import ...`); this name stays until it imports tests.support.pg instead."""
from tests.support.pg import Cluster, pg_bin_dir

__all__ = ["Cluster", "pg_bin_dir"]
