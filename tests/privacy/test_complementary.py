"""Complementary suppression: hand-made systems with known answers, linked tables, and an
independent LP attack on realistic published tables."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy.optimize import linprog

from datashare.privacy.complementary import Constraints, audit, protect
from datashare.privacy.linked_tables import LinkedTable, apply_suppression, build_system
from datashare.synth.calibration import GRADES, calibration
from datashare.synth.population import RACE_CODES, make_population

SUBGROUPS = ("race_ethnicity", "gender", "ell", "swd", "econ_dis")


# --------------------------------------------------------------------------------------------
# Hand-made systems


def test_one_small_cell_in_a_row_takes_the_smallest_other_cell() -> None:
    # total 50 = 3 + 12 + 35; the total is public.
    v = np.array([50, 3, 12, 35])
    cons = [(0, [1, 2, 3])]
    primary = np.array([False, True, False, False])
    exposed = audit(v, primary, cons, min_width=1)
    assert (exposed.lo[1], exposed.hi[1]) == (3, 3) and not exposed.passed
    r = protect(v, primary, cons, fixed_public=np.array([True, False, False, False]), verify=True)
    assert r.complementary.tolist() == [False, False, True, False]
    assert r.audit is not None and r.audit.passed
    assert (r.audit.lo[1], r.audit.hi[1]) == (1, 14)  # 3 + 12 = 15, each >= 1
    assert (r.audit.lo[2], r.audit.hi[2]) == (1, 14)


def test_two_by_two_table_with_margins_needs_a_rectangle() -> None:
    #      c1  c2 | row
    # r1    3  20 |  23
    # r2   15  30 |  45
    # col  18  50 |  68
    cells = {"a": 3, "b": 20, "c": 15, "d": 30, "r1": 23, "r2": 45, "c1": 18, "c2": 50, "t": 68}
    ix = {k: i for i, k in enumerate(cells)}
    v = np.array(list(cells.values()))
    cons = [
        (ix["r1"], [ix["a"], ix["b"]]),
        (ix["r2"], [ix["c"], ix["d"]]),
        (ix["c1"], [ix["a"], ix["c"]]),
        (ix["c2"], [ix["b"], ix["d"]]),
        (ix["t"], [ix["r1"], ix["r2"]]),
        (ix["t"], [ix["c1"], ix["c2"]]),
    ]
    primary = v == 3
    r = protect(v, primary, cons, verify=True)
    assert {k for k in cells if r.complementary[ix[k]]} == {"b", "c", "d"}
    assert r.audit is not None and r.audit.passed
    # a + t = 3 + t, with b, c, d >= 1: a ranges over [1, 3 + min(20, 15) - 1].
    assert (r.audit.lo[ix["a"]], r.audit.hi[ix["a"]]) == (1, 17)
    # Suppressing a single partner in the row is not enough: the column gives a away.
    half = primary.copy()
    half[ix["b"]] = True
    assert audit(v, half, cons, min_width=1).failing.tolist() == [ix["a"], ix["b"]]


def test_two_small_cells_summing_to_two_are_pinned_by_their_bounds() -> None:
    # 22 = 1 + 1 + 20: one equation, two unknowns, yet x >= 1 pins both at 1.
    v = np.array([22, 1, 1, 20])
    cons = [(0, [1, 2, 3])]
    primary = np.array([False, True, True, False])
    a = audit(v, primary, cons, min_width=1)
    assert a.lo[1:3].tolist() == [1, 1] and a.hi[1:3].tolist() == [1, 1]
    assert a.failing.tolist() == [1, 2]
    fixed = np.array([True, False, False, False])
    r = protect(v, primary, cons, fixed_public=fixed, min_width=1, verify=True)
    assert r.complementary.tolist() == [False, False, False, True]
    assert r.audit is not None and r.audit.passed
    # With the 20 fixed public as well, nothing can help: reported, not looped on.
    r = protect(v, primary, cons, fixed_public=fixed | (v == 20), min_width=1, verify=True)
    assert r.unprotectable.tolist() == [False, True, True, False]
    assert r.audit is not None and r.audit.failing.tolist() == [1, 2]


def test_width_criterion_and_the_attacker_who_knows_primary_cells() -> None:
    # 18 = 9 + 9 with the total public: each in [1, 17] -- unless the attacker knows both are
    # primary (<= 9), which pins them.
    v = np.array([18, 9, 9])
    cons = [(0, [1, 2])]
    primary = np.array([False, True, True])
    weak = audit(v, primary, cons, min_width=2)
    assert weak.passed and (weak.lo[1], weak.hi[1]) == (1, 17)
    strong = audit(v, primary, cons, min_width=2, primary=primary, min_cell=10)
    assert (strong.lo[1], strong.hi[1]) == (9, 9) and not strong.passed
    # 26 = 3 + 10 + 13: knowing that the hidden 10 is complementary (>= 10) narrows the 3.
    v = np.array([26, 3, 10, 13])
    cons = [(0, [1, 2, 3])]
    primary = np.array([False, True, False, False])
    supp = np.array([False, True, True, False])
    assert (audit(v, supp, cons).hi[1]) == 12
    strong = audit(v, supp, cons, primary=primary, min_cell=10)
    assert (strong.lo[1], strong.hi[1]) == (1, 3)
    # Moving the 3 up (protection tries up first) needs a partner that can go down: the 13.
    r = protect(
        v, primary, cons, fixed_public=np.array([1, 0, 0, 0], bool), min_cell=10, verify=True
    )
    assert r.complementary.tolist() == [False, False, False, True]
    assert r.audit is not None and r.audit.passed
    assert (r.audit.lo[1], r.audit.hi[1]) == (1, 6)


def test_min_width_is_a_width_not_an_exactness_test() -> None:
    # 4 = 1 + 3 (public total): the 1 lies in [1, 3] -- recoverable to within 3 values.
    v = np.array([4, 1, 3])
    cons = [(0, [1, 2])]
    supp = np.array([False, True, True])
    assert audit(v, supp, cons, min_width=2).passed
    assert audit(v, supp, cons, min_width=3).failing.tolist() == [1, 2]


def _two_grade_school() -> list[LinkedTable]:
    # One school, two grades, gender only. Grade 1: F=3 (small), M=30. Grade 2: F=25, M=20.
    e = pa.table(
        {
            "school_id": ["s"] * 6,
            "grade": ["01", "01", "01", "02", "02", "02"],
            "subgroup": ["all", "gender", "gender", "all", "gender", "gender"],
            "subgroup_value": ["all", "F", "M", "all", "F", "M"],
            "students": [33, 3, 30, 45, 25, 20],
            "rate": [0.5, 0.1, 0.2, 0.3, 0.4, 0.5],
        }
    )
    a = pa.table(
        {
            "school_id": ["s"] * 3,
            "subgroup": ["all", "gender", "gender"],
            "subgroup_value": ["all", "F", "M"],
            "students": [78, 28, 50],
        }
    )
    t = pa.table({"school_id": ["s", "s"], "grade": ["01", "02"], "students": [33, 45]})
    return [
        LinkedTable(
            "enrollment",
            e,
            by=("school_id", "grade"),
            subgroups=True,
            min_cell=10,
            measures=("rate",),
        ),
        LinkedTable("attendance", a, by=("school_id",), subgroups=True, min_cell=10),
        LinkedTable("totals", t, by=("school_id", "grade"), fixed_public=True),
    ]


def test_a_cross_table_margin_recovers_what_within_table_suppression_leaves() -> None:
    tables = _two_grade_school()
    within = build_system(tables[:1])  # the enrollment table alone
    assert within.sources == {"within enrollment": 2}
    alone = within.protect(min_width=1)
    assert np.flatnonzero(alone.suppressed).tolist() == [1, 2]  # F=3 and M=30 in grade 1
    assert within.audit(alone.suppressed, min_width=1).passed
    full = build_system(tables)
    assert full.sources == {
        "within enrollment": 2,
        "within attendance": 1,
        "attendance = sum of enrollment": 3,
        "attendance = sum of totals": 1,
        "totals = enrollment": 2,
    }
    # The school-level F = 28 and grade 2's F = 25 give grade 1's F = 3 back.
    pattern = np.zeros(len(full.values), bool)
    pattern[full.cells("enrollment")] = alone.suppressed
    exposed = full.audit(pattern, min_width=1)
    assert {full.locate(c) for c in exposed.failing} == {("enrollment", 1), ("enrollment", 2)}
    r = full.protect(min_width=1, verify=True)
    assert r.audit is not None and r.audit.passed
    # The cheapest fix is grade 2's gender cells (25 + 20), not the school-level totals.
    assert {full.locate(c) for c in np.flatnonzero(r.suppressed)} == {
        ("enrollment", 1),
        ("enrollment", 2),
        ("enrollment", 4),
        ("enrollment", 5),
    }
    published = apply_suppression(tables, full, r)
    assert published[0]["students"].to_pylist() == [33, None, None, 45, None, None]
    assert published[0]["rate"].to_pylist() == [0.5, None, None, 0.3, None, None]
    assert published[0]["suppressed"].to_pylist() == [False, True, True, False, True, True]
    assert published[1]["suppressed"].to_pylist() == [False, False, False]
    assert published[2] is tables[2].table


def test_linked_tables_that_do_not_add_up_are_refused() -> None:
    tables = _two_grade_school()
    bad = tables[1].table.set_column(3, "students", pa.array([78, 27, 51]))
    with pytest.raises(ValueError, match="attendance = sum of enrollment"):
        build_system(
            [
                tables[0],
                LinkedTable("attendance", bad, by=("school_id",), subgroups=True, min_cell=10),
            ]
        )
    # A different population is not linked at all.
    other = LinkedTable(
        "other", bad, by=("school_id",), subgroups=True, min_cell=10, population="test takers"
    )
    assert "other = sum of enrollment" not in build_system([tables[0], other]).sources


def test_constraints_round_trip_and_the_linprog_fallback_agree() -> None:
    cons = Constraints.from_pairs([(0, [1, 2, 3]), (4, [1, 5])])
    assert cons.pairs() == [(0, [1, 2, 3]), (4, [1, 5])]
    v = np.array([40, 4, 16, 20, 30, 26])
    primary = v == 4
    fast = protect(v, primary, cons, verify=True)
    slow = protect(v, primary, cons, verify=True, engine="linprog")
    assert fast.suppressed.tolist() == slow.suppressed.tolist()
    assert fast.audit is not None and slow.audit is not None
    assert np.array_equal(fast.audit.hi, slow.audit.hi, equal_nan=True)


# --------------------------------------------------------------------------------------------
# Realistic tables, attacked independently


@pytest.fixture(scope="module")
def students() -> pa.Table:
    cal = calibration()
    pop = make_population(np.random.default_rng(2026), cal, 1.0, 2026)
    return pa.table(
        {
            "school_id": np.asarray(cal.school_ids)[pop.school],
            "grade": np.asarray(GRADES)[pop.grade],
            "race_ethnicity": np.asarray(RACE_CODES)[pop.race],
            "gender": pop.gender,
            "ell": pop.ell,
            "swd": pop.swd,
            "econ_dis": pop.econ_dis,
        }
    )


def _count(s: pa.Table, keys: list[str]) -> pa.Table:
    t = s.group_by(keys).aggregate([([], "count_all")])
    return t.select(keys).append_column("students", pc.cast(t["count_all"], pa.int64()))


def _long(s: pa.Table, by: list[str]) -> pa.Table:
    """Students per group and subgroup in the published long format (pyarrow, not DuckDB)."""
    parts = []
    for sg in ("all", *SUBGROUPS):
        t = _count(s, by if sg == "all" else [*by, sg])
        value = pa.array(["all"] * len(t)) if sg == "all" else pc.cast(t[sg], pa.string())
        t = t.select([*by, "students"])
        t = t.add_column(len(by), "subgroup", pa.array([sg] * len(t)))
        parts.append(t.add_column(len(by) + 1, "subgroup_value", value))
    return pa.concat_tables(parts)


def _tables(s: pa.Table) -> list[LinkedTable]:
    g, sc = ["school_id", "grade"], ["school_id"]
    return [
        LinkedTable(
            "enrollment_by_subgroup", _long(s, g), by=tuple(g), subgroups=True, min_cell=10
        ),
        LinkedTable(
            "attendance_by_subgroup", _long(s, sc), by=tuple(sc), subgroups=True, min_cell=10
        ),
        LinkedTable("enrollment_totals", _count(s, g), by=tuple(g), fixed_public=True),
    ]


def _attack(
    published: list[pa.Table], *, unknown: set | None = None
) -> dict[tuple, tuple[float, float]]:
    """What an attacker gets from the published tables alone: per school, the equations the
    tables' meaning implies, unknowns = null counts (>= 1), then min and max of every unknown
    with scipy's linprog, one LP at a time. `unknown` also hides these published keys."""
    e_tab, a_tab, t_tab = (t.to_pylist() for t in published)
    known: dict[tuple, int | None] = {}
    for r in e_tab:
        known["E", r["school_id"], r["grade"], r["subgroup"], r["subgroup_value"]] = r["students"]
    for r in a_tab:
        known["A", r["school_id"], r["subgroup"], r["subgroup_value"]] = r["students"]
    for r in t_tab:
        known["T", r["school_id"], r["grade"]] = r["students"]
    if unknown:
        known.update(dict.fromkeys(unknown))
    per_school: dict[str, list[list[tuple]]] = defaultdict(list)  # equations: sum(+-key) = 0
    for k in known:
        if k[0] == "T":  # tier 1: grade total = the enrollment table's all row
            per_school[k[1]].append([(+1, k), (-1, ("E", k[1], k[2], "all", "all"))])
        if k[0] in "EA" and k[-2] == "all":  # each subgroup type sums to the all row
            for sg in SUBGROUPS:
                parts = [(+1, j) for j in known if j[:-2] == k[:-2] and j[-2] == sg]
                per_school[k[1]].append([(-1, k), *parts])
        if k[0] == "A":  # school-level cell = sum over the grades
            parts = [(+1, j) for j in known if j[0] == "E" and (j[1], *j[3:]) == k[1:]]
            per_school[k[1]].append([(-1, k), *parts])
    out = {}
    for eqs in per_school.values():
        xs = sorted({k for eq in eqs for _, k in eq if known[k] is None})
        if not xs:
            continue
        col = {k: i for i, k in enumerate(xs)}
        a_eq = np.zeros((len(eqs), len(xs)))
        b_eq = np.zeros(len(eqs))
        for r, eq in enumerate(eqs):
            for sign, k in eq:
                if known[k] is None:
                    a_eq[r, col[k]] += sign
                else:
                    b_eq[r] -= sign * known[k]
        for k, i in col.items():
            c = np.zeros(len(xs))
            c[i] = 1
            lo = linprog(c, A_eq=a_eq, b_eq=b_eq, bounds=(1, None), method="highs")
            hi = linprog(-c, A_eq=a_eq, b_eq=b_eq, bounds=(1, None), method="highs")
            assert lo.status == 0 and hi.status in (0, 3)
            out[k] = (lo.fun, np.inf if hi.status == 3 else -hi.fun)
    return out


def _key(tables: list[LinkedTable], system, cell: int) -> tuple:
    name, row = system.locate(cell)
    r = tables[system.names.index(name)].table.slice(row, 1).to_pylist()[0]
    if name == "enrollment_by_subgroup":
        return "E", r["school_id"], r["grade"], r["subgroup"], r["subgroup_value"]
    return "A", r["school_id"], r["subgroup"], r["subgroup_value"]


def test_protected_tables_withstand_an_independent_lp_attack(students: pa.Table) -> None:
    # Eight schools of all sizes (~840 cells); the attack solves its LPs one at a time.
    ids = np.unique(students["school_id"].to_numpy(zero_copy_only=False))[
        [0, 6, 18, 30, 60, 84, 96, 108]
    ]
    s = students.filter(pc.is_in(students["school_id"], pa.array(ids)))
    tables = _tables(s)
    system = build_system(tables)

    # Primary suppression alone is attackable: the attack recovers cells exactly, and exactly
    # the cells the audit says.
    primary_only = apply_suppression(tables, system, system.primary)
    found = _attack(primary_only)
    exact = {k for k, (lo, hi) in found.items() if hi - lo < 1 - 1e-6}
    assert len(exact) > 50
    audited = system.audit(system.primary, min_width=1)
    assert exact == {_key(tables, system, c) for c in audited.failing}

    r = system.protect(verify=True)  # the default criterion: width >= 2
    assert r.complementary.sum() > 0
    found = _attack(apply_suppression(tables, system, r))
    assert set(found) == {_key(tables, system, c) for c in np.flatnonzero(r.suppressed)}
    narrow = {k for k, (lo, hi) in found.items() if hi - lo < r.min_width - 1e-6}
    unprotectable = {_key(tables, system, c) for c in np.flatnonzero(r.unprotectable)}
    assert narrow == unprotectable
    # The audit's exact intervals are the attacker's.
    assert r.audit is not None
    for c in np.flatnonzero(r.suppressed):
        lo, hi = found[_key(tables, system, c)]
        assert (r.audit.lo[c], r.audit.hi[c]) == (pytest.approx(lo), pytest.approx(hi))
    # Those left narrow stay narrow even with every other cell of their school hidden.
    if unprotectable:
        schools = {k[1] for k in unprotectable}
        hide = {k for k in found} | {
            _key(tables, system, c)
            for c in range(int(system.offsets[2]))
            if _key(tables, system, c)[1] in schools and system.values[c] > 0
        }
        worst = _attack(apply_suppression(tables, system, system.primary), unknown=hide)
        assert all(worst[k][1] - worst[k][0] < r.min_width for k in unprotectable)


def test_protect_is_deterministic_and_idempotent(students: pa.Table) -> None:
    ids = np.unique(students["school_id"].to_numpy(zero_copy_only=False))[:20]
    tables = _tables(students.filter(pc.is_in(students["school_id"], pa.array(ids))))
    system = build_system(tables)
    first, again = system.protect(), system.protect()
    assert np.array_equal(first.suppressed, again.suppressed)
    # Protecting the published pattern once more adds nothing.
    v, cons = system.values, system.constraints
    twice = protect(v, first.suppressed, cons, fixed_public=system.fixed_public)
    assert not twice.complementary.any()
    assert np.array_equal(twice.unprotectable, first.unprotectable)


def test_bps_size_is_fast_enough(students: pa.Table) -> None:
    t = time.perf_counter()
    system = build_system(_tables(students))
    r = system.protect()
    a = system.audit(r.suppressed)
    seconds = time.perf_counter() - t
    assert len(system.values) > 12_000 and system.primary.sum() > 3_000
    assert set(a.failing) == set(np.flatnonzero(r.unprotectable))
    assert r.unprotectable.sum() < 0.1 * system.primary.sum()
    assert seconds < 60, seconds  # ~2 s on 2 cores; see bench/suppression.py
