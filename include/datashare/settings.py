"""Where local state lives, and the handful of settings read from the environment.

Everything the project generates on a machine (lake data, secrets, keys, the Airflow home,
synthetic exports) lives under one ignored directory, `.local/` at the repository root, or under
`$DATASHARE_HOME` when that is set (tests use a temporary one). Nothing here is secret.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REPO_ROOT", "Paths", "paths", "private_dir", "write_private"]

# include/datashare/settings.py -> repository root
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Paths:
    """The layout of local state under one home directory."""

    home: Path

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def secrets(self) -> Path:
        return self.home / "secrets"

    @property
    def keys(self) -> Path:
        return self.home / "keys"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def source(self) -> Path:
        return self.home / "source"


def paths() -> Paths:
    """Local-state paths, honouring `$DATASHARE_HOME` (read at call time, not import time)."""
    home = os.environ.get("DATASHARE_HOME")
    return Paths(Path(home).resolve() if home else REPO_ROOT / ".local")


def private_dir(path: Path) -> Path:
    """Create a directory only its owner can enter (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes | str) -> None:
    """Write a file readable by its owner only (0600), atomically, never world-readable."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    tmp.chmod(0o600)
    tmp.replace(path)
