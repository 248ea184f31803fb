"""Plain-language rendering of the tier policy, for governance and legal review."""

from __future__ import annotations

from datashare.policy.model import DatasetSpec, Policy, Tier

__all__ = ["describe_column", "render_tier"]

_FN = {"count": "number of", "mean": "average", "rate": "share of"}
_TO = {"year": "year only", "year_month": "year and month only", "zip3": "first 3 digits"}


def describe_column(policy: Policy, ds: DatasetSpec, out: str) -> str:
    """How one output column of a microdata/table dataset is released."""
    col = next(c for c in ds.columns if c.name == out)
    cls = policy.classify(ds.source, col.source)
    label = cls.cls.replace("_", " ") + (", directory information" if cls.directory else "")
    if col.treatment == "keep":
        return f"{out}: as recorded ({label})"
    if col.treatment == "tokenize":
        return (
            f"{out}: keyed token of {col.source} under the tier-{ds.tier} key, not "
            f"reversible without it ({label})"
        )
    return f"{out}: {col.source} generalized to {_TO.get(col.to or '', col.to)} ({label})"


def _dataset_lines(policy: Policy, ds: DatasetSpec) -> list[str]:
    lines = [f"  * {ds.name} ({ds.form}, from {ds.source}): {ds.description}"]
    if ds.aggregate:
        agg = ds.aggregate
        lines.append(f"      grouped by: {', '.join(agg.by)}")
        if agg.subgroups:
            lines.append(
                f"      for each subgroup of: {', '.join(agg.subgroups)} (and all students)"
            )
        for out, (fn, col) in agg.measures.items():
            what = "students" if fn == "count" else col
            lines.append(f"      {out}: {_FN[fn]} {what}")
        if agg.min_cell:
            lines.append(
                f"      cells with 1-{agg.min_cell - 1} students are suppressed, with "
                "every figure computed from them"
            )
        return lines
    if ds.exclude_if:
        lines.append(f"      excludes students where: {', '.join(ds.exclude_if)}")
    lines += [f"      - {describe_column(policy, ds, c.name)}" for c in ds.columns]
    return lines


def render_tier(policy: Policy, tier: Tier) -> str:
    lines = [
        f"Tier {tier.tier}: {tier.title}  [policy {policy.version}]",
        f"  bucket: s3://{tier.bucket}   readers: {', '.join(tier.readers)}",
    ]
    if tier.audience:
        lines.append(f"  audience: {tier.audience}")
    lines.append("  datasets:")
    for ds in tier.datasets:
        lines += _dataset_lines(policy, ds)
    lines.append("  Anything not listed above is not released to this tier.")
    return "\n".join(lines)
