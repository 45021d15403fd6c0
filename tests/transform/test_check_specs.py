"""Check specs: strings and calls that parse to the same checks, and the errors bad specs get."""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from engine.errors import HeadwaterError
from engine.transform.checks import (
    KINDS,
    Check,
    accepted_values,
    expression,
    not_null,
    parse,
    parse_all,
    relationships,
    row_count,
    run_checks,
    unique,
)
from engine.transform.models import model


# -- specs --------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, check", [
    ("unique(photo_id)", unique("photo_id")),
    ("unique(user_id, day)", unique("user_id", "day")),
    ("not_null(photo_id, user_id)", not_null("photo_id", "user_id")),
    ("accepted_values(kind, ['view', 'like', 'login'])", accepted_values("kind", ["view", "like", "login"])),
    ("relationships(user_id, to=user_activity.user_id)", relationships("user_id", "user_activity")),
    ("relationships(user_id, raw.users.user_id)", relationships("user_id", to="raw.users")),
    ("relationships(uid, to=raw.users, field=user_id)", relationships("uid", "raw.users.user_id")),
    ("relationships(uid, to=models.users.id)", relationships("uid", "users", field="id")),
    ("row_count(min=1)", row_count(min=1)),
    ("row_count(1, 1000000)", row_count(min=1, max=1_000_000)),
    ("expression(likes_7d >= 0)", expression("likes_7d >= 0")),
    ("expression(ts::date <> '2026-01-01')", expression("ts::date <> '2026-01-01'")),
    ("expression('a <> b')", expression("a <> b")),
    ("warn: unique(photo_id)", unique("photo_id", severity="warn")),
    ("  error:not_null( x )", not_null("x")),
    ("unique('order id')", unique("order id")),
])
def test_string_specs_parse_to_the_same_check(spec: str, check: Check) -> None:
    parsed = parse(spec)
    assert parsed == check
    assert parse(("warn: " if parsed.severity == "warn" else "") + parsed.name) == parsed


def test_names_read_like_the_design() -> None:
    assert [parse(s).name for s in ["unique( user_id ,day )", "relationships(user_id, raw.users)",
                                    "row_count(max=10)", "accepted_values(n, [1, 2])"]] == [
        "unique(user_id, day)", "relationships(user_id, to=raw.users.user_id)", "row_count(max=10)",
        "accepted_values(n, [1, 2])"]
    assert relationships("user_id", "raw.users").reference == "raw.users" and unique("a").reference is None


@pytest.mark.parametrize("spec, message, hint", [
    ("uniq(photo_id)", "unknown check kind 'uniq'", "checks are unique, not_null"),
    ("unique photo_id", "expected kind(arguments)", "row_count(min=1)"),
    ("unique(photo_id", "expected kind(arguments)", "checks are"),
    ("custom(my_fn)", "a custom check needs a function", "checks are"),
    ("warning: unique(x)", "unknown severity 'warning'", "'warn: '"),
    ("unique(x, severity='warn')", "severity goes in front", "warn: unique"),
    ("unique(class)", "cannot read the arguments", "quote a column name"),
    ("unique(a)(b)", "expected one kind(arguments)", "use column names"),
    ("unique(a), not_null(b)", "expected one kind(arguments)", "use column names"),
    ("unique(**cols)", "** is not allowed", "use column names"),
    ("unique(*cols)", "'*cols' is not a column name", "use column names"),
    ("accepted_values(kind, [view, like])", "'view' is not a column name or a literal", "quoted strings"),
    ("accepted_values(kind, ['a', 1])", "mix strings and non-strings", "accepted_values(kind, ["),
    ("accepted_values(kind, [])", "non-empty list", "write it like"),
    ("accepted_values(kind)", "wrong arguments for accepted_values", "write it like accepted_values"),
    ("not_null()", "name at least one column", "not_null(photo_id, user_id)"),
    ("row_count()", "give min=, max= or both", "row_count(min=1)"),
    ("row_count(min=5, max=1)", "min=5 is above max=1", "row_count"),
    ("row_count(min=-1)", "not a whole number", "row_count"),
    ("row_count(min=1.5)", "not a whole number", "row_count"),
    ("relationships(x, to=a.b.c)", "is not a model name or raw.<source>", "relationships(user_id"),
    ("relationships(x, to=raw.u.a, field=b)", "names field 'a' but field='b'", "relationships"),
    ("expression()", "expected a SQL boolean expression", "expression(likes_7d"),
    (42, "must be a string, a Check or a function", "checks are"),
])
def test_bad_specs_say_what_to_write(spec: Any, message: str, hint: str) -> None:
    with pytest.raises(HeadwaterError) as info:
        parse(spec)
    assert message in info.value.message and hint in (info.value.hint or ""), (info.value.message, info.value.hint)


def test_parse_all_names_the_model_and_a_bad_spec_stops_run_checks() -> None:
    assert parse_all("unique(a)") == (unique("a"),)
    kinds = [c.kind for c in parse_all(["unique(a)", lambda df: True, not_null("b")])]
    assert kinds == ["unique", "custom", "not_null"]
    with pytest.raises(HeadwaterError, match=r"model 'features': cannot read check spec 'uniqe\(a\)'"):
        parse_all(["unique(a)", "uniqe(a)"], model="features")
    with pytest.raises(HeadwaterError, match="unknown check kind"):
        run_checks(["unique(photo_id)", "nope(x)"], pa.table({"photo_id": [1, 2]}))
    with pytest.raises(HeadwaterError, match="cannot check a table with columns"):
        run_checks(["row_count(min=1)"], pa.table({}))
    with pytest.raises(HeadwaterError, match="unknown severity 'fatal'"):
        Check("unique", {"columns": ("a",)}, severity="fatal")
    assert set(KINDS) == {"unique", "not_null", "accepted_values", "relationships", "row_count",
                          "expression", "custom"}


def test_specs_on_a_model_parse_with_parse_all() -> None:
    @model(inputs={"e": "raw.events"}, primary_key="photo_id",
           checks=["unique(photo_id)", "warn: expression(likes >= 0)", lambda df: True])
    def features(e):  # type: ignore[no-untyped-def]
        return e

    checks = parse_all(features.checks, model=features.name)
    assert [(c.name, c.severity) for c in checks] == [
        ("unique(photo_id)", "error"), ("expression(likes >= 0)", "warn"), ("custom(<lambda>)", "error")]


def test_the_docs_example_declares_valid_checks() -> None:
    """docs/checks.md's example (tests/docs/test_docs.py runs it) declares every kind of check."""
    from tests.docs.runnable import DOCS, blocks

    (code,) = [b.code for b in blocks(DOCS / "checks.md") if b.path == "pipeline.py"]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    checks = [c for m in namespace["pipeline"].models for c in parse_all(m.checks, model=m.name)]
    assert sorted(c.kind for c in checks) == sorted(["unique", "not_null", "accepted_values", "relationships",
                                                     "row_count", "expression", "custom"])
    assert [c.severity for c in checks].count("warn") == 1
