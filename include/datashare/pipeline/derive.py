"""Step 4: compute the derived views (e.g. student_year) once, for every tier to read."""

from __future__ import annotations

import logging
from typing import Any

import duckdb

from datashare.encryption import pipeline_keys
from datashare.errors import ConfigError
from datashare.lake.client import connect
from datashare.lake.identities import PIPELINE
from datashare.lake.layout import PIPELINE_BUCKET
from datashare.lake.parquet_io import write_parquet
from datashare.pipeline.staging import load_sources, view_prefix
from datashare.tiers.views import VIEWS

__all__ = ["derive_views"]

log = logging.getLogger(__name__)


def derive_views(*, release_id: str) -> dict[str, Any]:
    lake = connect(PIPELINE)
    rows = {}
    derived: dict = {}
    for view in VIEWS.values():
        con = duckdb.connect()
        canonical = set(view.depends_on) - set(derived)
        for name, table in load_sources(lake, release_id, canonical).items():
            con.register(name, table)
        for name in set(view.depends_on) & set(derived):
            con.register(name, derived[name])
        result = con.sql(view.sql).to_arrow_table()
        if tuple(result.column_names) != view.columns:
            raise ConfigError(
                f"view {view.name} yields {result.column_names}, declared {list(view.columns)}"
            )
        lake.delete_prefix(PIPELINE_BUCKET, view_prefix(release_id, view.name))
        write_parquet(
            lake,
            PIPELINE_BUCKET,
            view_prefix(release_id, view.name) + "part-0000.parquet",
            result,
            keys=pipeline_keys(view.name),
        )
        rows[view.name] = result.num_rows
        derived[view.name] = result
        log.info("derived view %s: %d rows", view.name, result.num_rows)
        con.close()
    return {"release_id": release_id, "views": rows}
