"""Benchmarks of a BPS-sized night, reported as numbers (not asserted by unit tests).

    python -m bench [--scale 1.0 ...] [--only NAME ...]

Runs in its own DATASHARE_HOME (`.local/bench`) with its own lake on its own ports, so it never
touches `make run`'s state. Each probe runs in its own process (bench/probes.py) so its peak
memory is its own. Results are printed and written to `bench/results/<UTC time>-scale<S>.json`.

Benchmarks (per scale):
  synth        generate the export (rows/s, peak RSS)
  duckdb_csv   baseline: DuckDB converting the same CSVs to Parquet (the floor for a night)
  csv_drop     the default adapter reading the whole export into canonical batches
  oneroster    the OneRoster adapter (on the export converted to OneRoster 1.2)
  sql          the SQL adapter (on the export loaded into SQLite), first-night full read
  edfi         the Ed-Fi adapter on the real Grand Bend sample (fixed size)
  validation   Great Expectations on attendance, vs. merely reading it
  tokenize     keyed tokens for 1M distinct IDs
  kanon        k-anonymity: ARX's adult cases (fixed size; same answers as ARX?) and tier 2's
               BPS-sized k-anonymous student-year file
  suppression  tier 2's aggregates with small-cell, complementary suppression and its LP audit
  encryption   tier 4's attendance written to / read from the lake with and without encryption
  night        the whole nightly DAG through Airflow (`datashare run`), all four tiers, with
               each task's seconds (steady state: the previous night was the same export)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
HOME = REPO / ".local" / "bench"
DATASHARE = str(Path(sys.executable).parent / "datashare")
ALL = [
    "synth",
    "duckdb_csv",
    "csv_drop",
    "oneroster",
    "sql",
    "edfi",
    "validation",
    "tokenize",
    "kanon",
    "suppression",
    "encryption",
    "night",
]
T = TypeVar("T")
_DUCK_TYPES = {
    "string": "VARCHAR",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
}


def probe(name: str, *args: str, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.probes", name, *args],
        cwd=REPO,
        env=env or os.environ,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"probe {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_duckdb_csv(source: Path) -> dict:
    """DuckDB converting the same CSVs to Parquet with the same column types: the floor."""
    import duckdb

    from datashare.sources.canonical import model

    con = duckdb.connect()
    target = HOME / "duckdb-parquet"
    target.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for ds in model().datasets.values():
        types = ", ".join(f"'{c.name}': '{_DUCK_TYPES[c.type_name]}'" for c in ds.columns)
        con.execute(
            f"COPY (SELECT * FROM read_csv('{source / (ds.name + '.csv')}', "
            f"header=true, columns={{{types}}})) TO "
            f"'{target / (ds.name + '.parquet')}' (FORMAT parquet, COMPRESSION zstd)"
        )
    return {"seconds": round(time.perf_counter() - t, 2)}


def with_lake(env: dict[str, str], fn: Callable[[], T]) -> T:
    """Run `fn` with the bench's own lake up (and keys in place), then stop the lake."""
    subprocess.run([DATASHARE, "lake", "up"], env=env, check=True, capture_output=True)
    subprocess.run([DATASHARE, "keys", "init"], env=env, check=True, capture_output=True)
    try:
        return fn()
    finally:
        subprocess.run([DATASHARE, "lake", "down"], env=env, check=False, capture_output=True)


def bench_night(source: Path, env: dict[str, str], new_source: bool) -> dict:
    """The steady-state night: the same export as the last good night in the bench lake (so the
    volume checks have their baseline). When the export was just regenerated the bench lake is
    emptied first (its nights came from another export and would fail the volume checks, as
    they should), and a first night is run and reported before the measured one."""
    if new_source or not (HOME / "lake" / "data").exists():
        subprocess.run([DATASHARE, "lake", "down"], env=env, check=False, capture_output=True)
        shutil.rmtree(HOME / "lake" / "data", ignore_errors=True)
        nights = 2
    else:
        nights = 1

    def night() -> tuple[subprocess.CompletedProcess, float]:
        t = time.perf_counter()
        proc = subprocess.run(
            [DATASHARE, "run", "--source", str(source)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"night failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return proc, seconds

    runs = with_lake(env, lambda: [night() for _ in range(nights)])
    proc, seconds = runs[-1]
    rows = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "rows":
            rows[parts[0]] = int(parts[1].replace(",", ""))
    tasks = task_seconds(HOME / "airflow" / "airflow.db")
    return {
        "seconds": round(seconds, 2),
        **({"first_night_seconds": round(runs[0][1], 2)} if nights == 2 else {}),
        "tasks_seconds": round(sum(tasks.values()), 2),
        "tasks": tasks,
        "published_rows": rows,
    }


def task_seconds(db: Path) -> dict[str, float]:
    """Each task's duration in the night just run, from Airflow's metadata DB (in run order)."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT task_id, map_index, rendered_map_index, duration FROM task_instance "
            "WHERE run_id = (SELECT run_id FROM dag_run ORDER BY id DESC LIMIT 1) "
            "ORDER BY start_date"
        ).fetchall()
    finally:
        con.close()
    return {
        (f"{task}[{label or index}]" if index >= 0 else task): round(duration or 0.0, 2)
        for task, index, label, duration in rows
    }


def run_scale(scale: float, wanted: set[str], env: dict[str, str]) -> dict:
    results: dict = {}
    source = HOME / f"source-{scale:g}"
    if "synth" in wanted or not (source / "manifest.json").exists():
        results["synth"] = probe("synth", str(source), str(scale))
    if "duckdb_csv" in wanted:
        results["duckdb_csv"] = bench_duckdb_csv(source)
    for name in ("csv_drop", "oneroster", "sql", "validation"):
        if name in wanted:
            results[name] = probe(name, str(source))
    if "edfi" in wanted:
        results["edfi"] = probe("edfi_grand_bend")
    if "tokenize" in wanted:
        results["tokenize"] = probe("tokenize")
    if "kanon" in wanted:
        results["kanon_adult"] = probe("kanon_adult")
        results["kanon_student_year"] = probe("kanon_student_year", str(source))
    if "suppression" in wanted:
        results["suppression"] = probe("suppression", str(source))
    if "encryption" in wanted:
        results["encryption"] = with_lake(env, lambda: probe("encryption", str(source), env=env))
    if "night" in wanted:
        results["night"] = bench_night(source, env, new_source="synth" in results)
        if "duckdb_csv" in results:
            results["night"]["x_duckdb_csv"] = round(
                results["night"]["seconds"] / results["duckdb_csv"]["seconds"], 1
            )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scale", type=float, nargs="+", default=[1.0])
    p.add_argument("--only", nargs="+", default=None, choices=ALL)
    args = p.parse_args(argv)
    HOME.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATASHARE_HOME": str(HOME),
        "DATASHARE_LAKE_PORT": os.environ.get("DATASHARE_BENCH_PORT", "28333"),
    }
    wanted = set(args.only or ALL)
    for scale in args.scale:
        results = {
            "scale": scale,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **run_scale(scale, wanted, env),
        }
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        path = REPO / "bench" / "results" / f"{stamp}-scale{scale:g}.json"
        path.write_text(json.dumps(results, indent=1) + "\n")
        print(f"scale {scale:g}")
        for name, r in results.items():
            if isinstance(r, dict) and "seconds" in r:
                extra = {k: v for k, v in r.items() if k != "seconds"}
                print(f"  {name:<11} {r['seconds']:>8.2f} s  {extra}")
        print(f"  results: {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
