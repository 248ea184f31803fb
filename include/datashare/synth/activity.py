"""Daily attendance, assessments, course marks and discipline for a synthetic population.

Attendance is produced in chunks of students (`attendance_batches`) so that `--scale 10`
(90 million rows) streams to disk with bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from datashare.synth.calibration import GRADES, Calibration
from datashare.synth.population import RACE_CODES, Population

__all__ = [
    "assessments_table",
    "attendance_batches",
    "course_grades_table",
    "discipline_table",
]

# Absence propensity: a Beta draw per student, scaled by grade band and circumstances.
# With these values about 28% of students miss 10% or more of their days (average attendance
# about 92%), in the range BPS has reported (roughly a quarter to a third chronically absent).
_ABSENCE_BETA = (1.6, 29.0)
_GRADE_FACTOR = np.array(
    [1.35, 1.25, 1.05, 1.0, 0.95, 0.95, 0.95, 1.05, 1.1, 1.15, 1.6, 1.7, 1.75, 1.9, 1.3]
)  # GRADES order
_EXCUSED_SHARE = 0.35
_TARDY = 0.06
_DISMISSED = 0.015
_CHUNK_STUDENTS = 25_000


def _absence_propensity(rng: np.random.Generator, pop: Population) -> np.ndarray:
    p = rng.beta(*_ABSENCE_BETA, size=pop.n)
    p *= _GRADE_FACTOR[pop.grade]
    p *= np.where(pop.econ_dis, 1.3, 0.85) * np.where(pop.swd, 1.3, 1.0)
    p *= np.where(pop.homeless, 1.8, 1.0) * np.exp(-0.15 * pop.ability)
    return np.clip(p, 0.0, 0.9)


def attendance_batches(
    rng: np.random.Generator, pop: Population, school_ids: np.ndarray
) -> Iterator[pa.RecordBatch]:
    """One row per spell per school day enrolled, in student chunks."""
    propensity = _absence_propensity(rng, pop).astype(np.float32)
    n_days = len(pop.days)
    last = np.where(pop.spell_exit >= 0, pop.spell_exit, n_days - 1)
    order = np.argsort(pop.spell_student, kind="stable")
    status_codes = np.array(["P", "T", "D", "AE", "AU"], dtype=object)
    sid = pop.student_id.astype(object)
    sch = school_ids.astype(object)
    for lo in range(0, len(order), _CHUNK_STUDENTS):
        spells = order[lo : lo + _CHUNK_STUDENTS]
        length = last[spells] - pop.spell_entry[spells] + 1
        length = np.maximum(length, 0)
        rows = int(length.sum())
        rep = np.repeat(np.arange(len(spells)), length)
        start = np.cumsum(length) - length
        day = pop.spell_entry[spells][rep] + (np.arange(rows) - start[rep])
        student = pop.spell_student[spells][rep]
        u = rng.random(rows, dtype=np.float32)
        absent = u < propensity[student]
        v = rng.random(rows, dtype=np.float32)
        status = np.where(
            absent,
            np.where(v < _EXCUSED_SHARE, 3, 4),
            np.where(v < _TARDY, 1, np.where(v < _TARDY + _DISMISSED, 2, 0)),
        )
        yield pa.record_batch(
            {
                "student_id": pa.array(sid[student], pa.string()),
                "school_id": pa.array(sch[pop.spell_school[spells][rep]], pa.string()),
                "attendance_date": pa.array(pop.days[day], pa.date32()),
                "status": pa.array(status_codes[status], pa.string()),
            }
        )


_TESTED = ("03", "04", "05", "06", "07", "08", "10")
_CUTS = np.array([470, 500, 530])  # NM < 470 <= PM < 500 <= M < 530 <= E
_LEVELS = np.array(["NM", "PM", "M", "E"], dtype=object)
_RACE_GAP_KEY = {
    "AA": "african_american",
    "HL": "hispanic",
    "AS": "asian",
    "WH": "white",
    "MR": "multi_race",
}
_SCORE_SD = 21.0


def assessments_table(
    rng: np.random.Generator, pop: Population, cal: Calibration, school_ids: np.ndarray
) -> pa.Table:
    """Spring MCAS-like results for students in tested grades still enrolled in April."""
    n_days = len(pop.days)
    april = int(n_days * 0.8)
    # Students still enrolled at test time, at the school of their current spell.
    spell_ok = (pop.spell_entry <= april) & ((pop.spell_exit < 0) | (pop.spell_exit >= april))
    spells = np.flatnonzero(spell_ok)
    student = pop.spell_student[spells]
    tested_grade = np.isin(np.asarray(GRADES)[pop.grade[student]], _TESTED)
    spells, student = spells[tested_grade], student[tested_grade]
    participates = rng.random(len(student)) < 0.97
    spells, student = spells[participates], student[participates]
    school = pop.spell_school[spells]
    grade = np.asarray(GRADES, dtype=object)[pop.grade[student]]

    mcas = cal.mcas.to_pydict()
    mean_lookup = {
        (s, g, sub): m
        for s, g, sub, m in zip(
            mcas["school_id"], mcas["grade"], mcas["subject"], mcas["avg_scaled_score"], strict=True
        )
        if m is not None
    }
    sgp_ok = np.isin(grade, ("04", "05", "06", "07", "08", "10"))
    parts = []
    for subject in ("ELA", "MATH"):
        target = np.array(
            [
                mean_lookup.get(
                    (school_ids[s], g, subject),
                    mean_lookup.get((school_ids[s], "AL", subject), 490.0),
                )
                for s, g in zip(school, grade, strict=True)
            ]
        )
        gap = np.zeros(len(student))
        gap += np.where(pop.swd[student], cal.gaps[(subject, "swd")], 0)
        gap += np.where(pop.ell[student], cal.gaps[(subject, "ell")], 0)
        gap += np.where(pop.econ_dis[student], cal.gaps[(subject, "econ_dis")], 0)
        race = np.asarray(RACE_CODES)[pop.race[student]]
        for code, key in _RACE_GAP_KEY.items():
            gap += np.where(race == code, cal.gaps[(subject, key)] * 0.5, 0)
        # Centre the subgroup effects within each school x grade so its mean stays calibrated.
        cell = school * len(GRADES) + pop.grade[student]
        _, inv = np.unique(cell, return_inverse=True)
        gap -= (np.bincount(inv, weights=gap) / np.bincount(inv))[inv]
        noise = _SCORE_SD * (0.6 * pop.ability[student] + 0.8 * rng.standard_normal(len(student)))
        score = np.clip(np.rint(target + gap + noise), 440, 560).astype(np.int16)
        level = _LEVELS[np.searchsorted(_CUTS, score, side="right")]
        sgp = np.clip(np.rint(50 + 28 * rng.standard_normal(len(student))), 1, 99)
        parts.append(
            pa.table(
                {
                    "student_id": pa.array(pop.student_id[student]),
                    "school_id": pa.array(school_ids[school]),
                    "school_year": pa.array(np.full(len(student), pop.school_year, np.int16)),
                    "subject": pa.array(np.full(len(student), subject, dtype=object), pa.string()),
                    "grade_tested": pa.array(grade, pa.string()),
                    "scaled_score": pa.array(score),
                    "achievement_level": pa.array(level, pa.string()),
                    "sgp": pa.array(sgp.astype(np.int16), mask=~sgp_ok),
                }
            )
        )
    return pa.concat_tables(parts)


_COURSES_MS = (
    ("ELA{g}", "English Language Arts {g}"),
    ("MAT{g}", "Mathematics {g}"),
    ("SCI{g}", "Science {g}"),
    ("SOC{g}", "Social Studies {g}"),
    ("PE{g}", "Physical Education"),
    ("ART{g}", "Visual Arts"),
)
_COURSES_HS = (
    ("ENG{g}", "English {g}"),
    ("MTH{g}", "Mathematics {g}"),
    ("SCI{g}", "Laboratory Science {g}"),
    ("HIS{g}", "History {g}"),
    ("WLG{g}", "World Language"),
    ("PE{g}", "Physical Education"),
)
_MARKS = np.array(["F", "D", "C-", "C", "C+", "B-", "B", "B+", "A-", "A"], dtype=object)
_TERMS = ("Q1", "Q2", "Q3", "Q4")


def course_grades_table(
    rng: np.random.Generator, pop: Population, school_ids: np.ndarray
) -> pa.Table:
    """Quarter marks for grades 6-12: six courses, four terms."""
    grades = np.asarray(GRADES)[pop.grade]
    sec = np.flatnonzero(np.isin(grades, ("06", "07", "08", "09", "10", "11", "12")))
    n_courses, n_terms = 6, len(_TERMS)
    per = n_courses * n_terms
    student = np.repeat(sec, per)
    course = np.tile(np.repeat(np.arange(n_courses), n_terms), len(sec))
    term = np.tile(np.arange(n_terms), len(sec) * n_courses)
    g = grades[student]
    hs = np.isin(g, ("09", "10", "11", "12"))
    code = np.empty(len(student), dtype=object)
    name = np.empty(len(student), dtype=object)
    for i in range(n_courses):
        for band, courses in ((hs, _COURSES_HS), (~hs, _COURSES_MS)):
            m = band & (course == i)
            code[m] = np.char.replace(courses[i][0], "{g}", g[m].astype(str)).astype(object)
            name[m] = np.char.replace(courses[i][1], "{g}", g[m].astype(str)).astype(object)
    z = 0.7 * pop.ability[student] + 0.7 * rng.standard_normal(len(student)) + 0.9
    mark = _MARKS[np.clip(np.rint(z * 2.2 + 4), 0, len(_MARKS) - 1).astype(int)]
    first_school = pop.school[student]
    return pa.table(
        {
            "student_id": pa.array(pop.student_id[student]),
            "school_id": pa.array(school_ids[first_school]),
            "school_year": pa.array(np.full(len(student), pop.school_year, np.int16)),
            "term": pa.array(np.asarray(_TERMS, dtype=object)[term], pa.string()),
            "course_code": pa.array(code, pa.string()),
            "course_name": pa.array(name, pa.string()),
            "mark": pa.array(mark, pa.string()),
        }
    )


_OFFENSES = np.array(
    [
        "FIGHTING",
        "ASSAULT",
        "THREAT",
        "BULLYING",
        "DISRUPTION",
        "DRUGS",
        "WEAPON",
        "THEFT",
        "VANDALISM",
        "HARASSMENT",
    ],
    dtype=object,
)
_OFFENSE_P = np.array([0.3, 0.12, 0.12, 0.08, 0.2, 0.06, 0.03, 0.04, 0.03, 0.02])
_ACTIONS = np.array(["ISS", "OSS", "EXP", "EMR"], dtype=object)
_ACTION_P = np.array([0.38, 0.56, 0.01, 0.05])


def discipline_table(rng: np.random.Generator, pop: Population, school_ids: np.ndarray) -> pa.Table:
    """Incidents leading to a removal: rarer in elementary grades, more often boys and SWD."""
    grade_rate = np.where(
        pop.grade >= GRADES.index("09"),
        0.07,
        np.where(pop.grade >= GRADES.index("06"), 0.09, 0.015),
    )
    rate = grade_rate * np.where(pop.gender == "M", 1.5, 0.6) * np.where(pop.swd, 1.8, 1.0)
    k = rng.poisson(rate)
    student = np.repeat(np.arange(pop.n), k)
    n = len(student)
    n_days = len(pop.days)
    # On a day the student was enrolled at the school of the first spell.
    first_last = np.where(pop.spell_exit[: pop.n] >= 0, pop.spell_exit[: pop.n], n_days - 1)
    entry = pop.spell_entry[: pop.n][student]
    span = np.maximum(first_last[student] - entry + 1, 1)
    day = entry + (rng.random(n) * span).astype(np.int64)
    offense = _OFFENSES[np.searchsorted(np.cumsum(_OFFENSE_P), rng.random(n) * _OFFENSE_P.sum())]
    action = _ACTIONS[np.searchsorted(np.cumsum(_ACTION_P), rng.random(n) * _ACTION_P.sum())]
    days = np.select(
        [action == "ISS", action == "OSS", action == "EXP"],
        [rng.integers(1, 3, n), rng.integers(1, 6, n), np.full(n, 90)],
        default=1,
    ).astype(np.float64)
    days[action == "EMR"] = 0.5
    ids = np.char.add("I", (100_000 + rng.permutation(n)).astype(str)) if n else np.array([])
    return pa.table(
        {
            "incident_id": pa.array(ids.astype(object), pa.string()),
            "student_id": pa.array(pop.student_id[student]),
            "school_id": pa.array(school_ids[pop.school[student]]),
            "incident_date": pa.array(pop.days[day], pa.date32()),
            "offense_code": pa.array(offense, pa.string()),
            "action": pa.array(action, pa.string()),
            "days_removed": pa.array(days),
        }
    )
