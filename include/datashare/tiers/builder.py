"""Build one tier dataset from its policy entry: Arrow tables in, Arrow table out.

The policy says what; this module only knows how: `table` selects an allow-list of columns,
`aggregate` counts and averages by groups in long (subgroup, value) form and suppresses small
cells, `k_anonymous` generalizes quasi-identifiers with the optimal-lattice engine until every
group holds k students, `dp_count` counts over a public domain with OpenDP noise (charged to the
privacy budget first), `microdata` applies one treatment per output column (keep, tokenize,
generalize) after excluding the rows the policy excludes. DuckDB does the relational work;
pyarrow the rest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datashare.errors import ConfigError, DataShareError
from datashare.policy import DatasetSpec, Policy
from datashare.privacy.suppression import suppress_cells
from datashare.privacy.tokenize import Tokenizer

__all__ = ["BuildContext", "BuiltDataset", "build_dataset", "generalize", "top_bottom_code"]

ALL = "all"
_RATE_DIGITS = 4


@dataclass
class BuiltDataset:
    name: str
    table: pa.Table
    privacy: dict[str, Any] = field(default_factory=dict)
    # aggregates with small-cell rules: the counts before suppression, the primary pattern and
    # the attacker's lower bounds, for protection linked across tables (tiers/linked.py)
    raw: pa.Table | None = None
    primary: np.ndarray | None = None
    lower: np.ndarray | None = None


@dataclass
class BuildContext:
    """What building needs besides the data: the policy, the tier's tokenizer, and for
    differential privacy a way to charge the budget (called before any noise is drawn)."""

    policy: Policy
    tokenizer: Tokenizer | None = None
    charge_budget: Callable[[DatasetSpec, float, int], None] | None = None
    release_id: str = ""
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    # The tier's currently published table and manifest entry of a dataset, if any.
    previous: Callable[[str], tuple[pa.Table, dict[str, Any]] | None] | None = None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table(spec: DatasetSpec, con: duckdb.DuckDBPyConnection) -> BuiltDataset:
    cols = ", ".join(_q(c.source) for c in spec.columns)
    t = con.sql(f"SELECT {cols} FROM {_q(spec.source)} ORDER BY ALL").to_arrow_table()
    return BuiltDataset(spec.name, t)


def _measure_sql(fn: str, col: str) -> tuple[str, str | None]:
    """SQL for one measure and, for means and rates, the count of contributing rows."""
    if fn == "count":
        return f"count({_q(col)})::BIGINT", None
    if fn == "mean":
        return f"round(avg({_q(col)}), {_RATE_DIGITS})", f"count({_q(col)})::BIGINT"
    if fn == "rate":
        return (
            f"round(avg(CAST({_q(col)} AS DOUBLE)), {_RATE_DIGITS})",
            f"count({_q(col)})::BIGINT",
        )
    raise ConfigError(f"unknown aggregate function {fn!r}")


def subgroup_domain(column: str, dtype: pa.DataType) -> list[str]:
    """Every value a subgroup column can take (its canonical code set, or false/true), so each
    group lists every category: whether a row exists must not itself tell anything."""
    if pa.types.is_boolean(dtype):
        return ["false", "true"]
    from datashare.sources.canonical import model

    m = model()
    for ds in m.datasets.values():
        for c in ds.columns:
            if c.name == column and c.code_set:
                return list(m.code_sets[c.code_set])
    raise ConfigError(f"subgroup {column} has no code set: cannot list its categories")


def _aggregate_sql(
    spec: DatasetSpec, con: duckdb.DuckDBPyConnection, m: str, outputs: list[str]
) -> str:
    """Counts and measures per group; with subgroups, the `all` row and one row per category
    of each subgroup column for every group (zero-count categories included)."""
    agg = spec.aggregate
    assert agg is not None
    src = _q(spec.source)
    by = ", ".join(_q(c) for c in agg.by)
    if not agg.subgroups:
        return f"SELECT {by}, {m} FROM {src} GROUP BY ALL ORDER BY ALL"
    probe = con.sql(f"SELECT * FROM {src} LIMIT 0")
    types = dict(zip(probe.columns, (str(t) for t in probe.types), strict=True))
    measures = ", ".join(f"c.{_q(o)}" for o in outputs)
    on = " AND ".join(f"c.{_q(b)} IS NOT DISTINCT FROM g.{_q(b)}" for b in agg.by)
    parts = [
        f"SELECT {by}, '{ALL}' AS subgroup, '{ALL}' AS subgroup_value, 0 AS _order, {m} "
        f"FROM {src} GROUP BY ALL"
    ]
    for i, sg in enumerate(agg.subgroups, start=1):
        dtype = pa.bool_() if types[sg] == "BOOLEAN" else pa.string()
        values = ", ".join(f"('{v}')" for v in subgroup_domain(sg, dtype))
        parts.append(
            f"SELECT g.*, '{sg}' AS subgroup, d.v AS subgroup_value, {i} AS _order, {measures} "
            f"FROM (SELECT DISTINCT {by} FROM {src}) g CROSS JOIN (VALUES {values}) d(v) "
            f"LEFT JOIN (SELECT {by}, CAST({_q(sg)} AS VARCHAR) AS v, {m} FROM {src} "
            f"GROUP BY ALL) c ON {on} AND c.v = d.v"
        )
    order = ", ".join([*(_q(b) for b in agg.by), "_order", "subgroup_value"])
    return f"SELECT * EXCLUDE (_order) FROM ({' UNION ALL '.join(parts)}) ORDER BY {order}"


def _aggregate(spec: DatasetSpec, con: duckdb.DuckDBPyConnection) -> BuiltDataset:
    agg = spec.aggregate
    assert agg is not None
    measures, support, outputs = [], {}, []
    for out, (fn, col) in agg.measures.items():
        expr, n_expr = _measure_sql(fn, col)
        measures.append(f"{expr} AS {_q(out)}")
        outputs.append(out)
        if n_expr:
            support[out] = f"__n_{out}"
            measures.append(f"{n_expr} AS {_q(support[out])}")
            outputs.append(support[out])
    t = con.sql(_aggregate_sql(spec, con, ", ".join(measures), outputs)).to_arrow_table()
    count_cols = [out for out, (fn, _) in agg.measures.items() if fn == "count"]
    for c in count_cols + list(support.values()):
        t = t.set_column(t.schema.get_field_index(c), c, pc.fill_null(t.column(c), 0))
    privacy: dict[str, Any] = {}
    built = BuiltDataset(spec.name, t, privacy)
    if agg.min_cell:
        if not count_cols:
            raise ConfigError(f"dataset {spec.name}: a suppressed aggregate needs a count")
        count = count_cols[0]
        primary, lower = primary_pattern(t, count, agg.min_cell, bool(agg.subgroups))
        built.raw, built.primary, built.lower = t, primary, lower
        t, stats = suppress_cells(
            t,
            count=count,
            mask=primary,
            min_cell=agg.min_cell,
            measures={out: support.get(out) for out in agg.measures if out != count},
        )
        privacy.update({"min_cell": agg.min_cell, **stats})
    t = t.drop_columns([c for c in t.column_names if c.startswith("__n_")])
    if agg.top_bottom:
        names, below, above = agg.top_bottom
        t, coded = top_bottom_code(t, names, below, above)
        privacy["top_bottom_coded"] = {"below": below, "above": above, "values": coded}
        # keep `suppressed` last, after the *_coded flags (the published column order)
        if "suppressed" in t.column_names:
            col = t.column("suppressed")
            t = t.drop_columns(["suppressed"]).append_column("suppressed", col)
    built.table = t
    return built


def primary_pattern(
    table: pa.Table, count: str, min_cell: int, subgroups: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Cells suppressed for their own sake, and the attacker's lower bound on each cell.

    Every count under min_cell is suppressed, zero included: with all categories listed, a
    published 0 says that nobody in the group has the attribute (and, in a small group, what
    everyone else has). So a suppressed category may be empty (lower bound 0), while a group's
    `all` row exists only if the group has a student (lower bound 1).
    """
    v = table.column(count).to_numpy(zero_copy_only=False).astype(np.int64)
    primary = v < min_cell
    lower = np.ones(len(v))
    if subgroups:
        is_all = np.asarray(
            pc.equal(table.column("subgroup"), ALL).to_numpy(zero_copy_only=False), bool
        )
        lower[~is_all] = 0.0
    return primary, lower


def top_bottom_code(
    table: pa.Table, measures: tuple[str, ...], below: float, above: float
) -> tuple[pa.Table, int]:
    """Publish shares under `below` as `below` and over `above` as `above`, flagged in
    `<measure>_coded` ('<' or '>'): 0 % or 100 % of a group says something about every member."""
    coded = 0
    for m in measures:
        v = table.column(m)
        low = pc.fill_null(pc.less(v, below), False)
        high = pc.fill_null(pc.greater(v, above), False)
        flag = pc.if_else(low, "<", pc.if_else(high, ">", pa.scalar(None, pa.string())))
        value = pc.if_else(low, below, pc.if_else(high, above, v))
        coded += int(pc.sum(pc.or_(low, high)).as_py() or 0)
        table = table.set_column(table.schema.get_field_index(m), m, value)
        table = table.append_column(f"{m}_coded", flag)
    return table, coded


def generalize(values: pa.Array | pa.ChunkedArray, to: str) -> pa.Array | pa.ChunkedArray:
    """Coarsen a column: dates to year or year-month; ZIP codes to their 3-digit prefix."""
    if to == "year":
        return pc.cast(pc.year(values), pa.int16())
    if to == "year_month":
        return pc.strftime(values, format="%Y-%m")
    if to == "zip3":
        return pc.binary_join_element_wise(pc.utf8_slice_codeunits(values, 0, 3), "**", "")
    raise ConfigError(f"unknown generalization {to!r}")


def _microdata(
    spec: DatasetSpec, con: duckdb.DuckDBPyConnection, tokenizer: Tokenizer | None
) -> BuiltDataset:
    sources = sorted({c.source for c in spec.columns})
    where = ""
    if spec.exclude_if:
        # Fail closed: a row whose flag is unknown (NULL) is excluded too.
        where = "WHERE " + " AND ".join(f"{_q(f)} IS FALSE" for f in spec.exclude_if)
    t = con.sql(
        f"SELECT {', '.join(_q(s) for s in sources)} FROM {_q(spec.source)} {where}"
    ).to_arrow_table()
    excluded = con.sql(f"SELECT count(*) FROM {_q(spec.source)}").fetchone()[0] - t.num_rows
    out: dict[str, Any] = {}
    tokenized: dict[str, Any] = {}
    generalized: dict[str, str] = {}
    for col in spec.columns:
        values = t.column(col.source)
        if col.treatment == "keep":
            out[col.name] = values
        elif col.treatment == "tokenize":
            if tokenizer is None:
                raise ConfigError(f"dataset {spec.name}: tokenization needs the tier key")
            out[col.name] = tokenizer.tokenize(values)
            tokenized[col.name] = {
                "source": col.source,
                "key_version": tokenizer.version,
                "scheme": "AES-CMAC-128 (NIST SP 800-38B), base32",
            }
        else:
            assert col.to is not None
            out[col.name] = generalize(values, col.to)
            generalized[col.name] = f"{col.source} -> {col.to}"
    privacy: dict[str, Any] = {}
    if tokenized:
        privacy["tokenized"] = tokenized
    if generalized:
        privacy["generalized"] = generalized
    if spec.exclude_if:
        privacy["excluded"] = {"if": list(spec.exclude_if), "rows": int(excluded)}
    return BuiltDataset(spec.name, pa.table(out), privacy)


def _k_anonymous(spec: DatasetSpec, con: duckdb.DuckDBPyConnection, policy: Policy) -> BuiltDataset:
    from datashare.privacy.kanon import NoSolutionError, anonymize, apply_transformation
    from datashare.tiers.hierarchies import build_hierarchy, qi_values

    ka = spec.k_anon
    assert ka is not None
    sources = sorted({src for src, _ in ka.quasi_identifiers.values()} | set(ka.keep))
    t = con.sql(
        f"SELECT {', '.join(_q(c) for c in sources)} FROM {_q(spec.source)}"
    ).to_arrow_table()
    cols: dict[str, Any] = {}
    hierarchies = {}
    for out, (src, name) in ka.quasi_identifiers.items():
        cols[out] = qi_values(t.column(src))
        hierarchies[out] = build_hierarchy(name, policy.hierarchies[name], cols[out])
    for col in ka.keep:
        cols[col] = t.column(col)
    table = pa.table(cols)
    l_attr, l_value = ka.l_diversity or (None, None)
    try:
        result = anonymize(
            table,
            hierarchies,
            k=ka.k,
            suppression_limit=ka.suppression_limit,
            l=l_value,
            sensitive=l_attr,
        )
    except NoSolutionError as exc:
        raise DataShareError(
            f"dataset {spec.name}: no generalization reaches k={ka.k} within "
            f"the {ka.suppression_limit:.0%} suppression limit"
        ) from exc
    released = apply_transformation(table, result, suppressed="remove")
    privacy: dict[str, Any] = {
        "quasi_identifiers": list(ka.quasi_identifiers),
        "k": ka.k,
        "suppression_limit": ka.suppression_limit,
        "generalization_levels": dict(result.levels),
        "suppressed_records": int(result.suppressed),
        "min_class_size": int(result.min_class_size),
        "information_loss": float(result.information_loss),
        "metric": "non-uniform entropy (monotonic, as ARX)",
    }
    if ka.l_diversity:
        privacy["l_diversity"] = {"attribute": l_attr, "l": l_value}
    return BuiltDataset(spec.name, released, privacy)


def _dp_count(spec: DatasetSpec, con: duckdb.DuckDBPyConnection, ctx: BuildContext) -> BuiltDataset:
    from datashare.privacy.dp import dp_counts

    dp = spec.dp
    assert dp is not None
    t = con.sql(
        f"SELECT student_id, school_year, {', '.join(_q(c) for c in dp.by)} FROM {_q(spec.source)}"
    ).to_arrow_table()
    years = pc.unique(t.column("school_year")).to_pylist()
    if len(years) != 1:
        raise DataShareError(f"dataset {spec.name}: expected one school year, got {len(years)}")
    year = int(years[0])
    # Republishing the last noisy table is post-processing: it costs no budget. Fresh noise is
    # drawn only when the refresh period has passed (or the school year changed).
    prev = ctx.previous(spec.name) if ctx.previous else None
    if prev is not None:
        table, entry = prev
        refreshed = dt.datetime.fromisoformat(
            entry.get("refreshed_at", "1970-01-01T00:00:00+00:00")
        )
        age = ctx.now - refreshed
        if entry.get("school_year") == year and age < dt.timedelta(days=dp.refresh_days):
            privacy = {
                k: v
                for k, v in entry.items()
                if k not in ("description", "form", "rows", "files", "columns")
            }
            privacy["carried_forward"] = True
            return BuiltDataset(spec.name, table.select(spec.output_columns), privacy)
    if ctx.charge_budget is None:
        raise ConfigError(f"dataset {spec.name}: differential privacy needs the budget ledger")
    # Charge first: once noise is drawn the budget is spent, published or not.
    ctx.charge_budget(spec, dp.epsilon, year)
    domain = {col: list(ctx.policy.domains[name]) for col, name in dp.domain.items()}
    result = dp_counts(
        t.drop_columns(["school_year"]),
        list(dp.by),
        epsilon=dp.epsilon,
        domain=domain,
        max_contributions=dp.max_contributions,
        unit="student_id",
        mechanism=dp.mechanism,
    )
    privacy = {
        **result.manifest_entry(),
        "annual_cap": dp.annual_cap,
        "school_year": year,
        "refresh_days": dp.refresh_days,
        "refreshed_at": ctx.now.isoformat(),
        "noise_release": ctx.release_id,
        "carried_forward": False,
    }
    return BuiltDataset(spec.name, result.table, privacy)


def build_dataset(
    spec: DatasetSpec, con: duckdb.DuckDBPyConnection, ctx: BuildContext
) -> BuiltDataset:
    """Build `spec` from the relations registered on `con` (canonical datasets and views)."""
    if spec.form == "table":
        return _table(spec, con)
    if spec.form == "aggregate":
        return _aggregate(spec, con)
    if spec.form == "microdata":
        return _microdata(spec, con, ctx.tokenizer)
    if spec.form == "k_anonymous":
        return _k_anonymous(spec, con, ctx.policy)
    if spec.form == "dp_count":
        return _dp_count(spec, con, ctx)
    raise ConfigError(f"unknown form {spec.form!r}")
