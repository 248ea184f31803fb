"""Great Expectations suites, one per canonical dataset, derived from canonical.yaml.

Suites are code, versioned with the project: the schema (exact column set), required columns
not null, keys unique, coded columns inside their code sets, numeric ranges. Each expectation
carries `meta.severity` (`critical` stops every tier built from the dataset; `warning` publishes
and is reported) and `meta.rule`, the short name operators see in logs.
"""

from __future__ import annotations

from typing import Any

from datashare.sources.canonical import Dataset, model

__all__ = ["build_suite", "expectation_specs"]


def expectation_specs(ds: Dataset) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(expectation class name, kwargs, meta) for one dataset; GX-free so it is easy to test."""
    specs: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    specs.append(
        (
            "ExpectTableColumnsToMatchSet",
            {"column_set": ds.column_names, "exact_match": True},
            {"severity": "critical", "rule": "schema: exact column set"},
        )
    )
    for col in ds.columns:
        if col.required:
            specs.append(
                (
                    "ExpectColumnValuesToNotBeNull",
                    {"column": col.name},
                    {"severity": "critical", "rule": f"{col.name}: required"},
                )
            )
        if col.code_set:
            specs.append(
                (
                    "ExpectColumnValuesToBeInSet",
                    {"column": col.name, "value_set": list(model().code_sets[col.code_set])},
                    {"severity": "critical", "rule": f"{col.name}: in code set {col.code_set}"},
                )
            )
        if col.min is not None or col.max is not None:
            specs.append(
                (
                    "ExpectColumnValuesToBeBetween",
                    {"column": col.name, "min_value": col.min, "max_value": col.max},
                    {
                        "severity": "critical",
                        "rule": f"{col.name}: between {col.min} and {col.max}",
                    },
                )
            )
    if len(ds.key) == 1:
        specs.append(
            (
                "ExpectColumnValuesToBeUnique",
                {"column": ds.key[0]},
                {"severity": "critical", "rule": f"key {ds.key[0]} unique"},
            )
        )
    else:
        specs.append(
            (
                "ExpectCompoundColumnsToBeUnique",
                {"column_list": list(ds.key)},
                {"severity": "critical", "rule": f"key ({', '.join(ds.key)}) unique"},
            )
        )
    return specs


def build_suite(ds: Dataset) -> Any:
    """The GX ExpectationSuite of one canonical dataset."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=f"canonical.{ds.name}")
    for cls_name, kwargs, meta in expectation_specs(ds):
        cls = getattr(gx.expectations, cls_name)
        suite.add_expectation(cls(**kwargs, meta=meta))
    return suite
