"""Query a tier with DuckDB as an entitled reader: one view per dataset, named after it.

    from datashare.sql import query
    query("SELECT grade, sum(students) FROM enrollment_totals GROUP BY grade", as_="tier1-reader")

The reader's own lake credentials fetch the release (LATEST unless asked for another) and only
the keys the reader is entitled to decrypt it:

- `release_key` tiers (1 and 2): DuckDB reads the encrypted Parquet directly from the lake
  (httpfs) once the release key is unwrapped and added with `PRAGMA add_parquet_key`;
- `per_file` tiers (3 and 4): files are decrypted with pyarrow (keys wrapped inside each file)
  and handed to DuckDB as Arrow tables; columns of a column group the reader holds no key for
  are left out, and datasets outside a research project's agreement are not offered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from datashare.encryption import entitled_kms, entitlements, reader_keys
from datashare.errors import ConfigError, KeyMissingError
from datashare.keys import column_group_key_name
from datashare.lake.client import Lake, connect
from datashare.lake.parquet_io import read_parquet_keys
from datashare.policy import Policy, load_policy
from datashare.releases import latest, read_manifest

__all__ = ["ReleaseView", "open_release", "query"]


def _tier_of(policy: Policy, identity: str) -> tuple[int, set[str] | None]:
    """The tier an identity reads, and the datasets it may see (None: all of the tier)."""
    for tier in policy.tiers:
        if identity in tier.readers:
            return tier.tier, None
    for project in policy.research_projects:
        if identity == project.identity:
            if not project.active():
                raise KeyMissingError(
                    f"the agreement of {project.name} expired on {project.expires}"
                )
            return project.tier, set(project.datasets)
    raise ConfigError(
        f"{identity!r} reads no tier (see the tier policy's readers and research_projects)"
    )


@dataclass
class ReleaseView:
    identity: str
    tier: int
    release_id: str
    manifest: dict[str, Any]
    con: duckdb.DuckDBPyConnection
    datasets: list[str] = field(default_factory=list)
    withheld_columns: dict[str, list[str]] = field(default_factory=dict)

    def query(self, sql: str) -> pa.Table:
        return self.con.sql(sql).to_arrow_table()


def _duckdb_s3(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    from duckdb_extensions import import_extension

    import_extension("httpfs", con=con)
    ep = lake.endpoint
    if ep.ca_bundle:
        con.execute(f"SET ca_cert_file = '{ep.ca_bundle}'")
    # CREATE SECRET takes no bound parameters; the generated keys are alphanumeric.
    con.execute(
        f"CREATE OR REPLACE SECRET datashare_lake (TYPE s3, KEY_ID '{lake.creds.access_key}', "
        f"SECRET '{lake.creds.secret_key}', REGION '{ep.region}', ENDPOINT '{ep.host_port}', "
        f"URL_STYLE 'path', USE_SSL {str(ep.scheme == 'https').lower()})"
    )


def open_release(
    identity: str, *, release_id: str | None = None, only: set[str] | None = None
) -> ReleaseView:
    """A DuckDB connection with the release's datasets as views (only `only`, if given)."""
    policy = load_policy()
    tier_no, allowed = _tier_of(policy, identity)
    tier = policy.tier(tier_no)
    lake = connect(identity)
    rid = release_id or latest(lake, tier.bucket)
    if rid is None:
        raise ConfigError(f"tier {tier_no} has no published release yet")
    manifest = read_manifest(lake, tier.bucket, rid)
    kms = entitled_kms(identity)
    held = entitlements(identity, policy)
    con = duckdb.connect()
    view = ReleaseView(identity, tier_no, rid, manifest, con)
    names = [
        n
        for n in manifest["datasets"]
        if (allowed is None or n in allowed) and (only is None or n in only)
    ]
    if manifest.get("encryption", {}).get("mode") == "release_key" and names:
        keys = reader_keys(kms, manifest, names[0])
        keys.duckdb_register(con, "datashare_release")
        _duckdb_s3(con, lake)
    for name in names:
        entry = manifest["datasets"][name]
        mode = manifest.get("encryption", {}).get("mode")
        if mode == "release_key":
            files = ", ".join(f"'s3://{tier.bucket}/{f['key']}'" for f in entry["files"])
            con.execute(
                f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{files}], '
                "encryption_config={footer_key: 'datashare_release'})"
            )
        else:
            groups = entry.get("column_groups") or {}
            hidden = sorted(
                c
                for g, cols in groups.items()
                if column_group_key_name(tier_no, g) not in held
                for c in cols
            )
            columns = [c["name"] for c in entry["columns"] if c["name"] not in hidden]
            table = read_parquet_keys(
                lake,
                tier.bucket,
                [f["key"] for f in entry["files"]],
                columns,
                decrypt=reader_keys(kms, manifest, name),
            )
            con.register(f"_arrow_{name}", table)
            con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_arrow_{name}"')
            if hidden:
                view.withheld_columns[name] = hidden
        view.datasets.append(name)
    return view


def query(sql: str, *, as_: str, release_id: str | None = None) -> pa.Table:
    """Run one SQL query over a tier's release as `as_`; only datasets the query names load."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql))
    view = open_release(as_, release_id=release_id, only=words)
    try:
        return view.query(sql)
    finally:
        view.con.close()
