"""`datashare`: the command line for operators, analysts and `make run`.

The CLI only parses arguments, calls the package and prints; every rule lives elsewhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from pathlib import Path

from datashare.errors import DataShareError

__all__ = ["main"]


def _cmd_synth(args: argparse.Namespace) -> int:
    from datashare.synth.export import write_export

    s = write_export(Path(args.out), scale=args.scale, seed=args.seed, school_year=args.school_year)
    print(
        f"Synthetic BPS export (scale {args.scale}, seed {args.seed}) in {s.directory}: "
        f"{s.rows['students']:,} students, {s.total_rows:,} rows, "
        f"{s.bytes / 1e6:,.1f} MB in {s.seconds:.1f}s"
    )
    for name, rows in s.rows.items():
        print(f"  {name:<14} {rows:>12,} rows")
    return 0


def _summary(release_id: str) -> list[str]:
    from datashare.lake.client import connect
    from datashare.lake.identities import PIPELINE
    from datashare.policy import load_policy
    from datashare.releases import latest, read_manifest

    lake = connect(PIPELINE)
    lines = []
    for tier in load_policy().tiers:
        current = latest(lake, tier.bucket)
        doc = read_manifest(lake, tier.bucket, current) if current else None
        state = "published" if current == release_id else f"NOT published (LATEST={current})"
        lines.append(
            f"Tier {tier.tier} {tier.title}: s3://{tier.bucket} release {current} [{state}]"
        )
        for name, ds in (doc or {}).get("datasets", {}).items():
            facts = [f"{k}={ds[k]}" for k in ("min_cell", "k", "epsilon") if k in ds]
            lines.append(f"    {name:<24} {ds['rows']:>10,} rows  {' '.join(facts)}")
    return lines


def _cmd_run(args: argparse.Namespace) -> int:
    from datashare.lake import server
    from datashare.local_airflow import run_nightly

    source = args.source if "://" in args.source else str(Path(args.source).resolve())
    if not server.status().running and not args.external_lake:
        print(
            "The embedded lake is not running: start it with `datashare lake up`.", file=sys.stderr
        )
        return 2
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    release_id = args.release_id or now.strftime("%Y%m%dT%H%M%SZ")
    print(f"Running the nightly pipeline through Airflow: source {source}, release {release_id}")
    result = run_nightly(
        source,
        release_id,
        logical_date=now.isoformat(),
        source_format=args.source_format,
        progress=sys.stdout,
    )
    if not result.ok:
        print(f"\nFAILED: the nightly run did not publish (log: {result.log}).", file=sys.stderr)
        for f in result.failures:
            print(f"  {f.get('step')}: {f.get('message')}", file=sys.stderr)
        if not result.failures:
            print("  see the log for the failing task", file=sys.stderr)
        print("Readers still see the previous release of every tier.", file=sys.stderr)
        return 1
    lines = _summary(release_id)
    print("\n" + "\n".join(lines))
    return 0 if all("[published]" in ln for ln in lines if ln.startswith("Tier")) else 1


def _cmd_lake(args: argparse.Namespace) -> int:
    from datashare.lake import server

    if args.lake_cmd == "init":
        print(f"Lake configuration, identities and TLS certificates in {server.init()}")
    elif args.lake_cmd == "buckets":
        created = server.ensure_buckets()
        print(f"Created buckets: {', '.join(created)}" if created else "All buckets exist.")
    elif args.lake_cmd == "up":
        st = server.up()
        print(f"Lake running at {st.endpoint} (pid {st.pid}, data in {st.data_dir})")
    elif args.lake_cmd == "down":
        print("Lake stopped." if server.down() else "Lake was not running.")
    elif args.lake_cmd == "status":
        st = server.status()
        print(
            f"Lake {'running' if st.running else 'stopped'}"
            + (f" at {st.endpoint} (pid {st.pid})" if st.running else "")
        )
        return 0 if st.running else 3
    elif args.lake_cmd == "env":
        from datashare.lake.client import connect

        lake = connect(args.identity)
        ep = lake.endpoint
        env = {
            "AWS_ENDPOINT_URL": ep.url,
            "AWS_ACCESS_KEY_ID": lake.creds.access_key,
            "AWS_SECRET_ACCESS_KEY": lake.creds.secret_key,
            "AWS_DEFAULT_REGION": ep.region,
        }
        if ep.ca_bundle:
            env["AWS_CA_BUNDLE"] = str(ep.ca_bundle)
        print(f"# lake credentials of {args.identity}; keep them out of shared shells and logs")
        for k, v in env.items():
            print(f"export {k}={shlex.quote(v)}")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from datashare.keys import LocalKeyring, token_key_name
    from datashare.pipeline.plan import required_keys

    ring = LocalKeyring()
    if args.keys_cmd == "init":
        created = ring.ensure(required_keys())
        print(
            f"Keyring {ring.path}: created {', '.join(created) if created else 'nothing'}; "
            f"{len(ring.names())} keys present."
        )
    elif args.keys_cmd == "list":
        for name in ring.names():
            print(f"{name}: current version {ring.current(name).version}")
    elif args.keys_cmd == "rotate":
        name = token_key_name(args.tier)
        version = ring.rotate(name)
        print(
            f"{name}: now version {version}. The next release re-tokenizes tier {args.tier}; "
            "tokens of earlier releases will not match new ones."
        )
    return 0


def _cmd_policy(args: argparse.Namespace) -> int:
    from datashare.policy import load_policy
    from datashare.policy.render import render_tier

    policy = load_policy()
    tiers = [policy.tier(args.tier)] if args.tier else list(policy.tiers)
    print("\n\n".join(render_tier(policy, t) for t in tiers))
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    from datashare.lake.client import connect
    from datashare.lake.identities import PIPELINE
    from datashare.policy import load_policy
    from datashare.releases import latest, list_releases, list_staged, read_manifest, rollback

    tier = load_policy().tier(args.tier)
    lake = connect(PIPELINE)
    if args.release_cmd == "list":
        current = latest(lake, tier.bucket)
        for rid in list_releases(lake, tier.bucket):
            doc = read_manifest(lake, tier.bucket, rid)
            rows = sum(d["rows"] for d in doc["datasets"].values())
            mark = "*" if rid == current else " "
            print(
                f"{mark} {rid}  policy {doc['policy_version']}  {len(doc['datasets'])} "
                f"datasets  {rows:,} rows  created {doc['created_at']}"
            )
        for rid in list_staged(lake, tier.bucket):
            print(f"  {rid}  (staged, not published)")
    elif args.release_cmd == "show":
        rid = args.release_id or latest(lake, tier.bucket)
        if rid is None:
            print(f"tier {tier.tier} has no published release", file=sys.stderr)
            return 1
        doc = read_manifest(lake, tier.bucket, rid)
        if args.json:
            print(json.dumps(doc, indent=1))
        else:
            from datashare.report import render_markdown

            print(render_markdown(doc))
    elif args.release_cmd == "rollback":
        before, after = rollback(lake, tier.bucket, args.to)
        print(f"tier {tier.tier}: LATEST {before} -> {after}")
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from datashare.sql import query

    table = query(args.query, as_=args.identity, release_id=args.release_id)
    if args.format == "parquet":
        if not args.out:
            print("datashare sql: --format parquet needs --out FILE", file=sys.stderr)
            return 2
        pq.write_table(table, args.out)
        print(f"{table.num_rows:,} rows written to {args.out}", file=sys.stderr)
    elif args.format == "csv":
        sink = args.out or sys.stdout.buffer
        pacsv.write_csv(table, sink)
    else:
        import duckdb

        print(duckdb.from_arrow(table))  # a formatted box; long results are elided
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from datashare.local_airflow import serve_ui

    return serve_ui()


def _cmd_kanon(argv: list[str]) -> int:
    from datashare.privacy.kanon.cli import main as kanon_main

    return kanon_main(argv)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="datashare",
        description="BPS -> City of Boston data sharing pipeline, in four privacy tiers.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "synth",
        help="write a synthetic BPS export drop",
        description="Write a deterministic synthetic BPS nightly export "
        "(one CSV per dataset + manifest.json).",
    )
    s.add_argument("--out", required=True, help="directory to write (CSV files are replaced)")
    s.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="1.0 = the size of BPS (~51k students, ~9M attendance rows)",
    )
    s.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    s.add_argument(
        "--school-year",
        type=int,
        default=2026,
        help="spring year of the school year (2026 = 2025-26)",
    )
    s.add_argument(
        "--defects",
        metavar="NAME[,NAME...]",
        help="inject real-world export defects (see docs/validation.md; 'all' for "
        "every one); default: none",
    )
    s.set_defaults(func=_cmd_synth)

    r = sub.add_parser(
        "run",
        help="run the nightly pipeline through Airflow",
        description="Run the nightly DAG once with `airflow dags test` on an "
        "export drop; exit 0 only if every tier published.",
    )
    r.add_argument(
        "--source",
        required=True,
        help="the export: a directory, file or URL, as the source format expects",
    )
    r.add_argument(
        "--source-format", default="csv_drop", help="source adapter: csv_drop (default), ..."
    )
    r.add_argument("--release-id", help="release id (default: now, YYYYMMDDTHHMMSSZ)")
    r.add_argument(
        "--external-lake",
        action="store_true",
        help="do not require the embedded lake (DATASHARE_LAKE_ENDPOINT is set)",
    )
    r.set_defaults(func=_cmd_run)

    lk = sub.add_parser(
        "lake",
        help="the embedded S3 lake (SeaweedFS)",
        description="Start, stop or inspect the embedded lake; print an "
        "identity's connection settings.",
    )
    lsub = lk.add_subparsers(dest="lake_cmd", required=True, metavar="ACTION")
    lsub.add_parser("init", help="generate identities, keys and TLS without starting the lake")
    lsub.add_parser("buckets", help="create missing buckets on the configured endpoint")
    lsub.add_parser("up", help="start the lake (idempotent)")
    lsub.add_parser("down", help="stop the lake (idempotent)")
    lsub.add_parser("status", help="is the lake running? (exit 3 if not)")
    env = lsub.add_parser(
        "env",
        help="print export lines for an identity",
        description='Use as: eval "$(datashare lake env --as tier2-reader)"',
    )
    env.add_argument(
        "--as", dest="identity", required=True, help="pipeline, tier1-reader, ..., tier4-reader"
    )
    lk.set_defaults(func=_cmd_lake)

    k = sub.add_parser(
        "keys",
        help="tokenization keys (local keyring)",
        description="Manage the local keyring under .local/keys (0600).",
    )
    ksub = k.add_subparsers(dest="keys_cmd", required=True, metavar="ACTION")
    ksub.add_parser("init", help="create the keys the policy needs that do not exist yet")
    ksub.add_parser("list", help="list key names and current versions (never the keys)")
    rot = ksub.add_parser("rotate", help="add a new version of a tier's tokenization key")
    rot.add_argument("--tier", type=int, required=True)
    k.set_defaults(func=_cmd_keys)

    pol = sub.add_parser(
        "policy",
        help="show the tier policy",
        description="Print, for a human, what each tier receives and how.",
    )
    psub = pol.add_subparsers(dest="policy_cmd", required=True, metavar="ACTION")
    show = psub.add_parser("show", help="what a tier receives, in what form")
    show.add_argument("--tier", type=int, help="one tier (default: all)")
    pol.set_defaults(func=_cmd_policy)

    rel = sub.add_parser(
        "release",
        help="published releases of a tier",
        description="List, show (the release report) or roll back a tier's releases.",
    )
    rsub = rel.add_subparsers(dest="release_cmd", required=True, metavar="ACTION")
    for name, text in (
        ("list", "releases of the tier, newest last (* = LATEST)"),
        ("show", "the release report of a release (default: LATEST)"),
        ("rollback", "point LATEST back at an earlier release"),
    ):
        r_ = rsub.add_parser(name, help=text)
        r_.add_argument("--tier", type=int, required=True)
        if name == "show":
            r_.add_argument("--release-id")
            r_.add_argument("--json", action="store_true", help="the manifest as JSON")
        if name == "rollback":
            r_.add_argument("--to", help="release id (default: the one before LATEST)")
    rel.set_defaults(func=_cmd_release)

    q = sub.add_parser(
        "sql",
        help="query a tier with DuckDB as one of its readers",
        description="Run SQL over a tier's release (LATEST by default) as an "
        "entitled reader: one view per dataset, named after it. "
        "Only the keys the reader holds are used.",
    )
    q.add_argument(
        "--as", dest="identity", required=True, help="tierN-reader or research-<project>"
    )
    q.add_argument("--release-id", help="a published release (default: LATEST)")
    q.add_argument("--format", choices=["table", "csv", "parquet"], default="table")
    q.add_argument("--out", help="output file (required for parquet; csv defaults to stdout)")
    q.add_argument("query", help='e.g. "SELECT * FROM enrollment_totals LIMIT 5"')
    q.set_defaults(func=_cmd_sql)

    ui = sub.add_parser(
        "ui",
        help="the Airflow UI and scheduler on 127.0.0.1:8080",
        description="Run `airflow standalone` on the embedded Airflow home "
        "(manual runs, backfills, logs) until Ctrl-C.",
    )
    ui.set_defaults(func=_cmd_ui)

    sub.add_parser("kanon", help="k-anonymize a CSV (see `datashare kanon --help`)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "kanon":
        return _cmd_kanon(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DataShareError as exc:
        print(f"datashare: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
