"""Schools, staff roster and school budgets of the synthetic district."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datashare.synth.calibration import GRADES, Calibration
from datashare.synth.names import FIRST_NAMES, LAST_NAMES

__all__ = ["budgets_table", "schools_table", "staff_table"]


def schools_table(cal: Calibration) -> pa.Table:
    served = cal.enrollment > 0
    # The lowest and highest grades with students (SP counts as beyond 12, not as a span end).
    core = served[:, :-1]
    low = np.argmax(core, axis=1)
    high = core.shape[1] - 1 - np.argmax(core[:, ::-1], axis=1)
    only_sp = ~core.any(axis=1)
    grades = np.asarray(GRADES, dtype=object)
    low_g, high_g = grades[low], grades[high]
    low_g[only_sp] = "SP"
    high_g[only_sp] = "SP"
    t = cal.schools
    return pa.table(
        {
            "school_id": t.column("school_id"),
            "dese_code": t.column("dese_code"),
            "school_name": t.column("school_name"),
            "school_type": t.column("school_type"),
            "low_grade": pa.array(low_g, pa.string()),
            "high_grade": pa.array(high_g, pa.string()),
            "address": t.column("address"),
            "city": t.column("city"),
            "zip": t.column("zip"),
            "latitude": pc.cast(t.column("latitude"), pa.float64()),
            "longitude": pc.cast(t.column("longitude"), pa.float64()),
        }
    )


# Staff per school: (role, students per position or None for one per school, FTE).
_STAFFING = (
    ("PRINCIPAL", None, 1.0),
    ("ASSISTANT_PRINCIPAL", 450, 1.0),
    ("TEACHER", 12, 1.0),
    ("PARAPROFESSIONAL", 35, 1.0),
    ("COUNSELOR", 250, 1.0),
    ("NURSE", None, 1.0),
    ("SPECIALIST", 90, 0.8),
    ("ADMINISTRATIVE", 200, 1.0),
)


def staff_table(
    rng: np.random.Generator,
    students_per_school: np.ndarray,
    school_ids: np.ndarray,
    school_year: int,
) -> pa.Table:
    roles, schools, ftes = [], [], []
    for role, ratio, fte in _STAFFING:
        n = (
            np.ones(len(students_per_school), np.int64)
            if ratio is None
            else np.ceil(students_per_school / ratio).astype(np.int64)
        )
        n = np.where(students_per_school > 0, n, 0).astype(np.int64)
        schools.append(np.repeat(np.arange(len(n)), n))
        roles.append(np.full(int(n.sum()), role, dtype=object))
        ftes.append(np.where(rng.random(int(n.sum())) < 0.1, 0.5, fte))
    school = np.concatenate(schools)
    n = len(school)
    gender = np.where(rng.random(n) < 0.75, "F", "M")
    first = np.where(
        gender == "F",
        np.asarray(FIRST_NAMES["F"], dtype=object)[rng.integers(0, len(FIRST_NAMES["F"]), n)],
        np.asarray(FIRST_NAMES["M"], dtype=object)[rng.integers(0, len(FIRST_NAMES["M"]), n)],
    )
    surnames = sum(LAST_NAMES.values(), ())
    last = np.asarray(surnames, dtype=object)[rng.integers(0, len(surnames), n)]
    start = np.datetime64(dt.date(1990, 7, 1), "D")
    span = (np.datetime64(dt.date(school_year - 1, 8, 31), "D") - start).astype(int)
    hire = start + rng.integers(0, span, n).astype("timedelta64[D]")
    return pa.table(
        {
            "staff_id": pa.array(np.char.add("E", (200_000 + rng.permutation(n)).astype(str))),
            "school_id": pa.array(school_ids[school]),
            "first_name": pa.array(first, pa.string()),
            "last_name": pa.array(last, pa.string()),
            "role": pa.array(np.concatenate(roles), pa.string()),
            "fte": pa.array(np.concatenate(ftes)),
            "hire_date": pa.array(hire, pa.date32()),
        }
    )


# Per-pupil dollars by category, in the proportions of a large urban district's school budgets.
_PER_PUPIL = (
    ("INSTRUCTION", 11_800.0),
    ("SPECIAL_EDUCATION", 4_600.0),
    ("ENGLISH_LEARNERS", 1_300.0),
    ("STUDENT_SERVICES", 1_500.0),
    ("OPERATIONS", 2_400.0),
    ("ADMINISTRATION", 1_200.0),
    ("FOOD_SERVICE", 900.0),
    ("TRANSPORTATION", 1_700.0),
)


def budgets_table(
    rng: np.random.Generator,
    students_per_school: np.ndarray,
    school_ids: np.ndarray,
    fiscal_year: int,
) -> pa.Table:
    n_s, n_c = len(school_ids), len(_PER_PUPIL)
    per_pupil = np.array([v for _, v in _PER_PUPIL])
    amount = students_per_school[:, None] * per_pupil[None, :] * rng.lognormal(0, 0.15, (n_s, n_c))
    amount = np.round(amount, -2).ravel()
    keep = amount > 0
    return pa.table(
        {
            "school_id": pa.array(np.repeat(school_ids, n_c)[keep]),
            "fiscal_year": pa.array(np.full(int(keep.sum()), fiscal_year, np.int16)),
            "category": pa.array(
                np.tile(np.array([c for c, _ in _PER_PUPIL], dtype=object), n_s)[keep], pa.string()
            ),
            "amount": pa.array(amount[keep]),
        }
    )
