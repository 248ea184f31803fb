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
  night        the whole nightly DAG through Airflow (`datashare run`), all four tiers
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

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
    "night",
]
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


def bench_night(source: Path, env: dict[str, str]) -> dict:
    subprocess.run([DATASHARE, "lake", "up"], env=env, check=True, capture_output=True)
    subprocess.run([DATASHARE, "keys", "init"], env=env, check=True, capture_output=True)
    try:
        t = time.perf_counter()
        proc = subprocess.run(
            [DATASHARE, "run", "--source", str(source)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - t
    finally:
        subprocess.run([DATASHARE, "lake", "down"], env=env, check=False, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"night failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    rows = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "rows":
            rows[parts[0]] = int(parts[1].replace(",", ""))
    return {"seconds": round(seconds, 2), "published_rows": rows}


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
    if "night" in wanted:
        results["night"] = bench_night(source, env)
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
