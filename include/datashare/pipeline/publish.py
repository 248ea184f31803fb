"""Step 7: publish. Move each tier's LATEST to the gated release, then prune old releases.

Runs only after the gate passed for every tier. Moving LATEST is one small PUT per tier, done
after the release verified, so readers switch from one complete release to the next. Then the
night becomes the baseline for the next one (source state, row counts).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from datashare.errors import GateError
from datashare.lake.client import connect
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import PIPELINE_BUCKET, release_prefix, source_state_key
from datashare.pipeline.staging import read_extract_record
from datashare.policy import load_policy
from datashare.releases import latest, list_releases, read_manifest, set_latest

__all__ = ["KEEP_RELEASES", "publish_release"]

log = logging.getLogger(__name__)

#: Releases kept per tier (the current one included); older ones are deleted after a publish.
KEEP_RELEASES = int(os.environ.get("DATASHARE_KEEP_RELEASES", "7"))


def publish_release(*, release_id: str, tiers: list[int]) -> dict[str, Any]:
    policy = load_policy()
    lake = connect(PIPELINE)
    # Check every tier first so that a missing gate stops all of them, not half.
    for number in tiers:
        tier = policy.tier(number)
        doc = read_manifest(lake, tier.bucket, release_id)
        if not doc.get("gate", {}).get("passed"):
            raise GateError(f"tier {number}: release {release_id} has not passed the gate")
    published = {}
    for number in sorted(tiers):
        tier = policy.tier(number)
        previous = latest(lake, tier.bucket)
        set_latest(lake, tier.bucket, release_id)
        published[number] = {"bucket": tier.bucket, "release_id": release_id, "previous": previous}
        log.info("tier %d: LATEST %s -> %s", number, previous, release_id)
        pruned = prune(lake, tier.bucket, keep=KEEP_RELEASES, current=release_id)
        if pruned:
            log.info("tier %d: pruned %d old release(s)", number, len(pruned))
    remember_source_state(lake, release_id)
    return {"release_id": release_id, "tiers": published}


def remember_source_state(lake: Any, release_id: str) -> None:
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


def prune(lake: Any, bucket: str, *, keep: int, current: str) -> list[str]:
    """Delete all but the newest `keep` releases (never the current one)."""
    releases = [r for r in list_releases(lake, bucket) if r != current]
    doomed = releases[: max(0, len(releases) - (keep - 1))]
    for rid in doomed:
        lake.delete_prefix(bucket, release_prefix(rid))
    return doomed
