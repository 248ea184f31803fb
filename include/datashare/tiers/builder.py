"""Build one tier dataset from its policy entry: Arrow tables in, Arrow table out.

The policy says what; this module only knows how: `table` selects an allow-list of columns,
`aggregate` counts and averages by groups in long (subgroup, value) form and suppresses small
cells, `microdata` applies one treatment per output column (keep, tokenize, generalize) after
excluding the rows the policy excludes. DuckDB does the relational work; pyarrow the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from datashare.errors import ConfigError
from datashare.policy import DatasetSpec
from datashare.privacy.suppression import suppress_small_cells
from datashare.privacy.tokenize import Tokenizer

__all__ = ["BuiltDataset", "build_dataset", "generalize"]

ALL = "all"
_RATE_DIGITS = 4


@dataclass
class BuiltDataset:
    name: str
    table: pa.Table
    privacy: dict[str, Any] = field(default_factory=dict)


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


def _aggregate(spec: DatasetSpec, con: duckdb.DuckDBPyConnection) -> BuiltDataset:
    agg = spec.aggregate
    assert agg is not None
    by = ", ".join(_q(c) for c in agg.by)
    measures, support = [], {}
    for out, (fn, col) in agg.measures.items():
        expr, n_expr = _measure_sql(fn, col)
        measures.append(f"{expr} AS {_q(out)}")
        if n_expr:
            support[out] = f"__n_{out}"
            measures.append(f"{n_expr} AS {_q(support[out])}")
    m = ", ".join(measures)
    if agg.subgroups:
        parts = [
            f"SELECT {by}, '{ALL}' AS subgroup, '{ALL}' AS subgroup_value, {m} "
            f"FROM {_q(spec.source)} GROUP BY ALL"
        ]
        for sg in agg.subgroups:
            parts.append(
                f"SELECT {by}, '{sg}' AS subgroup, CAST({_q(sg)} AS VARCHAR) AS subgroup_value, "
                f"{m} FROM {_q(spec.source)} GROUP BY ALL"
            )
        sql = " UNION ALL ".join(parts) + " ORDER BY ALL"
    else:
        sql = f"SELECT {by}, {m} FROM {_q(spec.source)} GROUP BY ALL ORDER BY ALL"
    t = con.sql(sql).to_arrow_table()
    count_cols = [out for out, (fn, _) in agg.measures.items() if fn == "count"]
    privacy: dict[str, Any] = {}
    if agg.min_cell:
        if not count_cols:
            raise ConfigError(f"dataset {spec.name}: a suppressed aggregate needs a count")
        t, stats = suppress_small_cells(
            t,
            count=count_cols[0],
            min_cell=agg.min_cell,
            measures={out: support.get(out) for out in agg.measures if out != count_cols[0]},
        )
        privacy = {"min_cell": agg.min_cell, **stats}
    t = t.drop_columns([c for c in t.column_names if c.startswith("__n_")])
    return BuiltDataset(spec.name, t, privacy)


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


def build_dataset(
    spec: DatasetSpec, con: duckdb.DuckDBPyConnection, tokenizer: Tokenizer | None = None
) -> BuiltDataset:
    """Build `spec` from the relations registered on `con` (canonical datasets and views)."""
    if spec.form == "table":
        return _table(spec, con)
    if spec.form == "aggregate":
        return _aggregate(spec, con)
    if spec.form == "microdata":
        return _microdata(spec, con, tokenizer)
    raise ConfigError(f"unknown form {spec.form!r}")
