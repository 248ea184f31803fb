"""Run a dataset's suite with Great Expectations and summarise the outcome without values.

GX is asked for counts only (`partial_unexpected_count: 0`, no unexpected rows or index
lists), so neither the summary nor the stored result ever contains a student-level value.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from datashare.sources.canonical import model
from datashare.validation.suites import build_suite

__all__ = ["Finding", "ValidationReport", "validate_table"]

_RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": 0,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}


@dataclass(frozen=True)
class Finding:
    dataset: str
    rule: str
    expectation: str
    column: str | None
    severity: str
    unexpected_count: int | None
    unexpected_percent: float | None
    rows: int

    def line(self) -> str:
        count = (
            f"{self.unexpected_count} of {self.rows} rows"
            if self.unexpected_count is not None
            else "table-level"
        )
        return f"[{self.severity}] {self.dataset}: {self.rule} ({self.expectation}): {count}"


@dataclass
class ValidationReport:
    dataset: str
    rows: int
    success: bool
    evaluated: int
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def critical(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "critical"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity != "critical"]

    def summary(self) -> str:
        head = (
            f"{self.dataset}: {self.rows} rows, {self.evaluated} expectations, "
            f"{len(self.critical)} critical and {len(self.warnings)} warning failures"
        )
        return "\n".join([head, *("  " + f.line() for f in self.findings)])

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["findings"] = [asdict(f) for f in self.findings]
        return d


def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def validate_table(dataset: str, table: pa.Table) -> ValidationReport:
    """Validate one canonical dataset held as an Arrow table."""
    import great_expectations as gx

    started = time.perf_counter()
    ds = model()[dataset]
    ctx = _context()
    asset = ctx.data_sources.add_pandas(f"staging_{dataset}").add_dataframe_asset(dataset)
    batch_def = asset.add_batch_definition_whole_dataframe("night")
    suite = ctx.suites.add(build_suite(ds))
    vd = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{dataset}.night", data=batch_def, suite=suite)
    )
    df = table.to_pandas()
    result = vd.run(batch_parameters={"dataframe": df}, result_format=_RESULT_FORMAT)
    findings = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        meta = cfg.meta or {}
        res = r.result or {}
        findings.append(
            Finding(
                dataset=dataset,
                rule=meta.get("rule", cfg.type),
                expectation=cfg.type,
                column=cfg.kwargs.get("column"),
                severity=meta.get("severity", "critical"),
                unexpected_count=res.get("unexpected_count"),
                unexpected_percent=res.get("unexpected_percent"),
                rows=table.num_rows,
            )
        )
    return ValidationReport(
        dataset=dataset,
        rows=table.num_rows,
        success=not any(f.severity == "critical" for f in findings),
        evaluated=len(result.results),
        findings=findings,
        seconds=time.perf_counter() - started,
    )
