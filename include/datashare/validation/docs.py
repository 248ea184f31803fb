"""Great Expectations Data Docs for one night, rendered from stored (sanitized) results.

Each validate task stores its GX suite results without any data value; this module loads all of
them into one ephemeral GX context and builds a single static HTML site, which the pipeline
stores with the run. Nothing here ever sees the data itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["render_site"]


def render_site(results: dict[str, dict[str, Any]], out: Path, *, release_id: str) -> Path:
    """Build the Data Docs site for `results` ({batch name: GX suite result JSON}) in `out`."""
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    from datashare.validation.runner import _context

    ctx = _context()
    ctx.add_data_docs_site(
        site_name="night",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(out),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    schema = ExpectationSuiteValidationResultSchema()
    for batch, doc in sorted(results.items()):
        result = schema.load(doc)
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
            run_id=result.meta["run_id"],
            batch_identifier=f"{release_id}-{batch}",
        )
        ctx.validation_results_store.set(key, result)
    ctx.build_data_docs(site_names=["night"])
    return out / "index.html"
