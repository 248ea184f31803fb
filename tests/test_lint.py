"""The code base stays ruff-clean (lint and format), so CI catches style drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUFF = str(Path(sys.executable).parent / "ruff")


def test_ruff_check() -> None:
    proc = subprocess.run(
        [RUFF, "check", "."], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_ruff_format() -> None:
    proc = subprocess.run(
        [RUFF, "format", "--check", "."], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_core_package_never_imports_airflow() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "include").rglob("*.py")
        if any(
            line.lstrip().startswith(("import airflow", "from airflow"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
