"""Step 8: regenerate the lake's grants from the tier policy, every night.

Research projects' data-use agreements expire: the night after an expiry date the project's
identity loses its grant. The grants (without secrets) are written to
`s3://bps-pipeline/grants/identities.json` for audit and for operators who manage a production
store's IAM by hand; the embedded lake applies them at once (SeaweedFS reloads on SIGHUP).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

from datashare.lake.client import connect
from datashare.lake.identities import PIPELINE, grants_document
from datashare.lake.layout import PIPELINE_BUCKET

__all__ = ["GRANTS_KEY", "refresh_grants"]

GRANTS_KEY = "grants/identities.json"


def refresh_grants() -> dict[str, Any]:
    doc = grants_document()
    doc["generated_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    connect(PIPELINE).put_bytes(
        PIPELINE_BUCKET,
        GRANTS_KEY,
        json.dumps(doc, indent=1).encode(),
        content_type="application/json",
    )
    applied = False
    if not os.environ.get("DATASHARE_LAKE_ENDPOINT"):
        from datashare.lake.server import apply_grants

        applied = apply_grants()
    return {"identities": [i["name"] for i in doc["identities"]], "applied_to_lake": applied}
