"""Releases in a tier bucket: write datasets and the manifest, verify, move LATEST, list.

A release is built under `_staging/<release_id>/` (readers have no access there), checked by the
release gate, then promoted: copied to `releases/<release_id>/`, verified, and only then named by
`LATEST`. A release is immutable once published, and a reader that follows `LATEST` never sees
half a release.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from datashare import __version__
from datashare.crypto.parquet import ParquetKeys
from datashare.errors import GateError
from datashare.lake.client import Lake, NotFound
from datashare.lake.layout import (
    LATEST_KEY,
    STAGING_ROOT,
    check_release_id,
    dataset_prefix,
    is_release_id,
    manifest_key,
    release_prefix,
)
from datashare.lake.parquet_io import FileEntry, write_parquet
from datashare.settings import REPO_ROOT

__all__ = [
    "Manifest",
    "code_version",
    "latest",
    "list_releases",
    "list_staged",
    "physical_key",
    "promote",
    "read_manifest",
    "rollback",
    "set_latest",
    "verify_release",
    "write_dataset",
    "write_manifest",
]


def code_version() -> str:
    """Package version plus the git commit when running from a checkout (no subprocess)."""
    head = REPO_ROOT / ".git" / "HEAD"
    commit = ""
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_path = REPO_ROOT / ".git" / ref[5:]
            if ref_path.exists():
                commit = ref_path.read_text().strip()
            else:
                packed = (REPO_ROOT / ".git" / "packed-refs").read_text()
                commit = next(
                    (ln.split()[0] for ln in packed.splitlines() if ln.endswith(ref[5:])), ""
                )
        else:
            commit = ref
    except OSError:
        pass
    return f"{__version__}+{commit[:12]}" if commit else __version__


def physical_key(key: str, staged: bool) -> str:
    """Where a release object lives: under `_staging/` until published, then `releases/`."""
    if staged and key.startswith("releases/"):
        return STAGING_ROOT + key[len("releases/") :]
    return key


def write_dataset(
    lake: Lake,
    bucket: str,
    release_id: str,
    dataset: str,
    table: pa.Table,
    rows_per_file: int = 5_000_000,
    *,
    keys: ParquetKeys | None,
    staged: bool = True,
) -> list[FileEntry]:
    """Write a dataset as one or more encrypted Parquet parts. Entries carry the object keys the
    parts will have once published."""
    prefix = dataset_prefix(release_id, dataset)
    entries = []
    n_parts = max(1, -(-table.num_rows // rows_per_file))
    for i in range(n_parts):
        part = table.slice(i * rows_per_file, rows_per_file)
        key = f"{prefix}part-{i:04d}.parquet"
        e = write_parquet(lake, bucket, physical_key(key, staged), part, keys=keys)
        entries.append(FileEntry(key=key, rows=e.rows, bytes=e.bytes, sha256=e.sha256))
    return entries


@dataclass
class Manifest:
    release_id: str
    tier: int
    bucket: str
    policy_version: str
    source_fingerprint: str
    datasets: dict[str, dict[str, Any]]
    created_at: str = ""
    code_version: str = ""
    extra: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {
            "release_id": self.release_id,
            "tier": self.tier,
            "bucket": self.bucket,
            "created_at": self.created_at
            or dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "policy_version": self.policy_version,
            "source_fingerprint": self.source_fingerprint,
            "code_version": self.code_version or code_version(),
            "datasets": self.datasets,
        }
        if self.extra:
            doc.update(self.extra)
        return doc


def dataset_entry(
    table: pa.Table, files: list[FileEntry], description: str, form: str, privacy: dict[str, Any]
) -> dict[str, Any]:
    return {
        "description": description,
        "form": form,
        "rows": table.num_rows,
        "files": [f.to_json() for f in files],
        "columns": [{"name": f.name, "type": str(f.type)} for f in table.schema],
        **privacy,
    }


def write_manifest(lake: Lake, bucket: str, doc: dict[str, Any], *, staged: bool = True) -> str:
    key = physical_key(manifest_key(doc["release_id"]), staged)
    lake.put_bytes(
        bucket,
        key,
        json.dumps(doc, indent=1, sort_keys=False).encode(),
        content_type="application/json",
    )
    return key


def read_manifest(
    lake: Lake, bucket: str, release_id: str, *, staged: bool = False
) -> dict[str, Any]:
    return json.loads(lake.get_bytes(bucket, physical_key(manifest_key(release_id), staged)))


def latest(lake: Lake, bucket: str) -> str | None:
    """The current release id of a tier bucket, or None before the first publish."""
    try:
        return lake.get_bytes(bucket, LATEST_KEY).decode().strip() or None
    except NotFound:
        return None


def verify_release(
    lake: Lake, bucket: str, release_id: str, *, checksums: bool = True, staged: bool = False
) -> dict[str, Any]:
    """Check that every file of the manifest exists with its size (and SHA-256)."""
    doc = read_manifest(lake, bucket, release_id, staged=staged)
    problems = []
    for name, ds in doc["datasets"].items():
        for f in ds["files"]:
            key = physical_key(f["key"], staged)
            try:
                if checksums:
                    data = lake.get_bytes(bucket, key)
                    size, digest = len(data), hashlib.sha256(data).hexdigest()
                else:
                    size, digest = int(lake.head(bucket, key)["ContentLength"]), f["sha256"]
            except NotFound:
                problems.append(f"{name}: {f['key']} is missing")
                continue
            if size != f["bytes"] or digest != f["sha256"]:
                problems.append(f"{name}: {f['key']} differs from the manifest")
    if problems:
        raise GateError(
            f"release {release_id} in {bucket} does not verify: " + "; ".join(problems),
            [{"problem": p} for p in problems],
        )
    return doc


def set_latest(lake: Lake, bucket: str, release_id: str) -> None:
    """Point readers at `release_id` (after verifying it is complete)."""
    check_release_id(release_id)
    verify_release(lake, bucket, release_id, checksums=False)
    lake.put_bytes(bucket, LATEST_KEY, release_id.encode(), content_type="text/plain")


def list_releases(lake: Lake, bucket: str) -> list[str]:
    """Published (promoted) release ids, oldest first."""
    # SeaweedFS keeps a deleted release's directory as an empty prefix: count a release only
    # while its manifest exists.
    return sorted(
        r
        for r in lake.list_prefixes(bucket, "releases/")
        if is_release_id(r) and lake.exists(bucket, manifest_key(r))
    )


def list_staged(lake: Lake, bucket: str) -> list[str]:
    """Release ids built but not (yet) published: readers cannot see these."""
    return sorted(
        r
        for r in lake.list_prefixes(bucket, STAGING_ROOT)
        if is_release_id(r) and lake.list_keys(bucket, f"{STAGING_ROOT}{r}/")
    )


def promote(lake: Lake, bucket: str, release_id: str) -> dict[str, Any]:
    """Copy a gated release from `_staging/` to `releases/` (server-side) and verify it there.

    Idempotent: objects already copied are copied again; the staging copy is removed only after
    the published copy verified, so a crash at any point leaves either a complete staged release
    to promote again or a complete published one.
    """
    src = physical_key(release_prefix(release_id), staged=True)
    dst = release_prefix(release_id)
    keys = lake.list_keys(bucket, src)
    if keys:
        for key in keys:
            lake.copy(bucket, key, dst + key[len(src) :])
    doc = verify_release(lake, bucket, release_id, checksums=False)
    if keys:
        lake.delete_prefix(bucket, src)
    return doc


def rollback(lake: Lake, bucket: str, to: str | None = None) -> tuple[str | None, str]:
    """Point LATEST back at an earlier published release (default: the one before LATEST)."""
    current = latest(lake, bucket)
    published = list_releases(lake, bucket)
    if to is None:
        earlier = [r for r in published if current is None or r < current]
        if not earlier:
            raise GateError(f"{bucket}: no earlier release to roll back to")
        to = earlier[-1]
    elif to not in published:
        raise GateError(f"{bucket}: release {to} is not published (known: {published[-5:]})")
    set_latest(lake, bucket, to)
    return current, to
