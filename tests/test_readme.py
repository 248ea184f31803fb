"""The README's reading examples work as written, as the reader they claim to be."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import run_cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_both_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text


@pytest.mark.parametrize("block", range(len(_python_blocks())))
def test_readme_example_runs_as_tier2_reader(published: dict, block: int) -> None:
    env_lines = run_cli("lake", "env", "--as", "tier2-reader", check=True).stdout
    env = dict(os.environ)
    for name, value in re.findall(r"^export (\w+)=(.*)$", env_lines, flags=re.M):
        env[name] = value.strip("'")
    code = _python_blocks()[block]
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
