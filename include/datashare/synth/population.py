"""Synthetic students, their enrollment spells and program participation, column-wise.

Counts per school and grade follow DESE's October enrollment (scaled); race, gender and program
rates follow each school's DESE profile exactly (counts, not draws), with within-school
associations (English learners more often Hispanic or Asian, disabilities more often identified
in boys) deciding which students carry a flag.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from datashare.synth.calendar import school_days
from datashare.synth.calibration import GRADES, RACES, Calibration
from datashare.synth.names import (
    FIRST_NAMES,
    LANGUAGES,
    LAST_NAMES,
    STREETS,
    ZIP_NEIGHBOURHOODS,
    ZIP_WEIGHTS,
)

__all__ = ["Population", "make_population"]

RACE_CODES = tuple(RACES)
# Relative propensities by race/ethnicity (RACE_CODES order); each school's rate is preserved.
_ELL_BY_RACE = np.array([0.8, 1.5, 1.7, 0.35, 1.0, 1.0, 0.5])
_ECON_BY_RACE = np.array([1.2, 1.0, 1.25, 0.45, 1.1, 1.0, 0.9])
_SWD_BY_GENDER = {"F": 0.65, "M": 1.35, "N": 1.0}
_NONBINARY_SHARE = 0.002
_OPT_OUT_SHARE = 0.03
_MIDYEAR_ENTRY = 0.06
_LEAVERS = 0.04
_TRANSFERS = 0.03
_S504_SHARE = 0.025
_HOMELESS_SHARE = 0.045
# Typical age on September 1 by grade; SP (post-12 special education) is 18-21.
_AGE = {g: 4 + i for i, g in enumerate(GRADES[:-1])}


@dataclass
class Population:
    """Students (one row each) and enrollment spells, as numpy columns."""

    school_year: int
    days: np.ndarray  # the 180 school days
    # students
    student_id: np.ndarray
    sasid: np.ndarray
    school: np.ndarray  # index into calibration schools (first spell)
    grade: np.ndarray  # index into GRADES
    race: np.ndarray  # index into RACE_CODES
    gender: np.ndarray  # 'F' / 'M' / 'N'
    ell: np.ndarray
    swd: np.ndarray
    econ_dis: np.ndarray
    s504: np.ndarray
    homeless: np.ndarray
    ability: np.ndarray  # latent standard-normal achievement, drives scores and marks
    students: pa.Table
    # spells (a student has one, or two when transferred within BPS)
    spell_student: np.ndarray  # index into students
    spell_school: np.ndarray
    spell_entry: np.ndarray  # index into days
    spell_exit: np.ndarray  # index into days, inclusive; -1 = still enrolled
    spell_exit_code: np.ndarray  # '' when still enrolled

    @property
    def n(self) -> int:
        return len(self.student_id)


def _counts(rng: np.random.Generator, enrollment: np.ndarray, scale: float) -> np.ndarray:
    """Students per school x grade: exact at scale 1, stochastic rounding otherwise."""
    x = enrollment * scale
    base = np.floor(x)
    return (base + (rng.random(x.shape) < (x - base))).astype(np.int64)


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a (n, k) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return (u[:, None] > cum).sum(axis=1)


def _exact_share(
    rng: np.random.Generator, school_rate: np.ndarray, school: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """Flag round(rate x size) students in each school, chosen with probability proportional
    to `weight` (Efraimidis-Spirakis keys: u^(1/w), the largest k win).

    Exact counts rather than independent draws: a 200-student school's rate would otherwise
    wander by +/-3 points, and DESE's per-school rates are what the generator is calibrated to.
    """
    n_s = len(school_rate)
    size = np.bincount(school, minlength=n_s)
    want = np.rint(np.nan_to_num(school_rate) * size).astype(np.int64)
    key = np.log(rng.random(len(school))) / np.maximum(weight, 1e-9)
    order = np.lexsort((-key, school))  # by school, best key first
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    rank = np.empty(len(school), dtype=np.int64)
    rank[order] = np.arange(len(school)) - start[school[order]]
    return rank < want[school]


def _unique_ids(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    """n distinct integers in [low, high), without materializing the whole range."""
    ids = np.unique(rng.integers(low, high, size=int(n * 1.2) + 16))
    while len(ids) < n:
        ids = np.unique(np.concatenate([ids, rng.integers(low, high, size=n)]))
    return rng.permutation(rng.choice(ids, size=n, replace=False))


def _pick(rng: np.random.Generator, vocab: tuple[str, ...], n: int) -> np.ndarray:
    return np.asarray(vocab, dtype=object)[rng.integers(0, len(vocab), n)]


def _names(
    rng: np.random.Generator, gender: np.ndarray, race: np.ndarray
) -> tuple[np.ndarray, ...]:
    n = len(gender)
    first = np.empty(n, dtype=object)
    middle = np.empty(n, dtype=object)
    for g, names in FIRST_NAMES.items():
        idx = np.flatnonzero(gender == g)
        first[idx] = _pick(rng, names, len(idx))
        pool = FIRST_NAMES["F" if g == "F" else "M"]
        middle[idx] = _pick(rng, pool, len(idx))
    middle[rng.random(n) < 0.4] = None
    last = np.empty(n, dtype=object)
    for r, code in enumerate(RACE_CODES):
        idx = np.flatnonzero(race == r)
        last[idx] = _pick(rng, LAST_NAMES[code], len(idx))
    # About 8% of Boston students carry two surnames.
    two = rng.random(n) < 0.08
    last[two] = last[two] + "-" + _pick(rng, LAST_NAMES["HL"] + LAST_NAMES["AA"], int(two.sum()))
    return first, middle, last


def _addresses(
    rng: np.random.Generator, school_zip: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(school_zip)
    zips = np.array(list(ZIP_WEIGHTS))
    w = np.array(list(ZIP_WEIGHTS.values()))
    home = zips[_categorical(rng, np.broadcast_to(w / w.sum(), (n, len(w))))]
    near = (rng.random(n) < 0.7) & np.isin(school_zip, zips)
    home[near] = school_zip[near]
    number = rng.integers(1, 300, n).astype(str)
    street = _pick(rng, STREETS, n)
    apt = rng.random(n) < 0.35
    address = np.char.add(np.char.add(number, " "), street.astype(str)).astype(object)
    address[apt] = address[apt] + " Apt " + rng.integers(1, 40, int(apt.sum())).astype(str)
    city = np.array([ZIP_NEIGHBOURHOODS[z] for z in zips])[np.searchsorted(zips, home)]
    return address, city.astype(object), home.astype(object)


def _birth_dates(rng: np.random.Generator, grade: np.ndarray, school_year: int) -> np.ndarray:
    fall = school_year - 1
    age = np.array([_AGE.get(g, 18) for g in GRADES])[grade]
    sp = grade == GRADES.index("SP")
    age[sp] += rng.integers(0, 4, int(sp.sum()))
    # Retained students are a year older; retention accumulates through high school.
    retained = rng.random(len(grade)) < np.where(grade >= GRADES.index("09"), 0.12, 0.05)
    age = age + retained
    sept1 = np.datetime64(dt.date(fall, 9, 1), "D")
    # Born between Sept 2 (age+1 years before) and Sept 1 (age years before).
    latest = sept1 - (age * 365.25).astype("timedelta64[D]")
    return latest - rng.integers(0, 365, len(grade)).astype("timedelta64[D]")


def make_population(
    rng: np.random.Generator, cal: Calibration, scale: float, school_year: int
) -> Population:
    counts = _counts(rng, cal.enrollment, scale)
    n_schools, n_grades = counts.shape
    school = np.repeat(np.repeat(np.arange(n_schools), n_grades), counts.ravel())
    grade = np.repeat(np.tile(np.arange(n_grades), n_schools), counts.ravel())
    n = len(school)

    race = _categorical(rng, cal.race_share[school])
    male = rng.random(n) < cal.rates["male"][school]
    gender = np.where(male, "M", "F").astype(object)
    gender[rng.random(n) < _NONBINARY_SHARE] = "N"

    ell = _exact_share(rng, cal.rates["ell"], school, _ELL_BY_RACE[race])
    swd_w = np.vectorize(_SWD_BY_GENDER.get)(gender).astype(float)
    swd = _exact_share(rng, cal.rates["swd"], school, swd_w)
    econ = _exact_share(rng, cal.rates["econ_dis"], school, _ECON_BY_RACE[race])
    s504 = (~swd) & (rng.random(n) < _S504_SHARE)
    homeless = rng.random(n) < np.where(econ, _HOMELESS_SHARE / 0.7, _HOMELESS_SHARE * 0.3)

    # First language: every EL speaks another language at home; among others, enough do to meet
    # the school's "first language not English" rate.
    fl_rate = cal.rates["first_lang_not_eng"][school]
    ell_rate = cal.rates["ell"][school]
    other_lang = ell | (rng.random(n) < np.clip((fl_rate - ell_rate) / (1 - ell_rate + 1e-9), 0, 1))
    language = np.full(n, "English", dtype=object)
    for r, code in enumerate(RACE_CODES):
        idx = np.flatnonzero(other_lang & (race == r))
        langs, w = zip(*LANGUAGES[code], strict=True)
        choice = _categorical(rng, np.broadcast_to(np.array(w), (len(idx), len(w))))
        language[idx] = np.asarray(langs, dtype=object)[choice]

    # Latent achievement: associated with programs as the published gaps are (rescaled later).
    ability = rng.standard_normal(n)

    first, middle, last = _names(rng, gender, race)
    school_zip = np.asarray(cal.schools.column("zip").to_pylist(), dtype=object)
    address, city, zips = _addresses(rng, np.where(school_zip == None, "", school_zip)[school])  # noqa: E711
    dob = _birth_dates(rng, grade, school_year)

    student_id = _unique_ids(rng, n, 100_000, 10_000_000)
    sasid = _unique_ids(rng, n, 1_000_000_000, 9_999_999_999)

    days = school_days(school_year)
    n_days = len(days)
    # Spells: everyone starts on day 0 unless a mid-year entrant; some leave; some transfer.
    entry = np.zeros(n, dtype=np.int64)
    late = rng.random(n) < _MIDYEAR_ENTRY
    entry[late] = rng.integers(10, n_days - 10, int(late.sum()))
    exit_ = np.full(n, -1, dtype=np.int64)
    code = np.full(n, "", dtype=object)
    u = rng.random(n)
    leaver = u < _LEAVERS
    transfer = (u >= _LEAVERS) & (u < _LEAVERS + _TRANSFERS)
    moving = leaver | transfer
    exit_[moving] = np.minimum(
        entry[moving] + rng.integers(5, n_days, int(moving.sum())), n_days - 2
    )
    hs = grade >= GRADES.index("09")
    code[leaver] = np.where(hs[leaver] & (rng.random(int(leaver.sum())) < 0.3), "D", "L")
    code[transfer] = "T"
    grad = (grade == GRADES.index("12")) & ~moving
    exit_[grad] = n_days - 1
    code[grad] = "G"

    # The receiving school of a transfer serves the same grade.
    t_idx = np.flatnonzero(transfer)
    serves = counts[:, grade[t_idx]].T > 0  # (n_transfers, n_schools)
    serves[np.arange(len(t_idx)), school[t_idx]] = False
    has_other = serves.any(axis=1)
    dest = _categorical(rng, serves.astype(float) + 1e-12)
    t_idx, dest = t_idx[has_other], dest[has_other]
    code[transfer & ~np.isin(np.arange(n), t_idx)] = "L"

    spell_student = np.concatenate([np.arange(n), t_idx])
    spell_school = np.concatenate([school, dest])
    spell_entry = np.concatenate([entry, exit_[t_idx] + 1])
    spell_exit = np.concatenate([exit_, np.full(len(t_idx), -1)])
    spell_code = np.concatenate([code, np.full(len(t_idx), "", dtype=object)])

    students = pa.table(
        {
            "student_id": pa.array(student_id.astype(str)),
            "sasid": pa.array(sasid.astype(str)),
            "first_name": pa.array(first, pa.string()),
            "middle_name": pa.array(middle, pa.string()),
            "last_name": pa.array(last, pa.string()),
            "birth_date": pa.array(dob, pa.date32()),
            "gender": pa.array(gender, pa.string()),
            "race_ethnicity": pa.array(np.asarray(RACE_CODES, dtype=object)[race], pa.string()),
            "home_address": pa.array(address, pa.string()),
            "home_city": pa.array(city, pa.string()),
            "home_zip": pa.array(zips, pa.string()),
            "first_language": pa.array(language, pa.string()),
            "directory_opt_out": pa.array(rng.random(n) < _OPT_OUT_SHARE),
        }
    )
    return Population(
        school_year=school_year,
        days=days,
        student_id=student_id.astype(str),
        sasid=sasid.astype(str),
        school=school,
        grade=grade,
        race=race,
        gender=gender,
        ell=ell,
        swd=swd,
        econ_dis=econ,
        s504=s504,
        homeless=homeless,
        ability=ability,
        students=students,
        spell_student=spell_student,
        spell_school=spell_school,
        spell_entry=spell_entry,
        spell_exit=spell_exit,
        spell_exit_code=spell_code,
    )


def enrollments_table(pop: Population, school_ids: np.ndarray) -> pa.Table:
    exit_idx = pop.spell_exit
    exit_dates = np.where(exit_idx >= 0, pop.days[np.maximum(exit_idx, 0)], np.datetime64("NaT"))
    codes = pop.spell_exit_code.copy()
    codes[codes == ""] = None
    return pa.table(
        {
            "student_id": pa.array(pop.student_id[pop.spell_student]),
            "school_id": pa.array(school_ids[pop.spell_school]),
            "school_year": pa.array(np.full(len(exit_idx), pop.school_year, np.int16)),
            "grade": pa.array(
                np.asarray(GRADES, dtype=object)[pop.grade[pop.spell_student]], pa.string()
            ),
            "entry_date": pa.array(pop.days[pop.spell_entry], pa.date32()),
            "exit_date": pa.array(exit_dates, pa.date32()),
            "exit_code": pa.array(codes, pa.string()),
        }
    )


_DISABILITY = (
    ("Specific Learning Disability", 0.34),
    ("Communication", 0.17),
    ("Autism", 0.13),
    ("Health", 0.1),
    ("Emotional", 0.09),
    ("Developmental Delay", 0.08),
    ("Intellectual", 0.05),
    ("Multiple", 0.02),
    ("Neurological", 0.01),
    ("Physical", 0.005),
    ("Sensory/Hearing", 0.003),
    ("Sensory/Vision", 0.002),
)
_PLACEMENT = (
    ("Full inclusion", 0.6),
    ("Partial inclusion", 0.18),
    ("Substantially separate", 0.2),
    ("Out of district", 0.02),
)
_ELP_LEVEL = (("1", 0.12), ("2", 0.2), ("3", 0.3), ("4", 0.25), ("5", 0.1), ("6", 0.03))


def programs_table(rng: np.random.Generator, pop: Population) -> pa.Table:
    start = pop.days[0]
    parts = []

    def spell(
        mask: np.ndarray, program: str, detail: np.ndarray | None, detail2: np.ndarray | None
    ) -> None:
        idx = np.flatnonzero(mask)
        k = len(idx)
        # Some identifications happen during the year.
        begin = np.where(rng.random(k) < 0.1, pop.days[rng.integers(0, len(pop.days), k)], start)
        parts.append(
            pa.table(
                {
                    "student_id": pa.array(pop.student_id[idx]),
                    "school_year": pa.array(np.full(k, pop.school_year, np.int16)),
                    "program": pa.array(np.full(k, program, dtype=object), pa.string()),
                    "detail": pa.array(
                        detail if detail is not None else np.full(k, None), pa.string()
                    ),
                    "detail2": pa.array(
                        detail2 if detail2 is not None else np.full(k, None), pa.string()
                    ),
                    "start_date": pa.array(begin, pa.date32()),
                    "end_date": pa.array(
                        np.full(k, np.datetime64("NaT"), "datetime64[D]"), pa.date32()
                    ),
                }
            )
        )

    def draw(table: tuple[tuple[str, float], ...], k: int) -> np.ndarray:
        labels, w = zip(*table, strict=True)
        return np.asarray(labels, dtype=object)[
            _categorical(rng, np.broadcast_to(np.array(w), (k, len(w))))
        ]

    k = int(pop.swd.sum())
    spell(pop.swd, "SPED", draw(_DISABILITY, k), draw(_PLACEMENT, k))
    k = int(pop.ell.sum())
    langs = pop.students.column("first_language").to_numpy(zero_copy_only=False)[pop.ell]
    spell(pop.ell, "ELL", draw(_ELP_LEVEL, k), langs)
    spell(pop.s504, "S504", None, None)
    spell(pop.homeless, "HOMELESS", None, None)
    spell(pop.econ_dis, "ECON_DIS", None, None)
    k = int(pop.econ_dis.sum())
    spell(pop.econ_dis, "FRL", np.where(rng.random(k) < 0.85, "F", "R").astype(object), None)
    return pa.concat_tables(parts)
