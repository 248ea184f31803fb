"""Validate one canonical dataset with Great Expectations; decide its fate without values.

GX is asked for counts only (`partial_unexpected_count: 0`), so neither the stored result nor
the Data Docs rendered from it contain a student-level value. For row-level rules whose
severity is `quarantine`, the failing rows are singled out with the same rule evaluated by
pyarrow, and the two counts must agree.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datashare.columnar import dictionary_codes
from datashare.errors import DataShareError
from datashare.sources.canonical import model
from datashare.validation.checks import CheckContext, add_check_columns, derived_checks
from datashare.validation.rules import Contracts, Rule, contracts, rules_for

__all__ = ["Finding", "ValidationReport", "keys_lost", "validate_table", "validate_volume"]

_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
# Keys of a GX result that could carry values; dropped before a result is stored or rendered.
_VALUE_KEYS = (
    "partial_unexpected_list",
    "partial_unexpected_index_list",
    "partial_unexpected_counts",
    "unexpected_list",
    "unexpected_index_list",
    "unexpected_index_query",
    "details",
)


@dataclass(frozen=True)
class Finding:
    dataset: str
    rule: str
    kind: str
    severity: str
    description: str
    unexpected_count: int | None
    rows: int

    def line(self) -> str:
        count = (
            f"{self.unexpected_count} of {self.rows} rows"
            if self.unexpected_count is not None
            else "table-level"
        )
        return f"[{self.severity}] {self.dataset}: {self.rule} ({self.description}): {count}"


@dataclass
class ValidationReport:
    dataset: str
    rows: int
    evaluated: int
    findings: list[Finding] = field(default_factory=list)
    quarantined: int = 0
    quarantine_max_share: float = 0.0
    seconds: float = 0.0
    gx_result: dict[str, Any] = field(default_factory=dict, repr=False)
    quarantine_mask: np.ndarray | None = field(default=None, repr=False)
    rule_masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def quarantine_table(self, table: pa.Table) -> pa.Table | None:
        """The quarantined rows with `_record` (1-based row number) and `_rules` (rule ids)."""
        if self.quarantine_mask is None:
            return None
        idx = np.flatnonzero(self.quarantine_mask)
        labels = [
            pa.array(np.where(m[idx], rule, None), pa.string())
            for rule, m in self.rule_masks.items()
        ]
        rules = (
            pc.binary_join_element_wise(*labels, ";", null_handling="skip")
            if len(labels) > 1
            else labels[0]
        )
        out = table.take(pa.array(idx))
        return out.append_column("_record", pa.array(idx + 1)).append_column("_rules", rules)

    @property
    def critical(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "critical"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def success(self) -> bool:
        return not self.critical

    def summary(self) -> str:
        head = (
            f"{self.dataset}: {self.rows} rows, {self.evaluated} rules: "
            f"{len(self.critical)} critical, {self.quarantined} rows quarantined, "
            f"{len(self.warnings)} warnings"
        )
        return "\n".join([head, *("  " + f.line() for f in self.findings)])

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "rows": self.rows,
            "evaluated": self.evaluated,
            "success": self.success,
            "quarantined": self.quarantined,
            "quarantine_max_share": self.quarantine_max_share,
            "seconds": round(self.seconds, 3),
            "findings": [asdict(f) for f in self.findings],
        }


def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every in-memory batch below this size (an md5 over pandas' hash of every
    # cell: 3.2 s of the 9M-row attendance batch) only to put it in the batch markers, which
    # `sanitize` removes anyway. A threshold of 0 skips it; results are otherwise unchanged.
    pandas_execution_engine.HASH_THRESHOLD = 0

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _encode_strings(table: pa.Table) -> dict[str, pa.DictionaryArray]:
    """Every string column dictionary-encoded once, for the compound key and for pandas."""
    return {
        f.name: dictionary_codes(table.column(f.name))
        for f in table.schema
        if pa.types.is_string(f.type)
    }


def _to_pandas(table: pa.Table, encoded: dict[str, pa.DictionaryArray]) -> Any:
    """Strings as categoricals: GX's pandas checks run on the codes, several times faster."""
    cols = {name: encoded.get(name, table.column(name)) for name in table.column_names}
    return pa.table(cols).to_pandas()


def sanitize(result: dict[str, Any]) -> dict[str, Any]:
    """A GX suite result with every field that could carry a data value removed."""
    for r in result.get("results", []):
        for key in _VALUE_KEYS:
            (r.get("result") or {}).pop(key, None)
        r.pop("exception_info", None)
    meta = result.get("meta", {})
    meta.pop("batch_markers", None)
    return result


def run_suite(name: str, rules: list[Rule], df: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run `rules` on a pandas frame; returns ({rule id: GX result}, sanitized suite result)."""
    import great_expectations as gx

    ctx = _context()
    batch = (
        ctx.data_sources.add_pandas(f"staging_{name}")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("night")
    )
    # Built whole, then added once: adding expectations one by one to a stored suite rewrites
    # the store each time (a third of GX's time on small datasets).
    suite = ctx.suites.add(
        gx.ExpectationSuite(
            name=f"canonical.{name}",
            expectations=[
                getattr(gx.expectations, r.expectation)(**r.kwargs, meta=r.meta) for r in rules
            ],
        )
    )
    vd = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}.night", data=batch, suite=suite)
    )
    result = vd.run(batch_parameters={"dataframe": df}, result_format=_RESULT_FORMAT)
    by_rule = {}
    for r in result.results:
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise DataShareError(
                f"validation of {name}: rule {r.expectation_config.meta.get('rule')}"
                f" could not be evaluated ({r.exception_info.get('exception_message')})"
            )
        by_rule[r.expectation_config.meta["rule"]] = r
    return by_rule, sanitize(result.to_json_dict())


def _row_mask(rule: Rule, table: pa.Table) -> np.ndarray:
    """Rows failing a row-level rule, evaluated with pyarrow (mirrors the GX expectation)."""
    col = table.column(rule.kwargs["column"])
    if rule.expectation == "ExpectColumnValuesToNotBeNull":
        bad = pc.is_null(col)
    elif rule.expectation == "ExpectColumnValuesToBeInSet":
        value_set = pa.array(rule.kwargs["value_set"], type=col.type)
        bad = pc.and_(pc.is_valid(col), pc.invert(pc.is_in(col, value_set=value_set)))
    elif rule.expectation == "ExpectColumnValuesToBeBetween":
        lo, hi = rule.kwargs.get("min_value"), rule.kwargs.get("max_value")
        bad = pa.array(np.zeros(table.num_rows, bool))
        if lo is not None:
            bad = pc.or_(bad, pc.fill_null(pc.less(col, lo), False))
        if hi is not None:
            bad = pc.or_(bad, pc.fill_null(pc.greater(col, hi), False))
    else:
        raise DataShareError(f"rule {rule.id}: {rule.expectation} cannot quarantine rows")
    return np.asarray(pc.fill_null(bad, False).to_numpy(zero_copy_only=False), dtype=bool)


def validate_table(
    dataset: str,
    table: pa.Table,
    night: CheckContext,
    others: dict[str, pa.Table] | None = None,
    c: Contracts | None = None,
) -> ValidationReport:
    """Validate one canonical dataset; `others` holds the datasets its cross-checks read."""
    started = time.perf_counter()
    c = c or contracts()
    ds = model()[dataset]
    rules = rules_for(ds, night, c)
    encoded = _encode_strings(table)
    enriched = add_check_columns(table, ds, derived_checks(ds, night), others or {}, encoded)
    by_rule, gx_result = run_suite(dataset, rules, _to_pandas(enriched, encoded))
    n = table.num_rows
    findings: list[Finding] = []
    mask = np.zeros(n, dtype=bool)
    rule_masks: dict[str, np.ndarray] = {}
    for rule in rules:
        res = by_rule[rule.id]
        if res.success:
            continue
        count = (res.result or {}).get("unexpected_count")
        findings.append(
            Finding(dataset, rule.id, rule.kind, rule.severity, rule.description, count, n)
        )
        if rule.severity == "quarantine" and rule.row_level:
            rows = _row_mask(rule, enriched)
            if count is not None and int(rows.sum()) != int(count):
                raise DataShareError(
                    f"validation of {dataset}: rule {rule.id} counts "
                    f"{count} rows in GX but {int(rows.sum())} in pyarrow"
                )
            mask |= rows
            rule_masks[rule.id] = rows
    quarantined = int(mask.sum())
    share = c.max_share(dataset)
    if quarantined and quarantined > share * n:
        findings.append(
            Finding(
                dataset,
                "quarantine.max_share",
                "quarantine",
                "critical",
                f"at most {share:.2%} of rows may be quarantined; {quarantined / n:.2%} were",
                quarantined,
                n,
            )
        )
    return ValidationReport(
        dataset=dataset,
        rows=n,
        evaluated=len(rules),
        findings=findings,
        quarantined=quarantined,
        quarantine_max_share=share,
        seconds=time.perf_counter() - started,
        gx_result=gx_result,
        quarantine_mask=mask if quarantined else None,
        rule_masks=rule_masks,
    )


def keys_lost(dataset: str, tonight: pa.Table, previous: pa.Table | None) -> int:
    """How many of the last good night's keys are missing tonight (DuckDB EXCEPT)."""
    if previous is None or previous.num_rows == 0:
        return 0
    import duckdb

    key = list(model()[dataset].key)
    con = duckdb.connect()
    try:
        con.register("tonight", tonight.select(key))
        con.register("previous", previous.select(key))
        sql = "SELECT count(*) FROM (SELECT * FROM previous EXCEPT SELECT * FROM tonight)"
        return int(con.sql(sql).fetchone()[0])
    finally:
        con.close()


def validate_volume(
    dataset: str,
    tonight: pa.Table,
    previous: pa.Table | None,
    c: Contracts | None = None,
    *,
    lost: int | None = None,
) -> tuple[list[Finding], dict[str, Any], dict]:
    """Volume against the last good night: row count change and share of its keys lost.

    `lost` may be computed beforehand with `keys_lost` (e.g. on another thread)."""
    c = c or contracts()
    if previous is None:
        return [], {"baseline": None}, {}
    tol = c.volume_for(dataset)
    rows_now, rows_prev = tonight.num_rows, previous.num_rows
    change = (rows_now / rows_prev - 1.0) if rows_prev else (0.0 if not rows_now else 1.0)
    if lost is None:
        lost = keys_lost(dataset, tonight, previous)
    lost_share = lost / rows_prev if rows_prev else 0.0
    profile = {
        "rows_tonight": rows_now,
        "rows_previous": rows_prev,
        "row_change": round(change, 6),
        "keys_lost": lost,
        "keys_lost_share": round(lost_share, 6),
    }
    sev = c.severity(dataset, "volume", "volume")
    rules = [
        Rule(
            "volume.rows",
            "volume",
            "ExpectColumnValuesToBeBetween",
            {
                "column": "row_change",
                "min_value": -tol["max_row_drop"],
                "max_value": tol["max_row_growth"],
            },
            sev,
            f"row count between -{tol['max_row_drop']:.0%} and +{tol['max_row_growth']:.0%} of "
            "the last good night's",
        ),
        Rule(
            "volume.keys",
            "volume",
            "ExpectColumnValuesToBeBetween",
            {"column": "keys_lost_share", "min_value": 0, "max_value": tol["max_key_loss"]},
            sev,
            f"at most {tol['max_key_loss']:.1%} of the last good night's keys missing",
        ),
    ]
    import pandas as pd

    by_rule, gx_result = run_suite(f"{dataset}_volume", rules, pd.DataFrame([profile]))
    findings = [
        Finding(
            dataset,
            r.id,
            r.kind,
            r.severity,
            f"{r.description} (tonight {rows_now} rows vs {rows_prev}; {lost} keys lost)",
            None,
            rows_now,
        )
        for r in rules
        if not by_rule[r.id].success
    ]
    return findings, profile, gx_result
