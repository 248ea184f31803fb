"""
### BPS nightly data share

Extracts the nightly Boston Public Schools export, validates it against its data contracts,
de-identifies it per the tier policy, and publishes one encrypted release to each of the four
tiers the City of Boston reads:

| tier | bucket | receives |
|---|---|---|
| 1 | `bps-tier1-essential` | school directory, budgets, enrollment totals |
| 2 | `bps-tier2-aggregate` | subgroup statistics with small cells suppressed |
| 3 | `bps-tier3-directory` | FERPA directory information, opt-outs excluded, tokenized IDs |
| 4 | `bps-tier4-research` | pseudonymized student-level research files |

Steps: **plan** (release id; fails closed on a missing key) → **extract** (raw zone + canonical
staging) → **validate** (one task per dataset; quarantines bad rows or stops the night) →
**data_docs** (Great Expectations Data Docs, rendered even when validation failed) → **derive**
(shared views) → **build** (one task per tier, unpublished) → **gate** (independent re-check of
every tier) → **publish** (promote, move `LATEST`) → **grants** (regenerate read access from the
policy; expired data-use agreements lose it). Nothing is published unless every tier passes the
gate; the last good release stays what readers see.

Who receives which field, and in what form, is in `include/datashare/policy/tier_policy.yaml`.
A `source` of the form `conn:<conn_id>` names an Airflow Connection holding the SQL URL of an
SIS replica (its password never enters XCom or logs). Manual runs take a `source` (default: the
Airflow Variable `datashare_source`, else
`$DATASHARE_SOURCE`, else `.local/source`), a `source_format` (default: the Variable
`datashare_source_format`, else `$DATASHARE_SOURCE_FORMAT`, else `csv_drop`) and optionally an
explicit `release_id`.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Param, Variable, dag, get_current_context, task

from datashare.policy import load_policy
from datashare.sources import ADAPTERS
from datashare_airflow import run_step

# Parsed once per DAG parse: the policy file is configuration shipped with the code.
TIERS = [t.tier for t in load_policy().tiers]
RELEASE_ID_PATTERN = r"^\d{8}T\d{6}Z(-[a-z0-9]{1,16})?$"


@dag(
    dag_id="bps_nightly",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "bps-data-office",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
    },
    params={
        "source": Param(
            "",
            type="string",
            title="Source export",
            description="Directory of the export drop; empty = configured default",
        ),
        "source_format": Param(
            "",
            enum=["", *ADAPTERS],
            title="Source format",
            description="Adapter; empty = configured default (csv_drop)",
        ),
        "release_id": Param(
            None,
            type=["null", "string"],
            pattern=RELEASE_ID_PATTERN,
            title="Release id",
            description="Optional; default derives from the run's time",
        ),
    },
    tags=["bps", "datashare", "nightly"],
    doc_md=__doc__,
)
def bps_nightly() -> None:
    @task
    def plan() -> dict:
        from datashare.pipeline import plan_release
        from datashare.settings import paths

        ctx = get_current_context()
        params, run = ctx["params"], ctx["dag_run"]
        source = (
            params["source"]
            or Variable.get("datashare_source", default=None)
            or os.environ.get("DATASHARE_SOURCE")
            or str(paths().source)
        )
        return run_step(
            "plan",
            plan_release,
            source=source,
            source_format=params["source_format"],
            release_id=params["release_id"],
            run_id=run.run_id,
            logical_date=run.logical_date or run.run_after,
        )

    @task
    def extract(plan: dict) -> list[str]:
        from datashare.pipeline import extract as extract_step

        source = plan["source"]
        if source.startswith("conn:"):
            # A SQL source named by Airflow Connection: its URL (with the password) goes to the
            # adapter through this process's environment, never through XCom or the plan.
            from airflow.sdk import Connection

            os.environ["DATASHARE_SOURCE_URL"] = Connection.get(source[5:]).get_uri()
            source = "env:DATASHARE_SOURCE_URL"
        out = run_step(
            "extract",
            extract_step,
            release_id=plan["release_id"],
            source=source,
            source_format=plan["source_format"],
            as_of=plan["as_of"],
        )
        return out["datasets"]

    @task(map_index_template="{{ task.op_kwargs['dataset'] }}")
    def validate(plan: dict, dataset: str) -> dict:
        from datashare.pipeline import validate_dataset

        return run_step(
            f"validate {dataset}", validate_dataset, release_id=plan["release_id"], dataset=dataset
        )

    @task(trigger_rule="all_done_min_one_success")
    def data_docs(plan: dict) -> dict:
        """Renders the night's Data Docs whether or not validation passed (not when planning
        failed: then there is no night to document)."""
        from datashare.pipeline import render_data_docs

        return run_step("data docs", render_data_docs, release_id=plan["release_id"])

    @task
    def derive(plan: dict) -> dict:
        from datashare.pipeline import derive_views

        return run_step("derive", derive_views, release_id=plan["release_id"])

    @task(map_index_template="tier {{ task.op_kwargs['tier'] }}")
    def build(plan: dict, tier: int) -> dict:
        from datashare.pipeline import build_tier

        return run_step(f"build tier {tier}", build_tier, release_id=plan["release_id"], tier=tier)

    @task
    def gate(plan: dict, built: list[dict]) -> dict:
        from datashare.pipeline import gate_release

        return run_step(
            "gate", gate_release, release_id=plan["release_id"], tiers=[b["tier"] for b in built]
        )

    @task
    def publish(plan: dict, gated: dict) -> dict:
        from datashare.pipeline import publish_release

        return run_step(
            "publish",
            publish_release,
            release_id=plan["release_id"],
            tiers=sorted(int(t) for t in gated["tiers"]),
        )

    @task
    def grants() -> dict:
        """Regenerates the lake's grants from the policy (expired agreements lose access)."""
        from datashare.pipeline import refresh_grants

        return run_step("grants", refresh_grants)

    planned = plan()
    validated = validate.partial(plan=planned).expand(dataset=extract(planned))
    derived = derive(planned)
    validated >> [derived, data_docs(planned)]
    built = build.partial(plan=planned).expand(tier=TIERS)
    derived >> built
    publish(planned, gate(planned, built)) >> grants()


bps_nightly()
