"""The release gate's suppression audit: can any suppressed cell be recovered?

Independent of the code that chose the suppressions: it takes the staged tables exactly as
they will be published, reads which cells are suppressed from the files themselves (a null
count), and solves, for every suppressed cell, the attacker's minimum and maximum by linear
programming over every linked table of the release (tier-1 totals included). The true counts,
needed to state the constraints, are recomputed from the night's validated data; every count
the files do publish must equal them.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datashare.lake.client import connect
from datashare.lake.identities import PIPELINE
from datashare.pipeline.staging import load_sources
from datashare.policy import Policy
from datashare.privacy.linked_tables import build_system
from datashare.tiers.builder import BuildContext, build_dataset
from datashare.tiers.linked import count_column, determined_by_public, linked_table

__all__ = ["audit_release"]


def audit_release(
    policy: Policy, published: dict[int, dict[str, pa.Table]], release_id: str
) -> dict[int, list[dict[str, Any]]]:
    """Gate checks per tier for every aggregate with a small-cell rule."""
    targets = [
        (t.tier, d)
        for t in policy.tiers
        if t.tier in published
        for d in t.datasets
        if d.aggregate and d.aggregate.min_cell
    ]
    if not targets:
        return {}
    lake = connect(PIPELINE)
    con = duckdb.connect()
    sources = {d.source for t in policy.tiers for d in t.datasets if d.aggregate}
    for name, table in load_sources(lake, release_id, sources).items():
        con.register(name, table)
    ctx = BuildContext(policy=policy)
    checks: dict[int, list[dict[str, Any]]] = {}
    tables = []
    suppressed_parts = []
    for t in policy.tiers:
        for ds in t.datasets:
            if not ds.aggregate:
                continue
            truth = build_dataset(ds, con, ctx)  # counts recomputed from validated data
            raw = truth.raw if truth.raw is not None else truth.table
            count = count_column(ds)
            if ds.aggregate.min_cell:
                shown = published[t.tier][ds.name]
                hidden = pc.is_null(shown.column(count)).to_numpy(zero_copy_only=False)
                agrees = shown.num_rows == raw.num_rows and bool(
                    pc.all(
                        pc.or_kleene(
                            pc.is_null(shown.column(count)),
                            pc.equal(shown.column(count), raw.column(count)),
                        )
                    ).as_py()
                )
                checks.setdefault(t.tier, []).append(
                    {
                        "check": "published counts equal the night's counts",
                        "dataset": ds.name,
                        "passed": agrees,
                        "detail": f"{shown.num_rows} cells",
                    }
                )
                tables.append(
                    linked_table(
                        ds.name,
                        ds,
                        raw,
                        fixed_public=False,
                        primary=np.asarray(hidden, bool),
                        lower=truth.lower,
                    )
                )
                suppressed_parts.append(np.asarray(hidden, bool))
            else:
                tables.append(linked_table(f"tier{t.tier}.{ds.name}", ds, raw, fixed_public=True))
                suppressed_parts.append(np.zeros(raw.num_rows, bool))
    system = build_system(tables)
    suppressed = np.concatenate(suppressed_parts)
    result = system.audit(suppressed)
    public = determined_by_public(system)
    for tier_no, ds in targets:
        cells = system.cells(ds.name)
        exposed = (~result.ok[cells]) & ~public[cells]
        finite = result.hi[cells][suppressed[cells]]
        checks.setdefault(tier_no, []).append(
            {
                "check": f"no suppressed cell recoverable (LP audit, width >= {result.min_width})",
                "dataset": ds.name,
                "passed": not exposed.any(),
                "detail": f"{int(suppressed[cells].sum())} suppressed, "
                f"{int(exposed.sum())} exposed, "
                f"{int(np.isinf(finite).sum())} unbounded, "
                f"{int(public[cells].sum())} public via tier-1 totals; "
                f"{result.lp_solves} LP solves",
            }
        )
    return checks
