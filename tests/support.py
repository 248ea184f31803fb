"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _reference() -> Path:
    """The shared reference data (real BPS/MA tables, Grand Bend, anonymity benchmarks).

    `DATASHARE_REFERENCE` if set; else `shared/reference` beside the checkout or beside any
    directory above it (a CI clone may sit deeper than the working copy); else /work/shared.
    Tests that need it skip, naming the path, when none exists."""
    if env := os.environ.get("DATASHARE_REFERENCE"):
        return Path(env)
    for parent in REPO.parents:
        candidate = parent / "shared" / "reference"
        if candidate.is_dir():
            return candidate
    return Path("/work/shared/reference")


REFERENCE = _reference()
DATASHARE = str(Path(sys.executable).parent / "datashare")


def free_port_block(width: int = 16) -> int:
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


def copy_export(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@contextlib.contextmanager
def isolated_lake(home: Path) -> Iterator[Path]:
    """A lake of its own (own DATASHARE_HOME, own ports, own keys) for tests that change
    what LATEST points at or stop the lake; the session's lake is untouched."""
    from datashare.keys import LocalKeyring
    from datashare.lake import server
    from datashare.pipeline.plan import required_keys

    saved = {k: os.environ.get(k) for k in ("DATASHARE_HOME", "DATASHARE_LAKE_PORT")}
    os.environ["DATASHARE_HOME"] = str(home)
    os.environ["DATASHARE_LAKE_PORT"] = str(free_port_block())
    try:
        server.up()
        LocalKeyring().ensure(required_keys())
        yield home
    finally:
        server.down()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
