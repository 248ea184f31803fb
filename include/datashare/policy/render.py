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


def _hierarchy_text(policy: Policy, name: str) -> str:
    h = policy.hierarchies[name]
    if h["type"] == "flat":
        return "as recorded, or withheld"
    if h["type"] == "interval":
        return "in ranges of " + ", ".join(f"{w:g}" for w in h["widths"]) + " years, or withheld"
    if h["type"] == "mask":
        return (
            "with the last "
            + ", ".join(str(s) for s in h["steps"])
            + " characters masked, or withheld"
        )
    return f"grouped in {len(h['levels'])} coarser level(s), or withheld"


def _dataset_lines(policy: Policy, ds: DatasetSpec) -> list[str]:
    lines = [f"  * {ds.name} ({ds.form}, from {ds.source}): {ds.description}"]
    if ds.k_anon:
        ka = ds.k_anon
        lines.append(
            f"      every combination of the quasi-identifiers below is shared by at "
            f"least k={ka.k} students; up to {ka.suppression_limit:.0%} of records may "
            "be withheld to get there"
        )
        for out, (src, h) in ka.quasi_identifiers.items():
            origin = f" (from {src})" if src != out else ""
            lines.append(f"      - {out}{origin}: {_hierarchy_text(policy, h)}")
        lines.append(f"      kept as recorded: {', '.join(ka.keep)}")
        if ka.l_diversity:
            lines.append(
                f"      each group holds at least {ka.l_diversity[1]:g} distinct values "
                f"of {ka.l_diversity[0]}"
            )
        return lines
    if ds.dp:
        dp = ds.dp
        lines.append(
            f"      counts by {', '.join(dp.by)} over every value of the public domain"
            f" ({', '.join(dp.domain.values())}), with {dp.mechanism} noise"
        )
        lines.append(
            f"      epsilon {dp.epsilon:g} per release; at most {dp.annual_cap:g} per "
            f"school year (further releases are refused); each student counted at most "
            f"{dp.max_contributions} time(s)"
        )
        return lines
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
                "every figure computed from them, and enough other cells that no suppressed "
                "value can be recovered from this or any other published table"
            )
        if agg.top_bottom:
            measures, below, above = agg.top_bottom
            lines.append(
                f"      {', '.join(measures)}: shown as '<{below:.0%}' / '>{above:.0%}' "
                "beyond those bounds"
            )
        return lines
    if ds.exclude_if:
        lines.append(f"      excludes students where: {', '.join(ds.exclude_if)}")
    lines += [f"      - {describe_column(policy, ds, c.name)}" for c in ds.columns]
    for group, cols in (ds.column_groups or {}).items():
        lines.append(f"      encrypted under a separate '{group}' key: {', '.join(cols)}")
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
