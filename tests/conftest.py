"""Shared fixtures: an isolated DATASHARE_HOME, a real SeaweedFS lake on free ports, a keyring,
a small synthetic export, and one nightly run through Airflow that several tests read back.

The whole session uses its own home directory, so it never touches a developer's `.local/`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"
DATASHARE = str(Path(sys.executable).parent / "datashare")
SMALL_SCALE = 0.03


def _free_port_block(width: int = 16) -> int:
    """A base port such that base..base+width are all free on 127.0.0.1."""
    for base in range(20_000, 60_000, 97):
        ok = True
        for p in range(base, base + width):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free block of ports for the test lake")


@pytest.fixture(scope="session")
def datashare_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("datashare-home")
    saved = {k: os.environ.get(k) for k in ("DATASHARE_HOME", "DATASHARE_LAKE_PORT")}
    os.environ["DATASHARE_HOME"] = str(home)
    os.environ["DATASHARE_LAKE_PORT"] = str(_free_port_block())
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


def run_cli(*args: str, check: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [DATASHARE, *args],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"datashare {' '.join(args)} exited {proc.returncode}:\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def published(lake: None, keyring: Path, small_export: Path) -> dict:
    """One full nightly run through Airflow (`datashare run`), published to every tier."""
    release_id = "20260101T020000Z"
    proc = run_cli("run", "--source", str(small_export), "--release-id", release_id, check=True)
    return {"release_id": release_id, "stdout": proc.stdout, "source": small_export}


def copy_export(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
