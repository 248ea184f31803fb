"""Derived views over the canonical staging model, as DuckDB SQL.

A view is a name, the canonical datasets it reads, the columns it yields (declared, so the tier
policy can be checked without running anything) and its SQL. Tier datasets name a canonical
dataset or one of these views in their `from:`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VIEWS", "View"]


@dataclass(frozen=True)
class View:
    name: str
    description: str
    depends_on: tuple[str, ...]
    columns: tuple[str, ...]
    sql: str


# DESE counts a student as chronically absent when absent for 10% or more of the days in
# membership, among students enrolled at least 20 days; others get NULL, not false.
_CHRONIC_THRESHOLD = 0.10
_MIN_DAYS_FOR_CHRONIC = 20

STUDENT_YEAR = View(
    name="student_year",
    description=(
        "One row per student and school year: the latest enrollment spell of the year (school, "
        "grade, entry/exit), demographics, program flags and the attendance summary."
    ),
    depends_on=("students", "enrollments", "programs", "attendance", "schools", "discipline"),
    columns=tuple(
        """
        student_id school_year school_id school_name grade entry_date exit_date exit_code
        enrollment_status first_name middle_name last_name birth_date gender race_ethnicity
        first_language home_address home_city home_zip directory_opt_out ell swd econ_dis s504
        homeless days_enrolled days_present days_absent attendance_rate chronically_absent
        incidents suspended days_removed
    """.split()
    ),
    sql=f"""
WITH latest AS (
    SELECT * FROM enrollments
    QUALIFY row_number() OVER (
        PARTITION BY student_id, school_year ORDER BY entry_date DESC, school_id) = 1
),
flags AS (
    SELECT student_id, school_year,
           bool_or(program = 'ELL') AS ell,
           bool_or(program = 'SPED') AS swd,
           bool_or(program = 'ECON_DIS') AS econ_dis,
           bool_or(program = 'S504') AS s504,
           bool_or(program = 'HOMELESS') AS homeless
    FROM programs GROUP BY student_id, school_year
),
days AS (
    SELECT student_id,
           CAST(year(attendance_date) + CASE WHEN month(attendance_date) >= 7 THEN 1 ELSE 0 END
                AS SMALLINT) AS school_year,
           count(*)::INTEGER AS days_enrolled,
           (count(*) FILTER (WHERE status IN ('P', 'T', 'D')))::INTEGER AS days_present
    FROM attendance GROUP BY ALL
),
removals AS (
    SELECT student_id,
           CAST(year(incident_date) + CASE WHEN month(incident_date) >= 7 THEN 1 ELSE 0 END
                AS SMALLINT) AS school_year,
           count(*)::INTEGER AS incidents,
           bool_or(action IN ('OSS', 'EXP', 'EMR')) AS suspended,
           sum(days_removed) AS days_removed
    FROM discipline GROUP BY ALL
)
SELECT e.student_id, e.school_year, e.school_id, sc.school_name, e.grade, e.entry_date,
       e.exit_date, e.exit_code,
       CASE WHEN e.exit_date IS NULL THEN 'active' ELSE 'exited' END AS enrollment_status,
       s.first_name, s.middle_name, s.last_name, s.birth_date, s.gender, s.race_ethnicity,
       s.first_language, s.home_address, s.home_city, s.home_zip, s.directory_opt_out,
       coalesce(f.ell, false) AS ell, coalesce(f.swd, false) AS swd,
       coalesce(f.econ_dis, false) AS econ_dis, coalesce(f.s504, false) AS s504,
       coalesce(f.homeless, false) AS homeless,
       coalesce(d.days_enrolled, 0) AS days_enrolled,
       coalesce(d.days_present, 0) AS days_present,
       coalesce(d.days_enrolled, 0) - coalesce(d.days_present, 0) AS days_absent,
       CASE WHEN d.days_enrolled > 0 THEN d.days_present / d.days_enrolled END AS attendance_rate,
       CASE WHEN d.days_enrolled >= {_MIN_DAYS_FOR_CHRONIC}
            THEN (d.days_enrolled - d.days_present) >= {_CHRONIC_THRESHOLD} * d.days_enrolled
       END AS chronically_absent,
       coalesce(r.incidents, 0) AS incidents,
       coalesce(r.suspended, false) AS suspended,
       coalesce(r.days_removed, 0) AS days_removed
FROM latest e
JOIN students s USING (student_id)
LEFT JOIN schools sc ON sc.school_id = e.school_id
LEFT JOIN flags f ON f.student_id = e.student_id AND f.school_year = e.school_year
LEFT JOIN days d ON d.student_id = e.student_id AND d.school_year = e.school_year
LEFT JOIN removals r ON r.student_id = e.student_id AND r.school_year = e.school_year
""",
)

ASSESSMENT_RESULTS = View(
    name="assessment_results",
    description=(
        "One row per student, year and subject tested, with the student's subgroups from "
        "student_year, for assessment statistics by subgroup."
    ),
    depends_on=("assessments", "student_year"),
    columns=(
        "student_id",
        "school_year",
        "school_id",
        "grade_tested",
        "subject",
        "scaled_score",
        "achievement_level",
        "meeting_or_exceeding",
        "sgp",
        "race_ethnicity",
        "gender",
        "ell",
        "swd",
        "econ_dis",
    ),
    sql="""
SELECT a.student_id, a.school_year, a.school_id, a.grade_tested, a.subject, a.scaled_score,
       a.achievement_level, a.achievement_level IN ('M', 'E') AS meeting_or_exceeding, a.sgp,
       y.race_ethnicity, y.gender, y.ell, y.swd, y.econ_dis
FROM assessments a
JOIN student_year y ON y.student_id = a.student_id AND y.school_year = a.school_year
""",
)

# In dependency order: a view may read views listed before it.
VIEWS: dict[str, View] = {v.name: v for v in (STUDENT_YEAR, ASSESSMENT_RESULTS)}
