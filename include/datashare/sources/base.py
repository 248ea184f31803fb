"""The source-adapter contract: every source format becomes an `Extract` of canonical batches.

An adapter opens one night's extract from a location (a directory, a URL) and yields, for each
canonical dataset it provides, Arrow record batches with exactly the canonical schema
(`sources/canonical.yaml`). It also lists the raw files to keep, unchanged and checksummed, in the
pipeline-only raw zone, and a fingerprint of what was read. Errors are `SourceError`s naming the
file, line or record, column and problem, never a value.

Adapters are pure: no lake access, no Airflow. Incremental sources receive what they need from
the caller (`ExtractContext`) and report their new watermark in `Extract.state`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

__all__ = [
    "Extract",
    "ExtractContext",
    "RawFile",
    "fingerprint",
    "sha256_file",
]


@dataclass(frozen=True)
class RawFile:
    """A file of the raw extract, kept as-is for audit: from disk (`path`) or bytes (`data`)."""

    name: str
    sha256: str
    size: int
    path: Path | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class ExtractContext:
    """What the pipeline gives an adapter for one night.

    `previous_state` is the `Extract.state` the same source reported for the last successful
    night (None on the first night); `previous_snapshot(dataset)` returns that night's staged
    canonical table, for sources that extract only changes. `as_of` bounds incremental reads so
    that re-running a night reads the same rows.
    """

    release_id: str
    as_of: str  # ISO-8601 UTC timestamp, fixed for the night
    previous_state: dict[str, Any] | None = None
    previous_snapshot: Callable[[str], pa.Table | None] | None = None


class Extract(Protocol):
    format: str

    def datasets(self) -> list[str]:
        """Canonical datasets this source provides (others are staged empty and reported)."""
        ...

    def batches(self, dataset: str) -> Iterator[pa.RecordBatch]:
        """Batches of `dataset` with exactly its canonical schema; raise SourceError on bad data."""
        ...

    def expected_rows(self, dataset: str) -> int | None:
        """Row count the source declares (e.g. an export manifest), to cross-check; or None."""
        ...

    def raw_files(self) -> list[RawFile]: ...

    def fingerprint(self) -> str: ...

    @property
    def state(self) -> dict[str, Any]:
        """Source state to remember after a successful night (e.g. watermarks); may be empty."""
        ...

    @property
    def warnings(self) -> list[dict[str, str]]:
        """Problems that do not stop the source (e.g. a skipped byte-order mark): dicts with
        `dataset`, `file` and `problem`, reported in the release manifest. May be empty."""
        ...


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(parts: dict[str, str]) -> str:
    """A stable digest of named checksums (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(f"{name}:{parts[name]}\n".encode())
    return h.hexdigest()
