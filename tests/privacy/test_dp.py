"""Differentially private counts (OpenDP) and the privacy-budget ledger.

Privacy claims are checked with OpenDP's own privacy maps, rebuilt here from what the release
recorded (not from the module's helpers), and the noise is checked empirically.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading

import numpy as np
import opendp.prelude as dp
import pyarrow as pa
import pytest

from datashare.errors import ConfigError
from datashare.privacy.dp import dp_counts, prepare_cells
from datashare.privacy.ledger import (
    BudgetExceeded,
    FileStorage,
    LedgerError,
    MemoryStorage,
    PrivacyLedger,
)

dp.enable_features("contrib")

ZIPS = ["02108", "02109", "02110", "02111", "02113"]
GRADES = [0, 1, 2, 3]
DOMAIN = {"home_zip": ZIPS, "grade": GRADES}


def _students(n: int = 400, seed: int = 0) -> pa.Table:
    """One row per student, all inside the domain except for ZIP 02199 and a few spares."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "student_id": [f"s{i}" for i in range(n)],
            "home_zip": rng.choice(ZIPS, n),
            "grade": rng.choice(GRADES, n).astype(np.int64),
        }
    )


def _opendp_laplace(cells: int, scale: float) -> dp.Measurement:
    counts = dp.t.make_count_by_categories(
        dp.vector_domain(dp.atom_domain(T=int)),
        dp.symmetric_distance(),
        categories=list(range(cells)),
        null_category=False,
    )
    return counts >> dp.m.then_laplace(scale)


def _exact(prepared) -> np.ndarray:
    return np.bincount(prepared.codes, minlength=prepared.domain.num_rows)


# --------------------------------------------------------------------------------------------
# Privacy maps


@pytest.mark.parametrize(("epsilon", "k"), [(0.5, 1), (0.3, 1), (1.0, 2), (0.25, 3), (2.0, 5)])
def test_laplace_privacy_map_at_the_contribution_bound(epsilon: float, k: int) -> None:
    r = dp_counts(_students(), ["home_zip", "grade"], epsilon=epsilon, domain=DOMAIN,
                  max_contributions=k)  # fmt: skip
    meas = _opendp_laplace(r.cells, r.scale)  # rebuilt independently from the recorded scale
    assert meas.map(k) <= epsilon
    assert meas.map(k) == r.epsilon
    assert r.epsilon == pytest.approx(epsilon, rel=1e-9)  # calibrated tightly, not wastefully
    assert meas.map(k + 1) > epsilon  # a larger contribution bound costs more
    assert r.delta == 0.0 and r.mechanism == "laplace" and r.max_contributions == k


def test_stack_note_fact_eps_half_is_scale_two() -> None:
    r = dp_counts(_students(), ["home_zip", "grade"], epsilon=0.5, domain=DOMAIN)
    assert r.scale == 2.0 and r.epsilon == 0.5


def test_gaussian_privacy_map_and_zcdp() -> None:
    k, eps, delta = 2, 1.0, 1e-6
    r = dp_counts(_students(), ["home_zip", "grade"], epsilon=eps, domain=DOMAIN,
                  max_contributions=k, mechanism="gaussian", delta=delta)  # fmt: skip
    counts = dp.t.make_count_by_categories(
        dp.vector_domain(dp.atom_domain(T=int)), dp.symmetric_distance(),
        categories=list(range(r.cells)), null_category=False, MO="L2Distance<int>",
    )  # fmt: skip
    zcdp = counts >> dp.m.then_gaussian(r.scale)
    approx = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(zcdp), delta)
    e, d = approx.map(k)
    assert e <= eps and d <= delta and e == pytest.approx(eps, rel=1e-3)
    assert r.rho == zcdp.map(k) and r.epsilon == e and r.delta == delta
    assert approx.map(k + 1)[0] > eps
    with pytest.raises(ConfigError, match="delta"):
        dp_counts(_students(), ["home_zip", "grade"], epsilon=1.0, domain=DOMAIN,
                  mechanism="gaussian")  # fmt: skip


def test_bad_parameters_are_refused() -> None:
    t = _students()
    for kwargs in ({"epsilon": 0}, {"epsilon": -1}, {"epsilon": math.inf},
                   {"epsilon": 1, "mechanism": "exponential"}, {"epsilon": 1, "delta": 1e-6},
                   {"epsilon": 1, "max_contributions": 0}):  # fmt: skip
        with pytest.raises(ConfigError):
            dp_counts(t, ["home_zip", "grade"], domain=DOMAIN, **kwargs)


# --------------------------------------------------------------------------------------------
# Noise


def _even_cells(per_cell: int) -> tuple[list[str], pa.Table]:
    """150 ZIPs x 4 grades = 600 cells, each with exactly `per_cell` students."""
    zips = [f"z{i:03d}" for i in range(150)]
    n = 600 * per_cell
    t = pa.table(
        {
            "student_id": np.arange(n),
            "home_zip": np.repeat(zips, 4 * per_cell),
            "grade": np.tile(np.repeat(GRADES, per_cell), 150),
        }
    )
    return zips, t


def test_noise_is_added_and_has_the_laplace_spread() -> None:
    # 600 cells with 40 students each: at scale 2 the noise never reaches the clamp at 0.
    zips, t = _even_cells(40)
    runs = [dp_counts(t, ["home_zip", "grade"], epsilon=0.5,
                      domain={"home_zip": zips, "grade": GRADES}) for _ in range(4)]  # fmt: skip
    noise = np.concatenate([r.table.column("count").to_numpy() - 40 for r in runs])
    assert len({tuple(r.table.column("count").to_pylist()) for r in runs}) == 4  # runs differ
    # Discrete Laplace with scale b: variance 2 e^{-1/b} / (1 - e^{-1/b})^2 (7.83 for b = 2).
    q = math.exp(-1 / runs[0].scale)
    var = 2 * q / (1 - q) ** 2
    assert abs(noise.mean()) < 0.35  # 5 standard errors of the mean
    assert noise.var() == pytest.approx(var, rel=0.2)  # ~4 standard errors of the variance
    assert (noise != 0).mean() > 0.6  # P(0) = (1-q)/(1+q) = 0.24 at b = 2


def test_gaussian_noise_has_the_recorded_scale() -> None:
    zips, t = _even_cells(60)
    r = dp_counts(t, ["home_zip", "grade"], epsilon=2.0, delta=1e-5, mechanism="gaussian",
                  domain={"home_zip": zips, "grade": GRADES})  # fmt: skip
    noise = r.table.column("count").to_numpy() - 60
    assert 1 < r.scale < 15
    assert noise.std() == pytest.approx(r.scale, rel=0.15)


def test_counts_are_non_negative_integers_and_unbiased_overall() -> None:
    r = dp_counts(_students(50), ["home_zip", "grade"], epsilon=0.2, domain=DOMAIN)
    counts = r.table.column("count")
    assert counts.type == pa.int64() and counts.null_count == 0
    assert min(counts.to_pylist()) >= 0


# --------------------------------------------------------------------------------------------
# Contribution bounding


def test_a_unit_with_many_rows_changes_at_most_k_cells() -> None:
    base = _students(300)
    # One student with 40 rows spread over every cell of the domain (e.g. a messy history).
    heavy = pa.table(
        {
            "student_id": ["heavy"] * 40,
            "home_zip": [z for z in ZIPS for _ in range(8)],
            "grade": [g for _ in range(10) for g in GRADES],
        }
    )
    with_heavy = pa.concat_tables([base, heavy.cast(base.schema)])
    for k in (1, 2, 3):
        a = prepare_cells(base, ["home_zip", "grade"], domain=DOMAIN, max_contributions=k)
        b = prepare_cells(with_heavy, ["home_zip", "grade"], domain=DOMAIN, max_contributions=k)
        diff = np.abs(_exact(b) - _exact(a))
        assert diff.sum() == k and diff.max() == 1  # k distinct cells, once each
        # Neighbouring datasets at symmetric distance k: exactly the d_in the map is charged at.
        assert len(b.codes) - len(a.codes) == k


def test_duplicate_rows_of_a_unit_in_one_cell_count_once() -> None:
    t = pa.table({"student_id": ["a", "a", "a", "b"], "home_zip": ["02108"] * 4,
                  "grade": [1, 1, 1, 1]})  # fmt: skip
    p = prepare_cells(t, ["home_zip", "grade"], domain=DOMAIN, max_contributions=3)
    assert _exact(p).sum() == 2 and p.stats["unit_cell_pairs"] == 2


def test_bounding_rule_is_deterministic_and_ignores_row_order() -> None:
    rows = {"student_id": ["a"] * 3 + ["b"] * 2, "home_zip": ["02113", "02108", "02110",
            "02111", "02109"], "grade": [3, 2, 1, 0, 0], "entered": [3, 1, 2, 1, 2]}  # fmt: skip
    t = pa.table(rows)
    shuffled = t.take([4, 2, 0, 3, 1])
    for kw in ({}, {"order_by": [("entered", "descending")]}, {"seed": 7}):
        a = prepare_cells(t, ["home_zip", "grade"], domain=DOMAIN, **kw)
        b = prepare_cells(shuffled, ["home_zip", "grade"], domain=DOMAIN, **kw)
        assert sorted(a.codes) == sorted(b.codes) and len(a.codes) == 2
    # Default rule: first cell in domain order; order_by: the most recent entry wins.
    dom = prepare_cells(t, ["home_zip", "grade"], domain=DOMAIN).domain
    first = prepare_cells(t, ["home_zip", "grade"], domain=DOMAIN)
    kept = {(dom["home_zip"][int(c)].as_py(), dom["grade"][int(c)].as_py()) for c in first.codes}
    assert kept == {("02108", 2), ("02109", 0)}
    recent = prepare_cells(t, ["home_zip", "grade"], domain=DOMAIN,
                           order_by=[("entered", "descending")])  # fmt: skip
    kept = {(dom["home_zip"][int(c)].as_py(), dom["grade"][int(c)].as_py()) for c in recent.codes}
    assert kept == {("02113", 3), ("02109", 0)}


# --------------------------------------------------------------------------------------------
# Domain


def test_domain_cells_all_present_out_of_domain_dropped_and_counted() -> None:
    t = pa.table(
        {
            "student_id": ["a", "b", "c", "d", "e", None],
            "home_zip": ["02108", "02199", "02108", None, "02110", "02108"],
            "grade": [1, 1, 9, 1, 2, 1],
        }
    )
    r = dp_counts(t, ["home_zip", "grade"], epsilon=1.0, domain=DOMAIN)
    assert r.cells == r.table.num_rows == len(ZIPS) * len(GRADES)  # empty cells still released
    cells = set(zip(r.table["home_zip"].to_pylist(), r.table["grade"].to_pylist(), strict=True))
    assert cells == {(z, g) for z in ZIPS for g in GRADES}  # exactly the domain, nothing else
    assert r.table.column_names == ["home_zip", "grade", "count"]
    # 02199, grade 9 and a null ZIP are outside the domain; one row has no student id.
    assert r.dropped_out_of_domain == 3 and r.dropped_missing_unit == 1
    assert r.stats["contributions_kept"] == 2
    # Exact row counts are not DP: they stay out of the public manifest entry.
    assert "dropped_out_of_domain" not in json.dumps(r.manifest_entry())
    assert r.diagnostics()["dropped_out_of_domain"] == 3


def test_domain_as_table_and_type_alignment() -> None:
    # An explicit list of valid cells (e.g. neighbourhood x grade pairs that exist in policy).
    dom = pa.table({"hood": ["Roxbury", "Roxbury", "Dorchester"], "grade": ["1", "2", "1"]})
    t = pa.table({"student_id": [1, 2, 3], "hood": ["Roxbury", "Dorchester", "Fenway"],
                  "grade": pa.array([1, 1, 1], pa.int32())})  # fmt: skip
    with pytest.raises(ConfigError, match="cannot be read"):
        dp_counts(t, ["hood", "grade"], epsilon=1.0, domain=dom.set_column(
            1, "grade", pa.array(["1", "x", "1"])))  # fmt: skip
    r = dp_counts(t, ["hood", "grade"], epsilon=1.0, domain=dom)  # "1" read as int32 1
    assert r.table["hood"].to_pylist() == ["Roxbury", "Roxbury", "Dorchester"]
    assert r.table["grade"].type == pa.int32() and r.dropped_out_of_domain == 1
    with pytest.raises(ConfigError, match="twice"):
        dp_counts(t, ["hood", "grade"], epsilon=1.0, domain=pa.concat_tables([dom, dom]))
    with pytest.raises(ConfigError, match="exactly the by columns"):
        dp_counts(t, ["hood", "grade"], epsilon=1.0, domain={"hood": ["Roxbury"]})


def test_dictionary_encoded_columns() -> None:
    t = _students(100)
    t = t.set_column(1, "home_zip", t["home_zip"].dictionary_encode())
    r = dp_counts(t, ["home_zip", "grade"], epsilon=1.0, domain=DOMAIN)
    assert r.stats["contributions_kept"] == 100 and r.table["home_zip"].type == pa.string()


# --------------------------------------------------------------------------------------------
# Ledger


def _ledger(storage=None, start: dt.datetime | None = None) -> PrivacyLedger:
    t = [start or dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.UTC)]

    def clock() -> dt.datetime:
        t[0] += dt.timedelta(days=1)
        return t[0]

    return PrivacyLedger(storage or MemoryStorage(), clock=clock)


def test_ledger_accumulates_over_nights_and_persists() -> None:
    storage = MemoryStorage()
    for night in range(4):
        _ledger(storage).charge("zip_grade", 2026, f"2026010{night + 1}T020000Z", 0.25, cap=2.0)
    led = _ledger(storage)  # a fresh ledger object reads what earlier nights wrote
    assert led.spent("zip_grade", 2026) == 1.0
    entries = led.entries("zip_grade", 2026)
    assert [e.release_id for e in entries] == [f"2026010{i}T020000Z" for i in range(1, 5)]
    assert all(e.charged_at.endswith("+00:00") and e.cap == 2.0 for e in entries)


def test_ledger_refuses_to_exceed_the_cap_and_records_nothing() -> None:
    storage = MemoryStorage()
    led = _ledger(storage)
    led.charge("zip_grade", 2026, "20260105T020000Z", 0.6, cap=1.0)
    before = storage.read()
    # Adversarial: run again (a new release id) to squeeze out more than the cap.
    with pytest.raises(BudgetExceeded) as info:
        led.charge("zip_grade", 2026, "20260106T020000Z", 0.6, cap=1.0)
    msg = str(info.value)
    assert "zip_grade" in msg and "2026" in msg and "0.6" in msg and "cap 1" in msg
    assert (info.value.spent, info.value.requested, info.value.cap) == (0.6, 0.6, 1.0)
    assert storage.read() == before and led.spent("zip_grade", 2026) == 0.6
    led.charge("zip_grade", 2026, "20260107T020000Z", 0.4, cap=1.0)  # exactly fills the cap
    assert led.spent("zip_grade", 2026) == pytest.approx(1.0)
    with pytest.raises(BudgetExceeded):
        led.charge("zip_grade", 2026, "20260108T020000Z", 1e-6, cap=1.0)


def test_float_sums_fit_a_cap_they_equal() -> None:
    led = _ledger()
    for i in range(3):
        led.charge("d", 2026, f"r{i}", 0.1, cap=0.3)  # 0.1 + 0.1 + 0.1 = 0.30000000000000004
    assert len(led.entries("d")) == 3


def test_recharging_a_release_is_idempotent() -> None:
    led = _ledger()
    first = led.charge("zip_grade", 2026, "20260105T020000Z", 0.5, cap=0.5)
    again = led.charge("zip_grade", 2026, "20260105T020000Z", 0.5, cap=0.5)  # re-run of the night
    assert again == first and led.spent("zip_grade", 2026) == 0.5 and len(led.entries()) == 1
    with pytest.raises(LedgerError, match="refusing a different charge"):
        led.charge("zip_grade", 2026, "20260105T020000Z", 0.3, cap=0.5)


def test_school_years_and_datasets_have_separate_budgets_unless_pooled() -> None:
    led = _ledger()
    led.charge("zip_grade", 2026, "r1", 1.0, cap=1.0)
    led.charge("zip_grade", 2027, "r1", 1.0, cap=1.0)
    led.charge("hood_grade", 2026, "r1", 1.0, cap=1.0)
    assert led.spent("zip_grade", 2026) == led.spent("zip_grade", 2027) == 1.0
    # A tier-wide pool: both datasets draw on one cap.
    led.charge("zip_grade", 2028, "r1", 0.7, cap=1.0, budget="tier2")
    with pytest.raises(BudgetExceeded, match="budget 'tier2'"):
        led.charge("hood_grade", 2028, "r1", 0.7, cap=1.0, budget="tier2")
    assert led.spent("tier2", 2028) == 0.7


def test_ledger_with_a_dp_release_and_file_storage(tmp_path) -> None:
    led = _ledger(FileStorage(tmp_path / "ledger.json"))
    r = dp_counts(_students(), ["home_zip", "grade"], epsilon=0.5, domain=DOMAIN)
    led.charge("zip_grade", 2026, "20260105T020000Z", r.epsilon, cap=1.0, mechanism=r.mechanism)
    r2 = dp_counts(_students(), ["home_zip", "grade"], epsilon=0.5, domain=DOMAIN)
    led.charge("zip_grade", 2026, "20260106T020000Z", r2.epsilon, cap=1.0)
    with pytest.raises(BudgetExceeded):  # the third night's release must not be published
        led.charge("zip_grade", 2026, "20260107T020000Z", r2.epsilon, cap=1.0)
    doc = json.loads((tmp_path / "ledger.json").read_text())
    assert len(doc["entries"]) == 2 and doc["entries"][0]["mechanism"] == "laplace"


def test_unreadable_ledger_fails_closed() -> None:
    with pytest.raises(LedgerError, match="unreadable"):
        _ledger(MemoryStorage(b"{not json")).charge("d", 2026, "r", 0.1, cap=1.0)
    with pytest.raises(LedgerError, match="unreadable"):
        _ledger(MemoryStorage(b'{"entries": []}')).spent("d", 2026)


class _PlainStorage:
    """Only read/write (no compare-and-swap), like a bare object store."""

    def __init__(self) -> None:
        self.data: bytes | None = None

    def read(self) -> bytes | None:
        return self.data

    def write(self, data: bytes) -> None:
        self.data = data


def test_concurrent_writers_never_lose_entries_nor_overspend() -> None:
    storage = MemoryStorage()
    errors: list[Exception] = []

    def night(i: int) -> None:
        try:
            PrivacyLedger(storage, max_attempts=50).charge("d", 2026, f"r{i}", 0.1, cap=1.0)
        except BudgetExceeded as exc:
            errors.append(exc)

    threads = [threading.Thread(target=night, args=(i,)) for i in range(15)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    led = PrivacyLedger(storage)
    assert len(led.entries()) == 10 and len(errors) == 5
    assert led.spent("d", 2026) == pytest.approx(1.0)

    plain = _PlainStorage()
    for i in range(3):
        PrivacyLedger(plain).charge("d", 2026, f"r{i}", 0.1, cap=1.0)
    assert len(PrivacyLedger(plain).entries()) == 3


class _RacingStorage(MemoryStorage):
    """Another night's charge lands between our read and our conditional write."""

    def __init__(self, epsilon: float) -> None:
        super().__init__()
        self.epsilon, self.raced = epsilon, False

    def write_if(self, data: bytes, expected: str | None) -> None:
        if not self.raced:
            self.raced = True
            other = PrivacyLedger(self)
            other.charge("d", 2026, "other-run", self.epsilon, cap=1.0)
        super().write_if(data, expected)


def test_a_racing_writer_is_merged_and_counted_against_the_cap() -> None:
    storage = _RacingStorage(0.3)
    PrivacyLedger(storage).charge("d", 2026, "ours", 0.5, cap=1.0)
    assert {e.release_id for e in PrivacyLedger(storage).entries()} == {"other-run", "ours"}
    storage = _RacingStorage(0.6)
    with pytest.raises(BudgetExceeded):  # re-checked against the fresh ledger, not the stale one
        PrivacyLedger(storage).charge("d", 2026, "ours", 0.5, cap=1.0)
    assert [e.release_id for e in PrivacyLedger(storage).entries()] == ["other-run"]


def test_plain_storage_detects_a_lost_update_and_retries() -> None:
    storage = _PlainStorage()
    PrivacyLedger(storage).charge("d", 2026, "night-1", 0.2, cap=1.0)
    stale = storage.data  # what a concurrent writer read before our charge

    class _Clobbering(_PlainStorage):
        def write(self, data: bytes) -> None:
            self.data = data
            if not getattr(self, "clobbered", False):
                self.clobbered = True
                self.data = stale  # the other writer's stale document replaces ours

    racing = _Clobbering()
    racing.data = stale
    PrivacyLedger(racing).charge("d", 2026, "night-2", 0.2, cap=1.0)
    assert [e.release_id for e in PrivacyLedger(racing).entries()] == ["night-1", "night-2"]
