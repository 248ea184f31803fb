"""Which keys protect what, and who may use them: the pipeline's encryption decisions.

- The pipeline-only zone (raw exports, staging, validated data, quarantine) is encrypted under
  `master/pipeline` (tier 0 of `crypto.parquet.TierKeys`; sealed blobs for raw files).
- A tier's release is encrypted as its policy says (`encryption.mode`): `release_key` (one
  AES-256 key per release, wrapped by the tier master and stored in the manifest, so DuckDB can
  read the files once a reader unwraps it) or `per_file` (fresh data keys per file, wrapped in
  the file, with column groups under their own masters).
- Entitlements: who may use which master key. The pipeline: every key. `tierN-reader`: its
  tier's master and column groups. `research-<project>`: tier 4's master and only the column
  groups its agreement lists, while the agreement is active.

With the local keyring every key sits in one file on the pipeline's machine, so entitlements are
enforced by this module for honest clients (`datashare sql`); with AWS KMS the same names map to
KMS keys whose key policies enforce them per principal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from datashare.crypto.kms import DataKey, Kms, kms_from_env
from datashare.crypto.parquet import ParquetKeys, ReleaseKey, TierKeys
from datashare.errors import KeyMissingError
from datashare.keys import (
    PIPELINE_MASTER_KEY,
    column_group_key_name,
    master_key_names,
    tier_master_key_name,
)
from datashare.lake.identities import PIPELINE
from datashare.policy import Policy, Tier, load_policy

__all__ = [
    "EntitledKms",
    "entitled_kms",
    "entitlements",
    "master_keys",
    "pipeline_keys",
    "reader_keys",
    "release_writer",
    "system_kms",
]


@cache
def system_kms() -> Kms:
    """The configured KMS (`$DATASHARE_KMS`: local keyring by default, or AWS KMS)."""
    return kms_from_env()


def master_keys(policy: Policy | None = None) -> list[str]:
    """Every master key the policy needs (for `datashare keys init`)."""
    policy = policy or load_policy()
    return master_key_names(
        [t.tier for t in policy.tiers], {t.tier: sorted(t.column_groups) for t in policy.tiers}
    )


def entitlements(identity: str, policy: Policy | None = None) -> set[str]:
    """The master keys an identity may use."""
    policy = policy or load_policy()
    if identity == PIPELINE:
        return set(master_keys(policy))
    for tier in policy.tiers:
        if identity in tier.readers:
            return {tier_master_key_name(tier.tier)} | {
                column_group_key_name(tier.tier, g) for g in tier.column_groups
            }
    for project in policy.research_projects:
        if identity == project.identity and project.active():
            return {tier_master_key_name(project.tier)} | {
                column_group_key_name(project.tier, g) for g in project.column_groups
            }
    return set()


class EntitledKms:
    """A KMS limited to the master keys one identity is entitled to."""

    def __init__(self, kms: Kms, identity: str, allowed: Iterable[str]) -> None:
        self._kms, self.identity, self.allowed = kms, identity, frozenset(allowed)
        self.scheme = kms.scheme
        self.prefers_double_wrapping = kms.prefers_double_wrapping

    def __repr__(self) -> str:
        return f"EntitledKms(identity={self.identity!r}, keys={sorted(self.allowed)})"

    def _check(self, key_name: str) -> None:
        if key_name not in self.allowed:
            raise KeyMissingError(f"{self.identity} is not entitled to key {key_name}")

    def wrap(self, key_name: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        self._check(key_name)
        return self._kms.wrap(key_name, data_key, context)

    def unwrap(self, key_name: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        self._check(key_name)
        return self._kms.unwrap(key_name, wrapped, context)

    def generate_data_key(self, key_name: str, context: Mapping[str, str]) -> DataKey:
        self._check(key_name)
        return self._kms.generate_data_key(key_name, context)


def entitled_kms(identity: str) -> EntitledKms:
    return EntitledKms(system_kms(), identity, entitlements(identity))


def pipeline_keys(dataset: str) -> TierKeys:
    """Per-file keys of the pipeline-only zone (staging, validated data, quarantine)."""
    return TierKeys(EntitledKms(system_kms(), PIPELINE, {PIPELINE_MASTER_KEY}), 0, dataset)


class ReleaseWriter:
    """The keys a tier release is written with, and what the manifest records about them."""

    def __init__(self, tier: Tier, release_id: str, kms: Kms | None = None) -> None:
        self.tier, self.release_id = tier, release_id
        self.kms = kms or system_kms()
        self._release_key = (
            ReleaseKey.create(self.kms, tier.tier, release_id)
            if tier.encryption_mode == "release_key"
            else None
        )

    def keys(self, dataset: str) -> ParquetKeys:
        if self._release_key is not None:
            return self._release_key
        groups = self.tier.dataset(dataset).column_groups or {}
        return TierKeys(self.kms, self.tier.tier, dataset, dict(groups))

    def manifest_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "mode": self.tier.encryption_mode,
            "kms": self.kms.scheme,
            "master_key": tier_master_key_name(self.tier.tier),
            "algorithm": "Parquet modular encryption, AES_GCM_V1",
        }
        if self._release_key is not None:
            entry["release_key"] = self._release_key.document()
        else:
            entry["column_groups"] = {
                g: column_group_key_name(self.tier.tier, g) for g in sorted(self.tier.column_groups)
            }
        return entry


def release_writer(tier: Tier, release_id: str) -> ReleaseWriter:
    return ReleaseWriter(tier, release_id)


def reader_keys(kms: Kms, manifest: Mapping[str, Any], dataset: str) -> ParquetKeys:
    """Keys to read one dataset of a release, from its manifest and the reader's KMS."""
    enc = manifest.get("encryption") or {}
    tier, release_id = int(manifest["tier"]), manifest["release_id"]
    if enc.get("mode") == "release_key":
        return ReleaseKey.open(kms, enc["release_key"], tier=tier, release_id=release_id)
    groups = manifest["datasets"][dataset].get("column_groups") or {}
    return TierKeys(kms, tier, dataset, dict(groups))
