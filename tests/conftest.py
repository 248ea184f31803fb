"""Shared fixtures: an isolated DATASHARE_HOME, a real SeaweedFS lake on free ports, a keyring,
a small synthetic export, and one nightly run through Airflow that several tests read back.

The whole session uses its own home directory, so it never touches a developer's `.local/`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import free_port_block, run_cli

SMALL_SCALE = 0.03


@pytest.fixture(scope="session")
def datashare_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("datashare-home")
    saved = {k: os.environ.get(k) for k in ("DATASHARE_HOME", "DATASHARE_LAKE_PORT")}
    os.environ["DATASHARE_HOME"] = str(home)
    os.environ["DATASHARE_LAKE_PORT"] = str(free_port_block())
    for k in [k for k in os.environ if k.startswith(("AIRFLOW__", "DATASHARE_LAKE_ENDPOINT"))]:
        del os.environ[k]
    yield home
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def lake(datashare_home: Path) -> Iterator[None]:
    from datashare.lake import server

    server.up()
    try:
        yield
    finally:
        server.down()


@pytest.fixture(scope="session")
def keyring(datashare_home: Path) -> Path:
    from datashare.keys import LocalKeyring
    from datashare.pipeline.plan import required_keys

    ring = LocalKeyring()
    ring.ensure(required_keys())
    return ring.path


@pytest.fixture(scope="session")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datashare.synth.export import write_export

    out = tmp_path_factory.mktemp("export")
    write_export(out, scale=SMALL_SCALE, seed=7)
    return out


@pytest.fixture(scope="session")
def published(lake: None, keyring: Path, small_export: Path) -> dict:
    """One full nightly run through Airflow (`datashare run`), published to every tier."""
    release_id = "20260101T020000Z"
    proc = run_cli("run", "--source", str(small_export), "--release-id", release_id, check=True)
    return {"release_id": release_id, "stdout": proc.stdout, "source": small_export}
