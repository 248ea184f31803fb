"""Derived checks: the fast forms agree with the rules as written, and compound keys are exact."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa

from datashare.sources.canonical import model
from datashare.validation.checks import (
    CheckContext,
    add_check_columns,
    compound_key,
    derived_checks,
)

NIGHT = CheckContext(school_year=2026, as_of=dt.date(2026, 3, 1))
D = dt.date


def _table(schema: pa.Schema, names: tuple[str, ...], rows: list[tuple], fill: object) -> pa.Table:
    """`rows` of the named columns; every other column of the schema holds `fill`."""
    cols = {n: list(v) for n, v in zip(names, zip(*rows, strict=True), strict=True)}
    filled = {f.name: cols.get(f.name, [fill] * len(rows)) for f in schema}
    return pa.table({f.name: pa.array(filled[f.name], f.type) for f in schema})


def _enrollments() -> pa.Table:
    rows = [
        # student, school, entry, exit
        ("S1", "A", D(2025, 9, 2), D(2025, 12, 19)),
        ("S1", "B", D(2026, 1, 5), None),  # open spell
        ("S2", "A", D(2025, 9, 2), D(2026, 6, 20)),
        ("S3", "A", D(2025, 10, 1), D(2025, 10, 1)),  # one-day spell
    ]
    schema = model()["enrollments"].schema
    return _table(schema, ("student_id", "school_id", "entry_date", "exit_date"), rows, None)


def _attendance() -> pa.Table:
    rows = [
        ("S1", "A", D(2025, 9, 2)),  # first day of a spell
        ("S1", "A", D(2025, 12, 19)),  # last day of a spell
        ("S1", "A", D(2025, 12, 22)),  # after the spell ended: fails
        ("S1", "B", D(2026, 2, 2)),  # open spell
        ("S1", "B", D(2026, 1, 4)),  # the day before entry: fails
        ("S2", "B", D(2025, 10, 1)),  # wrong school: fails
        ("S3", "A", D(2025, 10, 1)),  # one-day spell
        ("S3", "A", D(2025, 10, 2)),  # fails
        ("S9", "A", D(2025, 10, 1)),  # never enrolled: fails
        (None, "A", D(2025, 10, 1)),  # null student: fails
        ("S2", "A", None),  # null date: fails
    ]
    schema = model()["attendance"].schema
    return _table(schema, ("student_id", "school_id", "attendance_date"), rows, "P")


def test_enrolled_day_anti_join_fails_exactly_the_rows_the_rule_fails() -> None:
    ds = model()["attendance"]
    fast = next(c for c in derived_checks(ds, NIGHT) if c.id == "attendance_date.enrolled_day")
    assert fast.failing_sql  # the fast form is what the pipeline runs
    literal = dataclasses.replace(fast, failing_sql=None)  # the predicate as written
    att, others = _attendance(), {"enrollments": _enrollments()}
    got = add_check_columns(att, ds, [fast], others).column(fast.column).to_pylist()
    want = add_check_columns(att, ds, [literal], others).column(fast.column).to_pylist()
    assert got == want
    assert got == [True, True, False, True, False, False, True, False, False, False, False]


def test_every_fast_check_agrees_with_its_predicate_on_broken_rows() -> None:
    ds = model()["attendance"]
    att = _attendance()
    others = {
        "enrollments": _enrollments(),
        "students": pa.table({"student_id": ["S1", "S2", "S3"]}),
        "schools": pa.table({"school_id": ["A"]}),
    }
    for check in derived_checks(ds, NIGHT):
        literal = dataclasses.replace(check, failing_sql=None)
        got = add_check_columns(att, ds, [check], others).column(check.column)
        want = add_check_columns(att, ds, [literal], others).column(check.column)
        assert got.equals(want), check.id


def _same_key_iff_same_values(table: pa.Table, columns: tuple[str, ...]) -> None:
    key = compound_key(table, columns).to_numpy()
    rows = list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    first: dict[tuple, int] = {}
    for r, k in zip(rows, key, strict=True):
        first.setdefault(r, int(k))
        assert first[r] == k
    assert len(set(first.values())) == len(first)  # distinct combinations, distinct keys


def test_compound_key_is_exact_with_nulls_and_chunks() -> None:
    values = [("a", 1), ("a", 2), ("b", 1), (None, 1), ("a", None), (None, None), ("a", 1)]
    s, n = zip(*values, strict=True)
    table = pa.Table.from_batches(
        [
            pa.record_batch({"s": pa.array(s[:3]), "n": pa.array(n[:3], pa.int32())}),
            pa.record_batch({"s": pa.array(s[3:]), "n": pa.array(n[3:], pa.int32())}),
        ]
    )
    _same_key_iff_same_values(table, ("s", "n"))
    key = compound_key(table, ("s", "n")).to_pylist()
    assert key[0] == key[6] and len(set(key)) == 6


def test_compound_key_renumbers_before_overflowing() -> None:
    distinct = 70_000
    # Four columns of 70,000 distinct values: the product of cardinalities (2.4e19) exceeds
    # int64, so the key must be renumbered on the way, and must stay exact.
    rng = np.random.default_rng(5)
    n = 2 * distinct
    cols = {c: rng.permutation(np.arange(n) % distinct) for c in "wxyz"}
    for c in "wxyz":  # the first half of the rows repeats the second
        cols[c][: n // 2] = cols[c][n // 2 :]
    table = pa.table({c: pa.array(v.astype(str)) for c, v in cols.items()})
    key = compound_key(table, ("w", "x", "y", "z")).to_numpy()
    assert key.dtype == np.int64 and key.min() >= 0
    half = n // 2
    assert np.array_equal(key[:half], key[half:])  # the duplicated half maps to equal keys
    assert len(np.unique(key)) == len(
        {tuple(r) for r in zip(*(cols[c] for c in "wxyz"), strict=True)}
    )


def test_compound_key_of_a_real_key_matches_python() -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 40, 500).astype(str)
    days = rng.integers(0, 5, 500)
    table = pa.table(
        {
            "student_id": pa.array(ids),
            "attendance_date": pa.array([D(2025, 9, 1) + dt.timedelta(int(d)) for d in days]),
        }
    )
    _same_key_iff_same_values(table, ("student_id", "attendance_date"))
