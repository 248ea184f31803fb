"""Keyrings for the encryption tests: a writer's full keyring and readers granted a subset.

Only temporary files; no lake, no DATASHARE_HOME.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from datashare.crypto.kms import DataKey, LocalKms
from datashare.keys import LocalKeyring, master_key_names
from datashare.settings import write_private

GROUPS = {4: ["sensitive"]}


@pytest.fixture
def ring(tmp_path: Path) -> LocalKeyring:
    ring = LocalKeyring(tmp_path / "writer" / "keyring.json")
    ring.ensure(master_key_names([1, 2, 3, 4], GROUPS))
    return ring


@pytest.fixture
def kms(ring: LocalKeyring) -> LocalKms:
    return LocalKms(ring)


@pytest.fixture
def reader_kms(ring: LocalKeyring, tmp_path: Path) -> Callable[..., LocalKms]:
    """A KMS over a keyring holding only `names` (copied from the writer's), as a reader has."""

    counter = itertools.count()

    def make(*names: str, current_only: bool = False) -> LocalKms:
        data = json.loads(ring.path.read_text())
        grant = {n: data[n] for n in names}
        if current_only:  # as after old versions were retired
            grant = {
                n: {
                    "current": e["current"],
                    "versions": {str(e["current"]): e["versions"][str(e["current"])]},
                }
                for n, e in grant.items()
            }
        path = tmp_path / f"reader-{next(counter)}" / "keyring.json"
        write_private(path, json.dumps(grant))
        return LocalKms(LocalKeyring(path))

    return make


class RecordingKms:
    """Delegates to a real KMS and records every wrap (name, context, wrapped bytes)."""

    def __init__(self, inner: LocalKms) -> None:
        self.inner = inner
        self.scheme = inner.scheme
        self.prefers_double_wrapping = inner.prefers_double_wrapping
        self.wraps: list[tuple[str, dict, bytes]] = []
        self.key_digests: list[str] = []  # SHA-256 of each key wrapped (never the key itself)

    def wrap(self, key_name: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        out = self.inner.wrap(key_name, data_key, context)
        self.wraps.append((key_name, dict(context), out))
        self.key_digests.append(hashlib.sha256(data_key).hexdigest())
        return out

    def unwrap(self, key_name: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        return self.inner.unwrap(key_name, wrapped, context)

    def generate_data_key(self, key_name: str, context: Mapping[str, str]) -> DataKey:
        dk = self.inner.generate_data_key(key_name, context)
        self.wraps.append((key_name, dict(context), dk.wrapped))
        return dk


@pytest.fixture
def recording(kms: LocalKms) -> RecordingKms:
    return RecordingKms(kms)
