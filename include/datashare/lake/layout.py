"""Object-key layout of the lake: the contract BI tools and auditors rely on.

Tier buckets come from the tier policy. Inside each:

    _staging/<release_id>/...                            built, not yet published (pipeline-only)
    releases/<release_id>/<dataset>/part-0000.parquet   immutable once published
    releases/<release_id>/_manifest.json                 written after every data file
    releases/<release_id>/_report.html, _report.md       the human-readable release report
    LATEST                                               the current release id, written last

The pipeline-only bucket holds everything readers must never see:

    raw/<release_id>/<file>            the source export, unchanged, checksummed
    staging/<release_id>/<dataset>/... canonical staging Parquet
    validation/<release_id>/...        validation results and Data Docs
    quarantine/<release_id>/<dataset>/ rows removed by quarantine rules, with the rules broken
    state/<source_format>.json         source state of the last successful night (watermarks)
"""

from __future__ import annotations

import re

from datashare.errors import ConfigError

__all__ = [
    "LATEST_KEY",
    "MANIFEST_NAME",
    "PIPELINE_BUCKET",
    "STAGING_ROOT",
    "check_release_id",
    "dataset_prefix",
    "is_release_id",
    "manifest_key",
    "quarantine_prefix",
    "raw_prefix",
    "release_prefix",
    "source_state_key",
    "staging_prefix",
    "validation_prefix",
]

PIPELINE_BUCKET = "bps-pipeline"
LATEST_KEY = "LATEST"
STAGING_ROOT = "_staging/"
MANIFEST_NAME = "_manifest.json"

# Release ids sort by time: 20261125T020000Z, optionally with a suffix for same-second runs.
_RELEASE_ID = re.compile(r"^\d{8}T\d{6}Z(-[a-z0-9]{1,16})?$")


def is_release_id(name: str) -> bool:
    return bool(_RELEASE_ID.match(name))


def check_release_id(release_id: str) -> str:
    if not _RELEASE_ID.match(release_id):
        raise ConfigError(f"release id {release_id!r} is not of the form YYYYMMDDTHHMMSSZ[-suffix]")
    return release_id


def release_prefix(release_id: str) -> str:
    return f"releases/{check_release_id(release_id)}/"


def dataset_prefix(release_id: str, dataset: str) -> str:
    return f"{release_prefix(release_id)}{dataset}/"


def manifest_key(release_id: str) -> str:
    return release_prefix(release_id) + MANIFEST_NAME


def raw_prefix(release_id: str) -> str:
    return f"raw/{check_release_id(release_id)}/"


def staging_prefix(release_id: str) -> str:
    return f"staging/{check_release_id(release_id)}/"


def validation_prefix(release_id: str) -> str:
    return f"validation/{check_release_id(release_id)}/"


def source_state_key(source_format: str) -> str:
    return f"state/{source_format}.json"


def quarantine_prefix(release_id: str) -> str:
    return f"quarantine/{check_release_id(release_id)}/"
