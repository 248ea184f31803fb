"""The thin Airflow shell around the `datashare` package (the package never imports Airflow).

`run_step` calls one pipeline step and translates its outcome for Airflow:

- deterministic data or configuration errors (a broken export, a failed data contract, a missing
  key, a failed release gate) raise AirflowFailException: retrying the same input cannot help;
- infrastructure errors (the lake unreachable) propagate unchanged and are retried;
- every failure is also logged once as a single `DATASHARE-FAILURE {json}` line naming the
  step and the error class, which `datashare run` reads to tell the operator what failed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

__all__ = ["FAILURE_MARKER", "run_step"]

FAILURE_MARKER = "DATASHARE-FAILURE"
log = logging.getLogger("datashare.airflow")


def run_step(step: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    from datashare.errors import DataShareError

    try:
        return fn(**kwargs)
    except DataShareError as exc:
        log.error(
            "%s %s",
            FAILURE_MARKER,
            json.dumps(
                {"step": step, "error": type(exc).__name__, "code": exc.code, "message": str(exc)}
            ),
        )
        if exc.deterministic:
            raise AirflowFailException(f"{step}: {exc}") from exc
        raise
