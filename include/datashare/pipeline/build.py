"""Step 5: build every dataset of one tier from validated staging, as an unpublished release.

Files and the manifest go under `_staging/<release_id>/` of the tier's bucket, which readers
cannot see; the gate checks them there and the publish step promotes them. Aggregates of a tier
with small-cell rules are protected together with every aggregate another tier publishes from
the same night (tier-1 totals are constraints an attacker knows).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import duckdb

from datashare.encryption import reader_keys, release_writer, system_kms
from datashare.errors import ConfigError
from datashare.keys import key_provider, token_key_name
from datashare.lake.client import Lake, NotFound, connect
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import PIPELINE_BUCKET, release_prefix, validation_prefix
from datashare.lake.parquet_io import read_parquet_keys
from datashare.pipeline.budget import budget_charger
from datashare.pipeline.staging import load_sources, read_extract_record
from datashare.policy import load_policy
from datashare.privacy.tokenize import Tokenizer
from datashare.releases import (
    Manifest,
    dataset_entry,
    latest,
    physical_key,
    read_manifest,
    write_dataset,
    write_manifest,
)
from datashare.tiers.builder import BuildContext, BuiltDataset, build_dataset
from datashare.tiers.linked import protect_aggregates

__all__ = ["build_tier", "tokenizer_for", "validation_summary"]

log = logging.getLogger(__name__)


def tokenizer_for(tier: int) -> Tokenizer:
    """The tier's tokenizer under the current key version (fails closed if the key is absent)."""
    secret = key_provider().current(token_key_name(tier))
    return Tokenizer(secret.secret, tier, secret.version)


def validation_summary(lake: Lake, release_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """What validation found this night, for the manifest: per dataset, rows quarantined and
    warnings (rule and count), plus the source's own warnings. Counts only, never values."""
    out: dict[str, Any] = {}
    for dataset in sorted(record["datasets"]):
        key = f"{validation_prefix(release_id)}{dataset}.json"
        doc = json.loads(lake.get_bytes(PIPELINE_BUCKET, key))
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


def _key_rotation(lake: Lake, bucket: str, tokenizer: Tokenizer | None) -> dict[str, Any]:
    """Key versions that changed since the tier's current release (a planned re-tokenization)."""
    current = latest(lake, bucket)
    if tokenizer is None or current is None:
        return {}
    try:
        previous = read_manifest(lake, bucket, current)
    except NotFound:
        return {}
    versions = {
        t["key_version"]
        for ds in previous["datasets"].values()
        for t in (ds.get("tokenized") or {}).values()
    }
    if versions and versions != {tokenizer.version}:
        return {
            token_key_name(tokenizer.tier): {
                "from": max(versions),
                "to": tokenizer.version,
                "previous_release": current,
            }
        }
    return {}


def _previous_output(lake: Lake, bucket: str) -> Any:
    """Reader of the tier's currently published table of a dataset (for carry-forward)."""
    current = latest(lake, bucket)

    def previous(dataset: str) -> tuple[Any, dict[str, Any]] | None:
        if current is None:
            return None
        try:
            entry = read_manifest(lake, bucket, current)["datasets"][dataset]
        except (NotFound, KeyError):
            return None
        doc = read_manifest(lake, bucket, current)
        table = read_parquet_keys(
            lake,
            bucket,
            [f["key"] for f in entry["files"]],
            decrypt=reader_keys(system_kms(), doc, dataset),
        )
        return table, entry

    return previous


def build_tier(*, release_id: str, tier: int) -> dict[str, Any]:
    policy = load_policy()
    spec = policy.tier(tier)
    lake = connect(PIPELINE)
    if lake.list_keys(spec.bucket, release_prefix(release_id)):
        raise ConfigError(
            f"release {release_id} is already published in {spec.bucket}; "
            "published releases are immutable: run the night with a new id"
        )
    needs_token = any(c.treatment == "tokenize" for d in spec.datasets for c in d.columns)
    tokenizer = tokenizer_for(tier) if needs_token else None
    # A re-run of this step for the same release starts from a clean staging prefix.
    lake.delete_prefix(spec.bucket, physical_key(release_prefix(release_id), staged=True))
    needed = {
        d.source
        for t in policy.tiers
        for d in t.datasets
        if t.tier == tier or (d.aggregate is not None)
    }
    con = duckdb.connect()
    for name, table in load_sources(lake, release_id, needed).items():
        con.register(name, table)
    ctx = BuildContext(
        policy=policy,
        tokenizer=tokenizer,
        release_id=release_id,
        charge_budget=budget_charger(lake, release_id),
        previous=_previous_output(lake, spec.bucket),
    )
    built: dict[str, BuiltDataset] = {d.name: build_dataset(d, con, ctx) for d in spec.datasets}
    if any(d.aggregate and d.aggregate.min_cell for d in spec.datasets):
        # Aggregates other tiers publish tonight constrain what this tier's cells reveal.
        others = {
            (t.tier, d.name): build_dataset(d, con, ctx)
            for t in policy.tiers
            if t.tier != tier
            for d in t.datasets
            if d.aggregate
        }
        protect_aggregates(policy, tier, built, others)
    con.close()
    writer = release_writer(spec, release_id)
    datasets: dict[str, Any] = {}
    for ds in spec.datasets:
        table = built[ds.name].table
        files = write_dataset(
            lake, spec.bucket, release_id, ds.name, table, keys=writer.keys(ds.name), staged=True
        )
        privacy = dict(built[ds.name].privacy)
        if ds.column_groups:
            # column -> master key name, so a reader knows which columns need which key
            privacy["column_groups"] = {g: list(c) for g, c in ds.column_groups.items()}
        datasets[ds.name] = dataset_entry(table, files, ds.description, ds.form, privacy)
        log.info("tier %d: built %s (%d rows)", tier, ds.name, table.num_rows)
    record = read_extract_record(lake, release_id)
    extra: dict[str, Any] = {
        "tier_name": spec.name,
        "tier_title": spec.title,
        "policy_sha256": policy.digest,
        "validation": validation_summary(lake, release_id, record),
        "encryption": writer.manifest_entry(),
    }
    rotation = _key_rotation(lake, spec.bucket, tokenizer)
    if rotation:
        extra["key_rotation"] = rotation
    manifest = Manifest(
        release_id=release_id,
        tier=tier,
        bucket=spec.bucket,
        policy_version=policy.version,
        source_fingerprint=record["source_fingerprint"],
        datasets=datasets,
        extra=extra,
    )
    key = write_manifest(lake, spec.bucket, manifest.to_json(), staged=True)
    return {
        "tier": tier,
        "bucket": spec.bucket,
        "manifest": key,
        "rows": {k: v["rows"] for k, v in datasets.items()},
    }
