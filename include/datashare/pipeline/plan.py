"""Step 1: decide the release id and fail closed before anything is written.

A run stops here, with nothing written, when a key it will need is missing or the lake is
unreachable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from datashare.encryption import master_keys
from datashare.errors import ConfigError
from datashare.keys import key_provider, token_key_name
from datashare.lake.client import connect
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import PIPELINE_BUCKET, check_release_id
from datashare.pipeline.runs import record_run
from datashare.policy import load_policy
from datashare.sources import ADAPTERS

__all__ = ["SOURCE_FORMATS", "derive_release_id", "plan_release", "required_keys"]

SOURCE_FORMATS = tuple(ADAPTERS)


def derive_release_id(logical_date: dt.datetime, run_id: str) -> str:
    """Sortable and unique per DAG run: logical time plus a short hash of the run id."""
    ts = logical_date.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{ts}-{hashlib.sha256(run_id.encode()).hexdigest()[:6]}"


def required_keys() -> list[str]:
    """Key names the current policy needs: a tokenization key per tokenizing tier, and the
    encryption master keys (pipeline zone, each tier, each tier's column groups)."""
    policy = load_policy()
    tokens = [
        token_key_name(t.tier)
        for t in policy.tiers
        if any(c.treatment == "tokenize" for d in t.datasets for c in d.columns)
    ]
    return tokens + master_keys(policy)


def plan_release(
    *,
    source: str,
    source_format: str,
    release_id: str | None,
    run_id: str,
    logical_date: dt.datetime,
    dag_id: str = "bps_nightly",
) -> dict[str, Any]:
    if source_format not in SOURCE_FORMATS:
        raise ConfigError(f"unknown source format {source_format!r}; known: {SOURCE_FORMATS}")
    if not source:
        raise ConfigError("no source given: set the `source` parameter (an export directory)")
    # A path must exist; URLs and `env:NAME` references (credentials stay out of the plan) are
    # checked by their adapter when extraction opens them.
    if (
        "://" not in source
        and not source.startswith(("env:", "conn:"))
        and not Path(source).exists()
    ):
        raise ConfigError(f"source {source} does not exist")
    provider = key_provider()
    # Fail closed before writing anything: every key the night will need must exist.
    versions = {name: provider.current(name).version for name in required_keys()}
    lake = connect(PIPELINE)
    policy = load_policy()
    for bucket in [t.bucket for t in policy.tiers] + [PIPELINE_BUCKET]:
        lake.check_bucket(bucket)
    rid = check_release_id(release_id) if release_id else derive_release_id(logical_date, run_id)
    # Every check passed: only now is anything written (the run -> release index).
    record_run(lake, dag_id, run_id, rid)
    return {
        "release_id": rid,
        "source": str(source),
        "source_format": source_format,
        "as_of": logical_date.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "policy_version": policy.version,
        "key_versions": versions,  # versions only; never key material
    }
