"""Calibration tables shipped with the generator (see data/README.md for their provenance).

They were derived from public DESE and City of Boston data by scripts/build_calibration.py;
the product reads only these copies, never ../shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

__all__ = ["GRADES", "RACES", "Calibration", "calibration"]

DATA = Path(__file__).with_name("data")

GRADES = ("PK", "K", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "SP")
# Canonical race/ethnicity codes and the calibration column each is read from.
RACES = {
    "AA": "pct_african_american",
    "AS": "pct_asian",
    "HL": "pct_hispanic",
    "WH": "pct_white",
    "NA": "pct_native_american",
    "PI": "pct_pacific_islander",
    "MR": "pct_multi_race",
}

# Subgroup gaps in scaled-score points (subgroup mean minus all students), used where
# mcas_subgroup_gaps.csv has no figure. They are of the size DESE's Next-Generation MCAS
# reports show statewide for grades 3-8 (students with disabilities and English learners
# furthest behind); treat them as documented assumptions, not measurements.
DEFAULT_GAPS = {
    ("ELA", "swd"): -22.0,
    ("MATH", "swd"): -20.0,
    ("ELA", "ell"): -19.0,
    ("MATH", "ell"): -15.0,
    ("ELA", "econ_dis"): -11.0,
    ("MATH", "econ_dis"): -11.0,
    ("ELA", "african_american"): -9.0,
    ("MATH", "african_american"): -11.0,
    ("ELA", "hispanic"): -9.0,
    ("MATH", "hispanic"): -10.0,
    ("ELA", "asian"): 8.0,
    ("MATH", "asian"): 11.0,
    ("ELA", "white"): 7.0,
    ("MATH", "white"): 7.0,
    ("ELA", "multi_race"): 1.0,
    ("MATH", "multi_race"): 0.0,
    ("ELA", "male"): -3.0,
    ("MATH", "male"): 0.5,
    ("ELA", "female"): 3.0,
    ("MATH", "female"): -0.5,
}


@dataclass(frozen=True)
class Calibration:
    schools: pa.Table
    enrollment: np.ndarray  # (n_schools, n_grades) students at scale 1.0
    race_share: np.ndarray  # (n_schools, 7) in RACES order, rows sum to 1
    rates: dict[str, np.ndarray]  # per school, 0..1: ell, swd, econ_dis, first_lang_not_eng, male
    mcas: pa.Table
    gaps: dict[tuple[str, str], float]

    @property
    def school_ids(self) -> list[str]:
        return self.schools.column("school_id").to_pylist()


def _read(name: str) -> pa.Table:
    opts = pacsv.ConvertOptions(
        column_types={
            "school_id": pa.string(),
            "dese_code": pa.string(),
            "zip": pa.string(),
            "grade": pa.string(),
        },
        strings_can_be_null=True,
    )
    return pacsv.read_csv(DATA / name, convert_options=opts)


def _col(t: pa.Table, name: str) -> np.ndarray:
    return t.column(name).to_numpy(zero_copy_only=False).astype(np.float64)


@cache
def calibration() -> Calibration:
    schools = _read("schools.csv")
    enrollment = np.stack([_col(schools, f"enr_{g}") for g in GRADES], axis=1)
    race = np.stack([np.nan_to_num(_col(schools, c)) for c in RACES.values()], axis=1)
    race = race / race.sum(axis=1, keepdims=True)
    rates = {
        "ell": _col(schools, "pct_ell") / 100,
        "swd": _col(schools, "pct_swd") / 100,
        "econ_dis": _col(schools, "pct_econ_dis") / 100,
        "first_lang_not_eng": _col(schools, "pct_first_lang_not_eng") / 100,
        "male": _col(schools, "pct_male") / 100,
        "high_needs": _col(schools, "pct_high_needs") / 100,
    }
    gaps = dict(DEFAULT_GAPS)
    gap_table = _read("mcas_subgroup_gaps.csv").to_pylist()
    for row in gap_table:
        if row.get("scaled_score_gap") is not None:
            gaps[(row["subject"], row["subgroup"])] = float(row["scaled_score_gap"])
    return Calibration(schools, enrollment, race, rates, _read("mcas.csv"), gaps)
