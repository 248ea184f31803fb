"""Source adapters: each maps one BPS export format into the canonical staging model.

`open_source(format, location, ctx)` is the one entry point; the nightly DAG takes the format
from configuration (the `source_format` parameter, the Airflow Variable `datashare_source_format`
or `$DATASHARE_SOURCE_FORMAT`), never from code edits.
"""

from __future__ import annotations

from importlib import import_module

from datashare.errors import ConfigError
from datashare.sources.base import Extract, ExtractContext

__all__ = ["ADAPTERS", "open_source"]

#: source_format -> module implementing `open_extract(location, ctx) -> Extract`
ADAPTERS: dict[str, str] = {
    "csv_drop": "datashare.sources.csv_drop",
    "edfi_xml": "datashare.sources.edfi",
    "oneroster": "datashare.sources.oneroster",
    "sql": "datashare.sources.sql",
}


def open_source(source_format: str, location: str, ctx: ExtractContext) -> Extract:
    if source_format not in ADAPTERS:
        raise ConfigError(f"unknown source format {source_format!r}; known: {sorted(ADAPTERS)}")
    return import_module(ADAPTERS[source_format]).open_extract(location, ctx)
