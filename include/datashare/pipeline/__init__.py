"""The nightly pipeline's steps, one module each, as the DAG calls them.

Every step takes and returns references (release id, object keys, small counts), never data,
and is idempotent: re-running a step for the same release id rewrites the same objects.
"""

from datashare.pipeline.build import build_tier
from datashare.pipeline.derive import derive_views
from datashare.pipeline.extract import extract
from datashare.pipeline.gate import gate_release
from datashare.pipeline.grants import refresh_grants
from datashare.pipeline.plan import plan_release
from datashare.pipeline.publish import publish_release
from datashare.pipeline.validate import render_data_docs, validate_dataset

__all__ = [
    "build_tier",
    "derive_views",
    "extract",
    "gate_release",
    "plan_release",
    "publish_release",
    "refresh_grants",
    "render_data_docs",
    "validate_dataset",
]
