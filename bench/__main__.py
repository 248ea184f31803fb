"""Benchmarks of a BPS-sized night, reported as numbers (not asserted by unit tests).

    python -m bench [--scale 1.0] [--only NAME ...]

Runs in its own DATASHARE_HOME (`.local/bench`) with its own lake on its own ports, so it never
touches `make run`'s state. Results are printed as a table and written to
`bench/results/<UTC timestamp>.json`.

Benchmarks:
  synth        generate the export (rows/s, peak RSS)
  duckdb_csv   baseline: DuckDB converting the same CSVs to Parquet (the floor for a night)
  tokenize     keyed tokens for 1M distinct IDs
  night        the whole nightly DAG through Airflow (`datashare run`), all four tiers
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOME = REPO / ".local" / "bench"
DATASHARE = str(Path(sys.executable).parent / "datashare")


def _timed(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS of the child (MiB) and stdout of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return seconds, peak // 1024, proc.stdout


def bench_synth(scale: float, env: dict[str, str]) -> dict:
    out = HOME / f"source-{scale:g}"
    seconds, rss, _ = _timed([DATASHARE, "synth", "--out", str(out), "--scale", str(scale)], env)
    manifest = json.loads((out / "manifest.json").read_text())
    rows = sum(f["rows"] for f in manifest["files"])
    size = sum(f["bytes"] for f in manifest["files"])
    return {
        "seconds": round(seconds, 2),
        "rows": rows,
        "rows_per_second": int(rows / seconds),
        "csv_megabytes": round(size / 1e6, 1),
        "peak_rss_mib": rss,
        "source": str(out),
    }


_DUCK_TYPES = {
    "string": "VARCHAR",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
}


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


def bench_tokenize() -> dict:
    import numpy as np
    import pyarrow as pa

    from datashare.privacy.tokenize import Tokenizer

    ids = pa.array(np.arange(10_000_000, 11_000_000).astype(str))
    tok = Tokenizer(os.urandom(32), 4, 1)
    tok.tokenize(ids.slice(0, 1000))
    t = time.perf_counter()
    tok.tokenize(ids)
    seconds = time.perf_counter() - t
    return {
        "ids": len(ids),
        "seconds": round(seconds, 3),
        "ids_per_second": int(len(ids) / seconds),
    }


def bench_night(source: Path, env: dict[str, str]) -> dict:
    subprocess.run([DATASHARE, "lake", "up"], env=env, check=True, capture_output=True)
    subprocess.run([DATASHARE, "keys", "init"], env=env, check=True, capture_output=True)
    try:
        seconds, rss, out = _timed([DATASHARE, "run", "--source", str(source)], env)
    finally:
        subprocess.run([DATASHARE, "lake", "down"], env=env, check=False, capture_output=True)
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "rows":
            rows[parts[0]] = int(parts[1].replace(",", ""))
    return {"seconds": round(seconds, 2), "peak_rss_mib": rss, "published_rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument(
        "--only", nargs="*", default=None, choices=["synth", "duckdb_csv", "tokenize", "night"]
    )
    args = p.parse_args(argv)
    HOME.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATASHARE_HOME": str(HOME),
        "DATASHARE_LAKE_PORT": os.environ.get("DATASHARE_BENCH_PORT", "28333"),
    }
    wanted = set(args.only or ["synth", "duckdb_csv", "tokenize", "night"])
    results: dict = {
        "scale": args.scale,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    source = HOME / f"source-{args.scale:g}"
    if "synth" in wanted or not (source / "manifest.json").exists():
        results["synth"] = bench_synth(args.scale, env)
    if "duckdb_csv" in wanted:
        results["duckdb_csv"] = bench_duckdb_csv(source)
    if "tokenize" in wanted:
        results["tokenize"] = bench_tokenize()
    if "night" in wanted:
        results["night"] = bench_night(source, env)
        if "duckdb_csv" in results:
            results["night"]["x_duckdb_csv"] = round(
                results["night"]["seconds"] / results["duckdb_csv"]["seconds"], 1
            )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = REPO / "bench" / "results" / f"{stamp}-scale{args.scale:g}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    for name, r in results.items():
        if isinstance(r, dict) and "seconds" in r:
            extra = {k: v for k, v in r.items() if k not in ("seconds", "source")}
            print(f"{name:<12} {r['seconds']:>8.2f} s  {extra}")
    print(f"results: {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
