"""Step 3: validate one staged dataset against its data contract (Great Expectations).

The result (counts only, never values) is stored with the run in the pipeline bucket. A
critical failure raises ValidationFailed, which fails this dataset's task and therefore stops
every tier built after it; the previous release stays what readers see.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from datashare.errors import ValidationFailed
from datashare.lake.client import connect
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import PIPELINE_BUCKET, validation_prefix
from datashare.pipeline.staging import read_staged
from datashare.validation.runner import validate_table

__all__ = ["validate_dataset"]

log = logging.getLogger(__name__)


def validate_dataset(*, release_id: str, dataset: str) -> dict[str, Any]:
    lake = connect(PIPELINE)
    table = read_staged(lake, release_id, dataset)
    report = validate_table(dataset, table)
    lake.put_bytes(
        PIPELINE_BUCKET,
        f"{validation_prefix(release_id)}{dataset}.json",
        json.dumps(report.to_json(), indent=1).encode(),
        content_type="application/json",
    )
    log.info("validation of %s\n%s", dataset, report.summary())
    if not report.success:
        raise ValidationFailed(
            f"dataset {dataset} failed {len(report.critical)} critical data-contract rule(s); "
            f"nothing will be published from this run:\n{report.summary()}",
            [f.__dict__ for f in report.critical],
        )
    return {
        "dataset": dataset,
        "rows": report.rows,
        "warnings": len(report.warnings),
        "seconds": round(report.seconds, 3),
    }
