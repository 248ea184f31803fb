"""The differential-privacy budget ledger, kept in the pipeline-only bucket.

`ledger/differential_privacy.json` records every epsilon charged, per dataset and school year,
across nightly runs; a charge that would pass the dataset's annual cap is refused and the night
fails (nothing is published). The nightly DAG runs one night at a time (max_active_runs=1), so
the ledger has a single writer; every charge still re-reads, merges and re-checks (see
privacy/ledger.py).
"""

from __future__ import annotations

from collections.abc import Callable

from datashare.lake.client import Lake, NotFound
from datashare.lake.layout import PIPELINE_BUCKET
from datashare.policy import DatasetSpec
from datashare.privacy.ledger import PrivacyLedger

__all__ = ["LEDGER_KEY", "LakeLedger", "budget_charger", "ledger"]

LEDGER_KEY = "ledger/differential_privacy.json"


class _LakeStorage:
    """The ledger document as one object in the pipeline bucket."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def read(self) -> bytes | None:
        try:
            return self.lake.get_bytes(PIPELINE_BUCKET, LEDGER_KEY)
        except NotFound:
            return None

    def write(self, data: bytes) -> None:
        self.lake.put_bytes(PIPELINE_BUCKET, LEDGER_KEY, data, content_type="application/json")


class LakeLedger(PrivacyLedger):
    def charged(self, dataset: str, school_year: int | str, release_id: str) -> float | None:
        """Epsilon charged for one release of a dataset, or None if it was never charged."""
        hits = [e.epsilon for e in self.entries(dataset, school_year) if e.release_id == release_id]
        return sum(hits) if hits else None


def ledger(lake: Lake) -> LakeLedger:
    return LakeLedger(_LakeStorage(lake))


def budget_charger(lake: Lake, release_id: str) -> Callable[[DatasetSpec, float, int], None]:
    """The callback tier builders use to charge a release before drawing any noise."""
    book = ledger(lake)

    def charge(spec: DatasetSpec, epsilon: float, school_year: int) -> None:
        assert spec.dp is not None
        book.charge(
            spec.name,
            school_year,
            release_id,
            epsilon,
            spec.dp.annual_cap,
            mechanism=spec.dp.mechanism,
        )

    return charge
