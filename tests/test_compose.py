"""docker-compose.yaml is a valid Compose file (validated offline; no Docker engine here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = str(Path(sys.executable).parent / "docker-compose")


def _config(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [COMPOSE, "-f", str(REPO / "docker-compose.yaml"), "config", "-q"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_file_is_valid() -> None:
    env = {**os.environ, "AIRFLOW_JWT_SECRET": "x", "AIRFLOW_FERNET_KEY": "y"}
    proc = _config(env)
    assert proc.returncode == 0, proc.stderr


def test_compose_refuses_to_start_without_secrets() -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY")
    }
    proc = _config(env)
    assert proc.returncode != 0
    assert "AIRFLOW_JWT_SECRET" in proc.stderr


def test_compose_runs_the_project_on_celery_postgres_redis_seaweedfs() -> None:
    doc = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    services = doc["services"]
    for name in (
        "postgres",
        "redis",
        "seaweedfs",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-worker",
        "airflow-dag-processor",
    ):
        assert name in services, name
    env = doc["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["DATASHARE_LAKE_ENDPOINT"].startswith("https://")
    # Published ports bind the host's loopback only.
    for svc in services.values():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port
