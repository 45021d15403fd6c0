"""Data checks on model outputs: declare them on a model, run them before its output is committed.

    @model(inputs={...}, checks=["unique(photo_id)", "warn: row_count(min=1000)", my_check_fn])

`parse` / `parse_all` read specs (strings, `Check`s, functions) and reject bad ones early;
`run_checks` runs them over an Arrow table with DuckDB; `failures`, `describe` and
`failure_error` turn the results into what a run reports.
"""
from engine.transform.checks.run import CheckResult, describe, failure_error, failures, run_checks
from engine.transform.checks.spec import (
    KINDS,
    SEVERITIES,
    Check,
    accepted_values,
    custom,
    expression,
    not_null,
    parse,
    parse_all,
    relationships,
    row_count,
    unique,
)

__all__ = ["KINDS", "SEVERITIES", "Check", "CheckResult", "accepted_values", "custom", "describe",
           "expression", "failure_error", "failures", "not_null", "parse", "parse_all",
           "relationships", "row_count", "run_checks", "unique"]
