"""Run the nightly steps in-process, in the DAG's order (for tests that need many nights).

The DAG (dags/bps_nightly.py) is the product's orchestration; this mirrors it step for step so
that dozens of nights can be tested quickly. Airflow itself is exercised by the end-to-end tests.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from datashare import pipeline as steps
from datashare.errors import DataShareError
from datashare.policy import load_policy


@dataclass
class Night:
    release_id: str
    stopped_at: str | None = None
    errors: list[DataShareError] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def published(self) -> bool:
        return self.stopped_at is None

    @property
    def message(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def run_night(
    source: str,
    release_id: str,
    *,
    as_of: dt.datetime | None = None,
    source_format: str = "csv_drop",
    validate_only: list[str] | None = None,
    stop_before: str | None = None,
) -> Night:
    """One night. `validate_only` shortens a night that is expected to stop in validation to
    the datasets under test (a night that publishes always validates everything)."""
    night = Night(release_id)
    as_of = as_of or dt.datetime.now(dt.UTC)
    try:
        plan = steps.plan_release(
            source=source,
            source_format=source_format,
            release_id=release_id,
            run_id=f"test__{release_id}",
            logical_date=as_of,
        )
        night.outputs["extract"] = steps.extract(
            release_id=release_id, source=source, source_format=source_format, as_of=plan["as_of"]
        )
    except DataShareError as exc:
        night.stopped_at, night.errors = "extract", [exc]
        return night
    for dataset in validate_only or night.outputs["extract"]["datasets"]:
        try:
            night.outputs[f"validate {dataset}"] = steps.validate_dataset(
                release_id=release_id, dataset=dataset
            )
        except DataShareError as exc:
            night.errors.append(exc)
    night.outputs["data_docs"] = steps.render_data_docs(release_id=release_id)
    if night.errors or validate_only:
        night.stopped_at = "validate" if night.errors else "validate (partial)"
        return night
    try:
        steps.derive_views(release_id=release_id)
        tiers = [t.tier for t in load_policy().tiers]
        for tier in tiers:
            steps.build_tier(release_id=release_id, tier=tier)
        steps.gate_release(release_id=release_id, tiers=tiers)
        if stop_before == "publish":
            night.stopped_at = "before publish"
            return night
        steps.publish_release(release_id=release_id, tiers=tiers)
    except DataShareError as exc:
        night.stopped_at, night.errors = "publish", [exc]
    return night
