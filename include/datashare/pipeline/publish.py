"""Step 7: publish. Promote each tier's gated release and move LATEST, then prune.

Runs only after the gate passed for every tier. For each tier the staged release is copied to
`releases/<release_id>/` (server-side), verified there, and only then named by `LATEST`: one
small PUT, so readers switch from one complete release to the next. Every step is idempotent:
after a crash or an outage, running publish again completes the night without duplicates. Then
the night becomes the baseline for the next one (source state, row counts).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from datashare.errors import GateError
from datashare.lake.client import Lake, NotFound, connect
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import PIPELINE_BUCKET, release_prefix, source_state_key
from datashare.pipeline.staging import read_extract_record
from datashare.policy import load_policy
from datashare.releases import latest, list_releases, promote, read_manifest, set_latest

__all__ = ["KEEP_RELEASES", "prune", "publish_release", "remember_source_state"]

log = logging.getLogger(__name__)

#: Releases kept per tier (the current one included); older ones are deleted after a publish.
KEEP_RELEASES = int(os.environ.get("DATASHARE_KEEP_RELEASES", "7"))


def _gated(lake: Lake, bucket: str, release_id: str) -> dict[str, Any]:
    """The release's manifest, staged or (after an interrupted publish) already promoted."""
    try:
        return read_manifest(lake, bucket, release_id, staged=True)
    except NotFound:
        return read_manifest(lake, bucket, release_id)


def publish_release(*, release_id: str, tiers: list[int]) -> dict[str, Any]:
    policy = load_policy()
    lake = connect(PIPELINE)
    # Check every tier first so that a missing gate stops all of them, not half.
    for number in tiers:
        tier = policy.tier(number)
        if not _gated(lake, tier.bucket, release_id).get("gate", {}).get("passed"):
            raise GateError(f"tier {number}: release {release_id} has not passed the gate")
    published = {}
    for number in sorted(tiers):
        tier = policy.tier(number)
        previous = latest(lake, tier.bucket)
        promote(lake, tier.bucket, release_id)
        if previous != release_id:
            set_latest(lake, tier.bucket, release_id)
        published[number] = {"bucket": tier.bucket, "release_id": release_id, "previous": previous}
        log.info("tier %d: LATEST %s -> %s", number, previous, release_id)
        pruned = prune(lake, tier.bucket, keep=KEEP_RELEASES, current=release_id)
        if pruned:
            log.info("tier %d: pruned %d old release(s)", number, len(pruned))
    remember_source_state(lake, release_id)
    return {"release_id": release_id, "tiers": published}


def prune(lake: Lake, bucket: str, *, keep: int, current: str) -> list[str]:
    """Delete all but the newest `keep` published releases (never the current one)."""
    releases = [r for r in list_releases(lake, bucket) if r != current]
    doomed = releases[: max(0, len(releases) - (keep - 1))]
    for rid in doomed:
        lake.delete_prefix(bucket, release_prefix(rid))
    return doomed


def remember_source_state(lake: Lake, release_id: str) -> None:
    """After a successful night, record the source's state (e.g. watermarks) and this release as
    the baseline the next night's incremental extraction and volume checks compare against."""
    record = read_extract_record(lake, release_id)
    doc = {
        "release_id": release_id,
        "state": record.get("source_state", {}),
        "rows": {k: v["rows"] for k, v in record["datasets"].items()},
    }
    lake.put_bytes(
        PIPELINE_BUCKET,
        source_state_key(record["source_format"]),
        json.dumps(doc, indent=1).encode(),
        content_type="application/json",
    )
