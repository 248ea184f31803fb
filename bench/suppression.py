"""Time complementary suppression and its audit on BPS-sized linked tables.

    python bench/suppression.py [--scale 1.0] [--min-width 2 ...] [--repeat 3] [--engine NAME]

Builds, from the synthetic students (make_population, seed 2026), the three linked tables of a
release in their published long format: enrollment_by_subgroup (school x grade x subgroup),
attendance_by_subgroup (school x subgroup) and tier 1's enrollment_totals (school x grade, fixed
public). Then, per min_width and attacker (weak: suppressed cells are >= 1; strong: also knows
which are primary), times protect and a separate audit (best of --repeat) and prints cells,
primary and complementary suppressions, unprotectable cells, LPs and seconds.
"""

from __future__ import annotations

import argparse
import sys
import time

import duckdb
import numpy as np
import pyarrow as pa

from datashare.privacy.complementary import audit, backend
from datashare.privacy.linked_tables import LinkedTable, build_system
from datashare.synth.calibration import GRADES, calibration
from datashare.synth.population import RACE_CODES, make_population

SUBGROUPS = ("race_ethnicity", "gender", "ell", "swd", "econ_dis")
MIN_CELL = 10


def students(scale: float = 1.0, seed: int = 2026) -> pa.Table:
    """One row per synthetic student: school year, school, grade and subgroup columns."""
    cal = calibration()
    pop = make_population(np.random.default_rng(seed), cal, scale, 2026)
    return pa.table(
        {
            "school_year": np.full(pop.n, 2026, np.int16),
            "school_id": np.asarray(cal.school_ids)[pop.school],
            "grade": np.asarray(GRADES)[pop.grade],
            "race_ethnicity": np.asarray(RACE_CODES)[pop.race],
            "gender": pop.gender,
            "ell": pop.ell,
            "swd": pop.swd,
            "econ_dis": pop.econ_dis,
        }
    )


def _aggregate(con: duckdb.DuckDBPyConnection, by: list[str], subgroups: bool) -> pa.Table:
    # As datashare.tiers.builder publishes an aggregate, before suppression.
    keys = ", ".join(by)
    if not subgroups:
        sql = f"SELECT {keys}, count(*)::BIGINT AS students FROM s GROUP BY ALL ORDER BY ALL"
        return con.sql(sql).to_arrow_table()
    parts = [
        f"SELECT {keys}, 'all' AS subgroup, 'all' AS subgroup_value, count(*)::BIGINT AS students "
        "FROM s GROUP BY ALL"
    ]
    parts += [
        f"SELECT {keys}, '{sg}' AS subgroup, CAST({sg} AS VARCHAR) AS subgroup_value, "
        "count(*)::BIGINT AS students FROM s GROUP BY ALL"
        for sg in SUBGROUPS
    ]
    return con.sql(" UNION ALL ".join(parts) + " ORDER BY ALL").to_arrow_table()


def linked_tables(s: pa.Table, min_cell: int = MIN_CELL) -> list[LinkedTable]:
    con = duckdb.connect()
    con.register("s", s)
    school, grade = ["school_year", "school_id"], ["school_year", "school_id", "grade"]
    return [
        LinkedTable(
            "enrollment_by_subgroup",
            _aggregate(con, grade, True),
            by=tuple(grade),
            subgroups=True,
            min_cell=min_cell,
        ),
        LinkedTable(
            "attendance_by_subgroup",
            _aggregate(con, school, True),
            by=tuple(school),
            subgroups=True,
            min_cell=min_cell,
        ),
        LinkedTable(
            "enrollment_totals", _aggregate(con, grade, False), by=tuple(grade), fixed_public=True
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/suppression.py", description=__doc__)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--min-width", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--engine", default=None, help="LP backend (default: %(default)s = best)")
    args = p.parse_args(argv)

    t = time.perf_counter()
    tables = linked_tables(students(args.scale))
    build = time.perf_counter() - t
    t = time.perf_counter()
    system = build_system(tables)
    link = time.perf_counter() - t
    n, prim = len(system.values), system.primary
    print(f"scale {args.scale:g}, LP backend {args.engine or backend()}")
    per_table = ", ".join(
        f"{nm} {system.cells(nm).stop - system.cells(nm).start:,}" for nm in system.names
    )
    print(
        f"  tables built in {build:.2f} s, linked in {link:.2f} s: {n:,} cells ({per_table}), "
        f"{system.constraints.m:,} constraints"
    )
    exposed = audit(system.values, prim, system.constraints, min_width=1, engine=args.engine)
    print(
        f"  primary suppression alone: {int(prim.sum()):,} cells, {len(exposed.failing):,} "
        f"exactly recoverable ({exposed.seconds:.2f} s)"
    )
    head = (
        f"  {'attacker':<8} {'width':>5} {'compl.':>7} {'unprot.':>7} {'passes':>6} "
        f"{'protect LPs':>17} {'protect s':>9} {'audit LPs':>15} {'audit s':>7} {'fails':>5}"
    )
    print(head)
    for strong in (False, True):
        for w in args.min_width:
            kw = {"min_width": w, "min_cell": MIN_CELL if strong else None, "engine": args.engine}
            best_p = best_a = float("inf")
            for _ in range(args.repeat):
                r = system.protect(**kw)
                a = system.audit(r.suppressed, **kw)
                best_p, best_a = min(best_p, r.seconds), min(best_a, a.seconds)
            assert set(a.failing) == set(np.flatnonzero(r.unprotectable))
            print(
                f"  {'strong' if strong else 'weak':<8} {w:>5} {int(r.complementary.sum()):>7,} "
                f"{int(r.unprotectable.sum()):>7,} {r.passes:>6} "
                f"{r.lp_solves:>6,} / {r.lp_problems:>8,} {best_p:>9.2f} "
                f"{a.lp_solves:>5,} / {a.lp_problems:>7,} {best_a:>7.2f} {len(a.failing):>5,}"
            )
    print("  LPs: solver calls / per-cell problems they answered (blocks batched per call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
