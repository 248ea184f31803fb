"""The key provider: where tokenization secrets (and, later, encryption master keys) come from.

Keys never live in the repository, in logs or in XCom. The default provider is a local keyring
file under `.local/keys/` (0600) created by `datashare keys init`; the pipeline never creates
keys itself, so a missing key stops the run before anything is written (fail closed).
Every secret is versioned: the current version signs new tokens, older versions stay readable so
a rotation is a planned operation rather than an accident.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from datashare.errors import ConfigError, KeyMissingError
from datashare.settings import paths, write_private

__all__ = [
    "PIPELINE_MASTER_KEY",
    "KeyProvider",
    "LocalKeyring",
    "VersionedSecret",
    "column_group_key_name",
    "key_provider",
    "master_key_names",
    "tier_master_key_name",
    "token_key_name",
]

_KEY_BYTES = 32


#: Master key of the pipeline's own zones (raw, staging, quarantine, JSON state).
PIPELINE_MASTER_KEY = "master/pipeline"

# Column-group names become part of key names (and of AWS KMS alias names): keep them simple.
_GROUP = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def token_key_name(tier: int) -> str:
    """Name of the tokenization secret of one tier."""
    return f"token/tier{tier}"


def tier_master_key_name(tier: int) -> str:
    """Name of the encryption master key of one tier (wraps the data keys of its files)."""
    return f"master/tier{int(tier)}"


def column_group_key_name(tier: int, group: str) -> str:
    """Name of the master key of one column group of a tier, e.g. `master/tier4/sensitive`."""
    if not _GROUP.match(group):
        raise ConfigError(f"column group name {group!r} must match {_GROUP.pattern}")
    return f"{tier_master_key_name(tier)}/{group}"


def master_key_names(
    tiers: Iterable[int],
    column_groups: Mapping[int, Iterable[str]] | None = None,
    *,
    pipeline: bool = True,
) -> list[str]:
    """Every encryption master key a deployment needs, for `LocalKeyring.ensure`."""
    names = [PIPELINE_MASTER_KEY] if pipeline else []
    for tier in tiers:
        names.append(tier_master_key_name(tier))
        names.extend(column_group_key_name(tier, g) for g in (column_groups or {}).get(tier, ()))
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class VersionedSecret:
    name: str
    version: int
    secret: bytes

    def __repr__(self) -> str:  # never print secret material
        return f"VersionedSecret(name={self.name!r}, version={self.version})"


class KeyProvider(Protocol):
    def current(self, name: str) -> VersionedSecret:
        """The version of `name` to use for new outputs; raises KeyMissingError if absent."""
        ...

    def version(self, name: str, version: int) -> VersionedSecret:
        """A specific version of `name` (to read older outputs)."""
        ...


class LocalKeyring:
    """A JSON keyring file: {name: {"current": v, "versions": {v: base64 secret}}}."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths().keys / "keyring.json"

    def _load(self) -> dict:
        if not self.path.exists():
            raise KeyMissingError(
                f"no keyring at {self.path}: run `datashare keys init` (keys are never created "
                "by the pipeline itself)"
            )
        mode = self.path.stat().st_mode & 0o077
        if mode:
            raise KeyMissingError(f"keyring {self.path} is readable by others; chmod 600 it")
        return json.loads(self.path.read_text())

    def names(self) -> list[str]:
        return sorted(self._load()) if self.path.exists() else []

    def current(self, name: str) -> VersionedSecret:
        entry = self._load().get(name)
        if not entry:
            raise KeyMissingError(f"key {name!r} is missing from the keyring {self.path}")
        return self.version(name, int(entry["current"]))

    def version(self, name: str, version: int) -> VersionedSecret:
        entry = self._load().get(name)
        if not entry or str(version) not in entry["versions"]:
            raise KeyMissingError(f"key {name!r} version {version} is missing from the keyring")
        return VersionedSecret(name, version, base64.b64decode(entry["versions"][str(version)]))

    def ensure(self, names: list[str]) -> list[str]:
        """Create the keys in `names` that do not exist yet; return the ones created."""
        data = self._load() if self.path.exists() else {}
        created = []
        for name in names:
            if name not in data:
                data[name] = {"current": 1, "versions": {"1": _new_secret()}}
                created.append(name)
        if created or not self.path.exists():
            write_private(self.path, json.dumps(data, indent=1, sort_keys=True))
        return created

    def rotate(self, name: str) -> int:
        """Add a new version of `name` and make it current; return the new version."""
        data = self._load()
        if name not in data:
            raise KeyMissingError(f"key {name!r} is missing from the keyring")
        new = max(int(v) for v in data[name]["versions"]) + 1
        data[name]["versions"][str(new)] = _new_secret()
        data[name]["current"] = new
        write_private(self.path, json.dumps(data, indent=1, sort_keys=True))
        return new


def _new_secret() -> str:
    return base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()


def key_provider() -> KeyProvider:
    """The configured provider: `$DATASHARE_KEY_PROVIDER` (default `local`)."""
    kind = os.environ.get("DATASHARE_KEY_PROVIDER", "local")
    if kind == "local":
        return LocalKeyring()
    raise ConfigError(f"unknown key provider {kind!r} (DATASHARE_KEY_PROVIDER); known: local")
