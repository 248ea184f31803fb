"""The generator at scale 1.0 reproduces the public tables it was calibrated on.

Per-school enrollment totals follow DESE's October 2018 enrollment by school and grade (within
1 %), and program rates follow each school's DESE 2016-17 profile (within 2 points), checked
against the real files in ../shared/reference (not the generator's own copies).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datashare.synth.calibration import calibration
from datashare.synth.population import make_population
from support import REFERENCE as SHARED

REFERENCE = SHARED / "ma_bps"


@pytest.fixture(scope="module")
def population():
    return make_population(np.random.default_rng(2026), calibration(), 1.0, 2026)


@pytest.fixture(scope="module")
def dese_enrollment() -> dict[str, int]:
    path = REFERENCE / "dese_enrollment_by_school_grade_2018-19.xlsx"
    if not path.exists():
        pytest.skip("reference data not available")
    import openpyxl

    ws = openpyxl.load_workbook(path, read_only=True).active
    rows = list(ws.iter_rows(values_only=True))
    header_idx = next(i for i, r in enumerate(rows) if r and r[0] == "ORG_CODE")
    header = [str(c).strip() if c else "" for c in rows[header_idx]]
    school_col, total_col = header.index("SCHOOL"), header.index("School_Total")
    out = {}
    for r in rows[header_idx + 1 :]:
        # Boston Public Schools: district 0035, school codes 0035xxxx.
        if r[0] == "0035" and r[total_col] not in (None, "", 0):
            out[str(r[school_col]).zfill(8)] = int(r[total_col])
    return out


def test_district_total_matches_dese(population, dese_enrollment) -> None:
    assert population.n == sum(dese_enrollment.values()) == 51_433


def test_school_totals_within_one_percent(population, dese_enrollment) -> None:
    cal = calibration()
    codes = cal.schools.column("dese_code").to_pylist()
    counts = np.bincount(population.school, minlength=len(codes))
    for code, n in zip(codes, counts, strict=True):
        expected = dese_enrollment[code]
        assert abs(n - expected) <= max(1, 0.01 * expected), code


def _profiles() -> dict[str, dict[str, float]]:
    import csv

    path = REFERENCE / "MA_Public_Schools_2017.csv"
    if not path.exists():
        pytest.skip("reference data not available")
    out = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for r in csv.DictReader(fh):
            if r["District Code"].lstrip("0") == "350000":
                total = float(r["TOTAL_Enrollment"] or 0)
                out[r["School Code"].zfill(8)] = {
                    "ell": float(r["% English Language Learner"] or 0),
                    "swd": float(r["% Students With Disabilities"] or 0),
                    # The published percentage disagrees with its count (see data/README.md).
                    "econ_dis": 100 * float(r["Economically Disadvantaged"] or 0) / total
                    if total
                    else 0.0,
                }
    return out


@pytest.mark.parametrize("program", ["ell", "swd", "econ_dis"])
def test_program_rates_within_two_points(population, program: str) -> None:
    profiles = _profiles()
    cal = calibration()
    codes = cal.schools.column("dese_code").to_pylist()
    imputed = cal.schools.column("rates_imputed").to_pylist()
    flags = getattr(population, program)
    size = np.bincount(population.school, minlength=len(codes))
    rate = 100 * np.bincount(population.school, weights=flags, minlength=len(codes)) / size
    checked = 0
    for i, code in enumerate(codes):
        if imputed[i] or code not in profiles or size[i] < 100:
            continue  # small schools: sampling noise alone exceeds 2 points
        assert abs(rate[i] - profiles[code][program]) <= 2.0, (code, rate[i])
        checked += 1
    assert checked >= 90
    district = 100 * flags.mean()
    expected = sum(
        profiles[c][program] * s for c, s in zip(codes, size, strict=True) if c in profiles
    ) / sum(s for c, s in zip(codes, size, strict=True) if c in profiles)
    assert abs(district - expected) <= 1.0


def test_chronic_absence_in_the_range_bps_reports(small_export: Path) -> None:
    import duckdb

    share = duckdb.sql(
        f"""SELECT avg(CASE WHEN absent >= 0.1 * n_days THEN 1 ELSE 0 END) FROM (
              SELECT student_id, count(*) AS n_days,
                     count(*) FILTER (WHERE status IN ('AE', 'AU')) AS absent
              FROM read_csv('{small_export / "attendance.csv"}') GROUP BY ALL
              HAVING count(*) >= 20)"""
    ).fetchone()[0]
    assert 0.20 <= share <= 0.36
