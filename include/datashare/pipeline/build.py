"""Step 5: build every dataset of one tier from staging and write it as an unpublished release.

The release's files and manifest are written under `releases/<release_id>/` of the tier's
bucket; `LATEST` is not touched, so readers keep seeing the previous release until the gate
has passed and the publish step moves it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import duckdb

from datashare.keys import key_provider, token_key_name
from datashare.lake.client import connect
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import PIPELINE_BUCKET, release_prefix, validation_prefix
from datashare.pipeline.staging import load_sources, read_extract_record
from datashare.policy import load_policy
from datashare.privacy.tokenize import Tokenizer
from datashare.releases import Manifest, dataset_entry, write_dataset, write_manifest
from datashare.tiers.builder import build_dataset

__all__ = ["build_tier", "tokenizer_for"]

log = logging.getLogger(__name__)


def tokenizer_for(tier: int) -> Tokenizer:
    """The tier's tokenizer under the current key version (fails closed if the key is absent)."""
    secret = key_provider().current(token_key_name(tier))
    return Tokenizer(secret.secret, tier, secret.version)


def validation_summary(lake: Any, release_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """What validation found this night, for the manifest: per dataset, rows quarantined and
    warnings (rule and count), plus the source's own warnings. Counts only, never values."""
    out: dict[str, Any] = {}
    for dataset in sorted(record["datasets"]):
        doc = json.loads(
            lake.get_bytes(PIPELINE_BUCKET, f"{validation_prefix(release_id)}{dataset}.json")
        )
        out[dataset] = {
            "rows": doc["rows"],
            "quarantined": doc["quarantined"],
            "warnings": [
                {"rule": f["rule"], "rows": f["unexpected_count"]}
                for f in doc["findings"]
                if f["severity"] == "warning"
            ],
        }
    return {
        "datasets": out,
        "source_warnings": record.get("warnings", []),
        "missing_datasets": record.get("missing_datasets", []),
        "data_docs": f"s3://{PIPELINE_BUCKET}/{validation_prefix(release_id)}docs/index.html",
    }


def build_tier(*, release_id: str, tier: int) -> dict[str, Any]:
    policy = load_policy()
    spec = policy.tier(tier)
    lake = connect(PIPELINE)
    needs_token = any(c.treatment == "tokenize" for d in spec.datasets for c in d.columns)
    tokenizer = tokenizer_for(tier) if needs_token else None
    # A re-run of this step for the same release starts from a clean prefix (idempotent).
    lake.delete_prefix(spec.bucket, release_prefix(release_id))
    sources = load_sources(lake, release_id, {d.source for d in spec.datasets})
    con = duckdb.connect()
    for name, table in sources.items():
        con.register(name, table)
    datasets: dict[str, Any] = {}
    for ds in spec.datasets:
        built = build_dataset(ds, con, tokenizer)
        files = write_dataset(lake, spec.bucket, release_id, ds.name, built.table)
        datasets[ds.name] = dataset_entry(
            built.table, files, ds.description, ds.form, built.privacy
        )
        log.info("tier %d: built %s (%d rows)", tier, ds.name, built.table.num_rows)
    con.close()
    record = read_extract_record(lake, release_id)
    manifest = Manifest(
        release_id=release_id,
        tier=tier,
        bucket=spec.bucket,
        policy_version=policy.version,
        source_fingerprint=record["source_fingerprint"],
        datasets=datasets,
        extra={
            "tier_name": spec.name,
            "tier_title": spec.title,
            "policy_sha256": policy.digest,
            "validation": validation_summary(lake, release_id, record),
        },
    )
    key = write_manifest(lake, spec.bucket, manifest.to_json())
    return {
        "tier": tier,
        "bucket": spec.bucket,
        "manifest": key,
        "rows": {k: v["rows"] for k, v in datasets.items()},
    }
