"""Time the k-anonymity engine on ARX's adult benchmark and check ARX's published answers.

    python bench/kanon_adult.py [--repeat 5] [--extra] [--reference DIR]

The four cases of ARX's TestAnonymizationKAnonymity (adult, nine QIs, k in {5, 100},
suppression {4 %, 0 %}, non-uniform entropy, monotonic); --extra adds ARX's published adult
cases with eight QIs, the non-monotonic entropy and entropy-l-diversity. Each case runs once to
warm up, then --repeat times; the table shows the best and median wall time (encoding the data
included, as in ARX's anonymize()), the nodes whose classes were computed, and whether levels
and loss equal ARX's. Exit status 1 if any case disagrees with ARX.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from datashare.privacy.kanon import Hierarchy, NonUniformEntropy, anonymize
from datashare.privacy.kanon.cli import read_csv

DEFAULT_REFERENCE = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "anonymity" / "arx_adult"
)
QIS = [
    "sex",
    "age",
    "race",
    "marital-status",
    "education",
    "native-country",
    "workclass",
    "occupation",
    "salary-class",
]
QIS8 = [q for q in QIS if q != "occupation"]

# (label, QIs, anonymize() keywords, ARX levels, ARX loss); source lines in docs/kanon.md.
CASES: list[tuple[str, list[str], dict[str, Any], tuple[int, ...], float]] = [
    (f"k={k:<3} {s:.0%}", QIS, {"k": k, "suppression_limit": s}, levels, loss)
    for s, k, levels, loss in [
        (0.04, 5, (1, 0, 1, 1, 3, 2, 2, 0, 1), 255559.85455731067),
        (0.04, 100, (1, 1, 1, 1, 3, 2, 2, 1, 1), 379417.3460570988),
        (0.0, 5, (1, 2, 1, 1, 3, 2, 2, 1, 1), 407289.5388925293),
        (0.0, 100, (0, 4, 1, 1, 3, 2, 2, 1, 1), 453196.8932458743),
    ]
]
EXTRA: list[tuple[str, list[str], dict[str, Any], tuple[int, ...], float]] = [
    ("8 QIs k=5 0%", QIS8, {"k": 5}, (1, 1, 1, 1, 3, 2, 2, 1), 324620.5269918692),
    (
        "8 QIs k=5 5% non-monotonic",
        QIS8,
        {"k": 5, "suppression_limit": 0.05, "metric": NonUniformEntropy(monotonic=False)},
        (0, 0, 1, 1, 2, 2, 2, 0),
        180132.40848244698,
    ),
    (
        "8 QIs entropy-l=5 4% non-monotonic",
        QIS8,
        {
            "k": 1,
            "suppression_limit": 0.04,
            "metric": NonUniformEntropy(monotonic=False),
            "l": 5,
            "sensitive": "occupation",
            "l_diversity": "entropy",
        },
        (1, 0, 1, 1, 2, 2, 2, 1),
        228878.2039109517,
    ),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kanon_adult", description=__doc__.splitlines()[0])
    p.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="arx_adult directory")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per case (default 5)")
    p.add_argument("--extra", action="store_true", help="also run the other ARX adult cases")
    args = p.parse_args(argv)
    if not (args.reference / "adult.csv").is_file():
        print(f"adult.csv not found under {args.reference}", file=sys.stderr)
        return 2
    table = read_csv(args.reference / "adult.csv", sep=";")
    hierarchies = {
        q: Hierarchy.from_csv(args.reference / f"adult_hierarchy_{q}.csv", name=q) for q in QIS
    }
    header = (
        f"{'case':<36} {'levels':<28} {'information loss':>20} {'ARX':>4} "
        f"{'checked':>13} {'best ms':>8} {'median ms':>9}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for label, qis, kwargs, levels, loss in CASES + (EXTRA if args.extra else []):
        hs = {q: hierarchies[q] for q in qis}
        result = anonymize(table, hs, **kwargs)  # warm-up (and the answer)
        times = []
        for _ in range(max(args.repeat, 1)):
            t0 = time.perf_counter()
            anonymize(table, hs, **kwargs)
            times.append((time.perf_counter() - t0) * 1e3)
        same = result.transformation == levels and result.information_loss == loss
        ok &= same
        lv = "[" + ",".join(map(str, result.transformation)) + "]"
        checked = f"{result.nodes_checked}/{result.lattice_size}"
        print(
            f"{label:<36} {lv:<28} {result.information_loss!r:>20} {'ok' if same else 'DIFF':>4} "
            f"{checked:>13} {min(times):>8.1f} {statistics.median(times):>9.1f}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
