"""Attacks on a real published release, written independently of the code that protected it.

- recover a suppressed tier-2 cell from margins and linked tables (our own LP attacker);
- find a group of fewer than k students in the k-anonymous file (pandas and pycanon);
- read tier-4 sensitive columns without their key (a research project not entitled to them);
- exceed a differential-privacy budget by releasing twice.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from scipy.optimize import linprog

from datashare.encryption import entitled_kms, reader_keys
from datashare.errors import KeyMissingError
from datashare.lake.client import connect
from datashare.lake.parquet_io import read_parquet_keys
from datashare.policy import load_policy
from datashare.privacy.ledger import BudgetExceeded
from datashare.releases import read_manifest

POLICY = load_policy()
ATTACKED_SCHOOLS = 6


def _published(reader: str, tier: int, release_id: str, dataset: str) -> pa.Table:
    t = POLICY.tier(tier)
    lake = connect(reader)
    doc = read_manifest(lake, t.bucket, release_id)
    keys = [f["key"] for f in doc["datasets"][dataset]["files"]]
    return read_parquet_keys(
        lake, t.bucket, keys, decrypt=reader_keys(entitled_kms(reader), doc, dataset)
    )


def _attack_school(
    grade_rows: list[dict], school_rows: list[dict], totals: dict[str, int]
) -> list[tuple[str, float, float]]:
    """Min and max of every suppressed cell of one school, from what is published: the
    grade x subgroup table, the school x subgroup table, tier-1 grade totals, and the facts
    that categories sum to their group and that counts are whole and non-negative."""
    var: dict[tuple, int] = {}
    known: dict[tuple, float] = {}

    def cell(key: tuple, value: int | None) -> None:
        if value is None:
            var.setdefault(key, len(var))
        else:
            known[key] = float(value)

    for r in grade_rows:
        cell(("g", r["grade"], r["subgroup"], r["subgroup_value"]), r["students"])
    for r in school_rows:
        cell(("s", r["subgroup"], r["subgroup_value"]), r["students"])
    for grade, total in totals.items():
        known[("g", grade, "all", "all")] = float(total)  # tier 1 publishes it
        var.pop(("g", grade, "all", "all"), None)
    var = {k: i for i, k in enumerate(var)}

    def term(key: tuple) -> tuple[int | None, float]:
        return (var[key], 0.0) if key in var else (None, known.get(key, 0.0))

    rows, rhs = [], []

    def equation(total: tuple, parts: list[tuple]) -> None:
        coef = np.zeros(len(var))
        const = 0.0
        i, c = term(total)
        if i is None:
            const -= c
        else:
            coef[i] -= 1
        for p in parts:
            i, c = term(p)
            if i is None:
                const += c
            else:
                coef[i] += 1
        if coef.any():
            rows.append(coef)
            rhs.append(-const)

    by_group = defaultdict(list)
    for key in list(var) + list(known):
        if key[0] == "g" and key[2] != "all":
            by_group[(key[1], key[2])].append(key)
        if key[0] == "s" and key[1] != "all":
            by_group[("school", key[1])].append(key)
    for (grade, _subgroup), parts in by_group.items():
        total = ("s", "all", "all") if grade == "school" else ("g", grade, "all", "all")
        equation(total, parts)
    values = {k[3] for k in list(var) + list(known) if k[0] == "g"}
    subgroups = {k[2] for k in list(var) + list(known) if k[0] == "g"}
    for sg in subgroups:
        for v in values:
            parts = [k for k in list(var) + list(known) if k[0] == "g" and k[2] == sg and k[3] == v]
            if parts:
                equation(("s", sg, v), parts)
    equation(("s", "all", "all"), [("g", g, "all", "all") for g in totals])
    a_eq, b_eq = np.array(rows), np.array(rhs)
    bounds = [(1 if k[2] == "all" else 0, None) for k in var]
    out = []
    for key, i in var.items():
        c = np.zeros(len(var))
        c[i] = 1
        lo = linprog(c, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        hi = linprog(-c, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        assert lo.status == 0
        out.append((str(key), lo.fun, np.inf if hi.status == 3 else -hi.fun))
    return out


def test_no_suppressed_cell_is_recoverable(published: dict) -> None:
    rid = published["release_id"]
    grades = _published("tier2-reader", 2, rid, "enrollment_by_subgroup").to_pylist()
    schools = _published("tier2-reader", 2, rid, "attendance_by_subgroup").to_pylist()
    totals = _published("tier1-reader", 1, rid, "enrollment_totals").to_pylist()
    by_school = defaultdict(list)
    for r in grades:
        by_school[r["school_id"]].append(r)
    attacked = 0
    for school in sorted(by_school)[:ATTACKED_SCHOOLS]:
        grade_totals = {r["grade"]: r["students"] for r in totals if r["school_id"] == school}
        srows = [r for r in schools if r["school_id"] == school]
        for key, lo, hi in _attack_school(by_school[school], srows, grade_totals):
            may_be_empty = "'all'" not in key
            protected = hi - lo >= 2 - 1e-6 or (may_be_empty and lo <= 1e-6 and hi >= 1 - 1e-6)
            assert protected, f"school {school}: {key} narrowed to [{lo:g}, {hi:g}]"
            attacked += 1
    assert attacked > 50


def test_primary_suppression_alone_would_be_attackable(published: dict) -> None:
    """The attacker above is strong enough: against a release with only primary suppression
    (complementary cells published) it recovers cells exactly."""
    rid = published["release_id"]
    grades = _published("tier2-reader", 2, rid, "enrollment_by_subgroup")
    schools = _published("tier2-reader", 2, rid, "attendance_by_subgroup").to_pylist()
    totals = _published("tier1-reader", 1, rid, "enrollment_totals").to_pylist()
    truth = duckdb.connect()
    pipe = connect("pipeline")
    from datashare.pipeline.staging import load_sources

    truth.register("student_year", load_sources(pipe, rid, {"student_year"})["student_year"])
    exact = 0
    for school in sorted(set(grades.column("school_id").to_pylist()))[:ATTACKED_SCHOOLS]:
        rows = [r for r in grades.to_pylist() if r["school_id"] == school]
        # Publish every suppressed cell of 10+ students (i.e. drop complementary suppression).
        for r in rows:
            if r["students"] is None and r["subgroup"] != "all":
                col = r["subgroup"]
                n = truth.execute(
                    f"SELECT count(*) FROM student_year WHERE school_id = ? AND grade = ? AND "
                    f"CAST({col} AS VARCHAR) = ?",
                    [school, r["grade"], r["subgroup_value"]],
                ).fetchone()[0]
                if n >= 10:
                    r["students"] = n
        grade_totals = {r["grade"]: r["students"] for r in totals if r["school_id"] == school}
        srows = [r for r in schools if r["school_id"] == school]
        exact += sum(
            1
            for _, lo, hi in _attack_school(rows, srows, grade_totals)
            if hi - lo < 0.5 and lo >= 1
        )
    assert exact > 0


def test_no_group_smaller_than_k_in_the_k_anonymous_file(published: dict) -> None:
    from pycanon import anonymity

    spec = POLICY.tier(2).dataset("student_year_deidentified")
    assert spec.k_anon is not None
    table = _published("tier2-reader", 2, published["release_id"], spec.name)
    qis = list(spec.k_anon.quasi_identifiers)
    sizes = table.group_by(qis).aggregate([([], "count_all")]).column("count_all")
    assert min(sizes.to_pylist()) >= spec.k_anon.k
    assert anonymity.k_anonymity(table.to_pandas(), qis) >= spec.k_anon.k
    # And no quasi-identifier is released at full detail where the hierarchy says otherwise:
    doc = read_manifest(connect("tier2-reader"), POLICY.tier(2).bucket, published["release_id"])
    assert doc["datasets"][spec.name]["k"] == spec.k_anon.k


def test_research_project_cannot_read_sensitive_columns(published: dict) -> None:
    from datashare.sql import open_release

    project = next(p for p in POLICY.research_projects if not p.column_groups)
    view = open_release(project.identity)
    assert set(view.datasets) == set(project.datasets) & {d.name for d in POLICY.tier(4).datasets}
    hidden = view.withheld_columns.get("student_year", [])
    assert {"ell", "swd", "econ_dis"} <= set(hidden)
    columns = view.con.sql("SELECT * FROM student_year LIMIT 0").columns
    assert not set(hidden) & set(columns)
    # Asking pyarrow for those columns with the project's keys fails: no key, no plaintext.
    t4 = POLICY.tier(4)
    lake = connect(project.identity)
    doc = read_manifest(lake, t4.bucket, published["release_id"])
    keys = [f["key"] for f in doc["datasets"]["student_year"]["files"]]
    with pytest.raises((KeyMissingError, OSError)):
        read_parquet_keys(
            lake,
            t4.bucket,
            keys,
            ["ell"],
            decrypt=reader_keys(entitled_kms(project.identity), doc, "student_year"),
        )
    # ... and it may not read a dataset outside its agreement at all.
    assert "discipline" not in view.datasets


def test_releasing_twice_cannot_exceed_the_budget(published: dict) -> None:
    """A second fresh release that would pass the annual cap is refused, and not recorded."""
    from datashare.pipeline.budget import budget_charger, ledger
    from datashare.pipeline.staging import load_sources
    from datashare.tiers.builder import BuildContext, build_dataset

    spec = POLICY.tier(2).dataset("students_by_zip_grade")
    assert spec.dp is not None
    tight = dataclasses.replace(
        spec,
        dp=dataclasses.replace(spec.dp, annual_cap=spec.dp.epsilon, refresh_days=0),
        name="students_by_zip_grade_cap_test",
    )
    pipe = connect("pipeline")
    con = duckdb.connect()
    con.register(
        "student_year",
        load_sources(pipe, published["release_id"], {"student_year"})["student_year"],
    )
    first = BuildContext(
        POLICY,
        charge_budget=budget_charger(pipe, "20260201T000000Z"),
        release_id="20260201T000000Z",
    )
    build_dataset(tight, con, first)
    second = BuildContext(
        POLICY,
        charge_budget=budget_charger(pipe, "20260202T000000Z"),
        release_id="20260202T000000Z",
    )
    with pytest.raises(BudgetExceeded):
        build_dataset(tight, con, second)
    book = ledger(pipe)
    year = int(con.sql("SELECT max(school_year) FROM student_year").fetchone()[0])
    assert book.spent(tight.name, year) == pytest.approx(spec.dp.epsilon)
    assert book.charged(tight.name, year, "20260202T000000Z") is None
