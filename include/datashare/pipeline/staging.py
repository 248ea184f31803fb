"""The staging area of a release in the pipeline-only bucket: where steps hand data over."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from datashare.encryption import pipeline_keys
from datashare.lake.client import Lake
from datashare.lake.layout import PIPELINE_BUCKET, staging_prefix, validation_prefix
from datashare.lake.parquet_io import read_parquet_keys

__all__ = [
    "EXTRACT_RECORD",
    "load_sources",
    "read_extract_record",
    "read_staged",
    "validated_keys",
    "view_prefix",
]

EXTRACT_RECORD = "_extract.json"


def view_prefix(release_id: str, view: str) -> str:
    return f"{staging_prefix(release_id)}_views/{view}/"


def read_extract_record(lake: Lake, release_id: str) -> dict[str, Any]:
    """What extraction staged for this release: datasets, their parts and row counts."""
    return json.loads(lake.get_bytes(PIPELINE_BUCKET, staging_prefix(release_id) + EXTRACT_RECORD))


def read_staged(
    lake: Lake, release_id: str, dataset: str, columns: list[str] | None = None
) -> pa.Table:
    record = read_extract_record(lake, release_id)
    keys = record["datasets"][dataset]["keys"]
    return read_parquet_keys(lake, PIPELINE_BUCKET, keys, columns, decrypt=pipeline_keys(dataset))


def validated_keys(lake: Lake, release_id: str, dataset: str) -> list[str]:
    """Parts of a dataset as validated (quarantined rows removed); NotFound if not validated."""
    doc = json.loads(
        lake.get_bytes(PIPELINE_BUCKET, f"{validation_prefix(release_id)}{dataset}.json")
    )
    return list(doc["validated_keys"])


def load_sources(lake: Lake, release_id: str, names: set[str]) -> dict[str, pa.Table]:
    """Validated canonical datasets and derived views by name. Only validated data is ever
    built into a tier: a dataset without a validation outcome cannot be loaded."""
    from datashare.tiers.views import VIEWS

    out = {}
    for name in sorted(names):
        if name in VIEWS:
            keys = sorted(lake.list_keys(PIPELINE_BUCKET, view_prefix(release_id, name)))
        else:
            keys = validated_keys(lake, release_id, name)
        out[name] = read_parquet_keys(lake, PIPELINE_BUCKET, keys, decrypt=pipeline_keys(name))
    return out
