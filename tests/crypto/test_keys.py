"""The key provider (`datashare.keys`): the local keyring and the master-key names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datashare.errors import ConfigError, KeyMissingError
from datashare.keys import (
    PIPELINE_MASTER_KEY,
    LocalKeyring,
    column_group_key_name,
    key_provider,
    master_key_names,
    tier_master_key_name,
    token_key_name,
)


def test_key_names() -> None:
    assert token_key_name(2) == "token/tier2"
    assert tier_master_key_name(4) == "master/tier4"
    assert column_group_key_name(4, "sensitive") == "master/tier4/sensitive"
    assert PIPELINE_MASTER_KEY == "master/pipeline"
    for bad in ("", "Sensitive", "a/b", "has space", "x" * 65):
        with pytest.raises(ConfigError):
            column_group_key_name(4, bad)


def test_master_key_names_lists_each_key_once() -> None:
    names = master_key_names([1, 2, 4, 4], {4: ["sensitive", "health"], 9: ["x"]})
    assert names == [
        "master/pipeline",
        "master/tier1",
        "master/tier2",
        "master/tier4",
        "master/tier4/sensitive",
        "master/tier4/health",
    ]
    assert master_key_names([3], pipeline=False) == ["master/tier3"]


def test_missing_keyring_fails_closed(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "keys" / "keyring.json")
    assert ring.names() == []
    with pytest.raises(KeyMissingError, match="keys init"):
        ring.current("master/tier1")


def test_ensure_creates_private_versioned_keys(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "keys" / "keyring.json")
    names = master_key_names([1, 4], {4: ["sensitive"]})
    assert ring.ensure(names) == names
    assert ring.path.stat().st_mode & 0o777 == 0o600
    assert ring.path.parent.stat().st_mode & 0o777 == 0o700
    assert ring.ensure([*names, "token/tier4"]) == ["token/tier4"]  # existing keys kept
    s = ring.current("master/tier4")
    assert (s.version, len(s.secret)) == (1, 32)
    assert s.secret != ring.current("master/tier4/sensitive").secret
    assert repr(s) == "VersionedSecret(name='master/tier4', version=1)"  # no key material
    with pytest.raises(KeyMissingError):
        ring.current("master/tier2")


def test_rotation_keeps_old_versions_readable(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "keyring.json")
    ring.ensure(["master/tier2"])
    v1 = ring.current("master/tier2")
    assert ring.rotate("master/tier2") == 2
    v2 = ring.current("master/tier2")
    assert v2.version == 2 and v2.secret != v1.secret
    assert ring.version("master/tier2", 1).secret == v1.secret
    with pytest.raises(KeyMissingError):
        ring.version("master/tier2", 3)
    with pytest.raises(KeyMissingError):
        ring.rotate("master/tier9")


def test_keyring_readable_by_others_is_refused(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "keyring.json")
    ring.ensure(["master/tier1"])
    ring.path.chmod(0o644)
    with pytest.raises(KeyMissingError, match="chmod 600"):
        ring.current("master/tier1")


def test_keyring_file_format(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "keyring.json")
    ring.ensure(["master/tier3"])
    ring.rotate("master/tier3")
    doc = json.loads(ring.path.read_text())
    assert doc["master/tier3"]["current"] == 2
    assert sorted(doc["master/tier3"]["versions"]) == ["1", "2"]


def test_unknown_provider_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASHARE_KEY_PROVIDER", "vault")
    with pytest.raises(ConfigError, match="vault"):
        key_provider()
    monkeypatch.setenv("DATASHARE_KEY_PROVIDER", "local")
    assert isinstance(key_provider(), LocalKeyring)
