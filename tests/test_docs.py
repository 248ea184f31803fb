"""The documentation stays in step with what the code defines."""

from __future__ import annotations

from pathlib import Path

from datashare.policy import load_policy
from datashare.sources.canonical import model

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_sources_doc_lists_every_canonical_dataset_and_column() -> None:
    text = (DOCS / "sources.md").read_text()
    for ds in model().datasets.values():
        assert f"### `{ds.name}`" in text, ds.name
        section = text.split(f"### `{ds.name}`", 1)[1].split("### ", 1)[0]
        for col in ds.columns:
            assert f"| `{col.name}` | {col.type_name} |" in section, (ds.name, col.name)


def test_lake_doc_lists_every_bucket() -> None:
    text = (DOCS / "lake.md").read_text()
    for tier in load_policy().tiers:
        assert f"`{tier.bucket}`" in text


def test_validation_doc_lists_every_defect_and_its_outcome() -> None:
    from datashare.synth.defects import DEFECTS

    text = (DOCS / "validation.md").read_text()
    for name in DEFECTS:
        assert f"| `{name}` |" in text, name
