"""The tier policy loads, and inconsistent policies are refused with a message naming the rule."""

from __future__ import annotations

import re

import pytest
import yaml

from datashare.errors import ConfigError
from datashare.policy import load_policy, parse_policy
from datashare.policy.model import DEFAULT_POLICY
from datashare.policy.render import render_tier
from datashare.sources.canonical import model
from datashare.tiers.views import VIEWS

RAW = yaml.safe_load(DEFAULT_POLICY.read_text())


def _edited(edit) -> str:
    doc = yaml.safe_load(DEFAULT_POLICY.read_text())
    edit(doc)
    return yaml.safe_dump(doc, sort_keys=False)


def test_default_policy_has_four_tiers() -> None:
    p = load_policy()
    assert [t.tier for t in p.tiers] == [1, 2, 3, 4]
    assert [t.bucket for t in p.tiers] == [
        "bps-tier1-essential",
        "bps-tier2-aggregate",
        "bps-tier3-directory",
        "bps-tier4-research",
    ]
    assert re.fullmatch(r"\d{4}\.\d{2}\.\d+", p.version)


def test_every_column_is_classified() -> None:
    p = load_policy()
    for ds in model().datasets.values():
        for c in ds.column_names:
            p.classify(ds.name, c)
    for v in VIEWS.values():
        for c in v.columns:
            p.classify(v.name, c)


def _tier(doc: dict, n: int) -> dict:
    return next(t for t in doc["tiers"] if t["tier"] == n)


def test_sensitive_column_in_tier3_is_refused() -> None:
    text = _edited(lambda d: _tier(d, 3)["datasets"][0]["columns"].update({"ell": "keep"}))
    with pytest.raises(ConfigError, match=r"tier 3 dataset student_directory: column ell"):
        parse_policy(text)


def test_raw_student_id_in_tier4_is_refused() -> None:
    text = _edited(lambda d: _tier(d, 4)["datasets"][0]["columns"].update({"student_id": "keep"}))
    with pytest.raises(ConfigError, match=r"student_id \(direct_identifier\) may not be released"):
        parse_policy(text)


def test_tier3_must_exclude_opted_out_students() -> None:
    text = _edited(lambda d: _tier(d, 3)["datasets"][0].pop("exclude_if"))
    with pytest.raises(ConfigError, match="must exclude rows where directory_opt_out"):
        parse_policy(text)


def test_tier2_minimum_cell_size_is_enforced() -> None:
    text = _edited(lambda d: _tier(d, 2)["datasets"][0].update({"min_cell": 5}))
    with pytest.raises(ConfigError, match="min_cell must be at least 10"):
        parse_policy(text)


def test_tier1_may_not_summarise_sensitive_columns() -> None:
    def edit(d: dict) -> None:
        _tier(d, 1)["datasets"][2]["measures"]["absence"] = {"mean": "attendance_rate"}

    with pytest.raises(ConfigError, match="may not receive even in aggregate"):
        parse_policy(_edited(edit))


def test_unclassified_column_is_refused() -> None:
    text = _edited(lambda d: d["classification"].pop("home_zip"))
    with pytest.raises(ConfigError, match="home_zip is not classified"):
        parse_policy(text)


def test_schema_errors_name_the_place() -> None:
    text = _edited(lambda d: _tier(d, 2)["datasets"][0].update({"form": "magic"}))
    with pytest.raises(ConfigError, match="does not match its schema at tiers/1/datasets/0"):
        parse_policy(text)


def test_policy_show_matches_the_policy() -> None:
    """The human rendering lists exactly the datasets and columns the policy releases."""
    p = load_policy()
    for tier in p.tiers:
        text = render_tier(p, tier)
        assert f"s3://{tier.bucket}" in text
        shown = set(re.findall(r"^  \* (\w+) ", text, flags=re.M))
        assert shown == {d.name for d in tier.datasets}
        for ds in tier.datasets:
            for col in ds.columns:
                if ds.form == "microdata":
                    assert re.search(rf"^      - {col.name}: ", text, flags=re.M), col.name
            if ds.aggregate and ds.aggregate.min_cell:
                assert f"1-{ds.aggregate.min_cell - 1} students are suppressed" in text
