"""The k-anonymity engine against ARX's published answers, plus hierarchy validation and the CLI.

Expected values are copied from ARX's own test suite (github.com/arx-deidentifier/arx, commit
aacd487f, src/test/org/deidentifier/arx/test/):
  TestAnonymizationKAnonymity.java, lines 47-50: adult, all nine attributes as QIs, k in {5, 100},
    suppression {4 %, 0 %}, Metric.createPrecomputedEntropyMetric(0.1d, true) (non-uniform
    entropy, monotonic variant).
  TestAnonymizationCombinations.java, line 60 (k=5, 0 %, monotonic) and line 101 (k=5, 5 %,
    non-monotonic entropy): adult with "occupation" as sensitive, i.e. eight QIs.
  TestAnonymizationLDiversity.java, lines 49-52: entropy-l-diversity of "occupation", l=5 / 100.
ARX asserts the loss as a string (Double.toString), i.e. the exact double; so do we.
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from datashare.privacy.kanon import (
    Hierarchy,
    HierarchyError,
    NonUniformEntropy,
    NoSolutionError,
    anonymize,
    apply_transformation,
    date_hierarchy,
    flat_hierarchy,
    interval_hierarchy,
    mask_hierarchy,
    measure_k,
    metric_by_name,
)
from datashare.privacy.kanon.cli import main as kanon_main
from datashare.privacy.kanon.cli import parse_suppression, read_csv
from support import REFERENCE as SHARED

REFERENCE = SHARED
ADULT = REFERENCE / "anonymity" / "arx_adult"
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


@pytest.fixture(scope="module")
def adult() -> pa.Table:
    if not (ADULT / "adult.csv").is_file():
        pytest.skip(f"reference data not found under {ADULT}")
    return read_csv(ADULT / "adult.csv", sep=";")


@pytest.fixture(scope="module")
def hierarchies(adult: pa.Table) -> dict[str, Hierarchy]:
    return {q: Hierarchy.from_csv(ADULT / f"adult_hierarchy_{q}.csv", name=q) for q in QIS}


# TestAnonymizationKAnonymity.java lines 47-50 (suppression, k, loss, transformation).
ARX_ADULT_CASES = [
    (0.04, 5, 255559.85455731067, (1, 0, 1, 1, 3, 2, 2, 0, 1)),
    (0.04, 100, 379417.3460570988, (1, 1, 1, 1, 3, 2, 2, 1, 1)),
    (0.0, 5, 407289.5388925293, (1, 2, 1, 1, 3, 2, 2, 1, 1)),
    (0.0, 100, 453196.8932458743, (0, 4, 1, 1, 3, 2, 2, 1, 1)),
]


@pytest.mark.parametrize(("suppression", "k", "loss", "levels"), ARX_ADULT_CASES)
def test_adult_matches_arx(
    adult: pa.Table,
    hierarchies: dict[str, Hierarchy],
    suppression: float,
    k: int,
    loss: float,
    levels: tuple[int, ...],
) -> None:
    result = anonymize(adult, hierarchies, k=k, suppression_limit=suppression)
    assert result.levels == dict(zip(QIS, levels, strict=True))
    assert result.information_loss == loss
    assert repr(result.information_loss) == repr(loss)  # ARX compares Double.toString
    assert result.metric == "non-uniform entropy"
    # The statistics describe the chosen transformation.
    assert result.n_records == 30162
    assert result.max_suppressed == math.floor(suppression * 30162)
    assert result.suppressed <= result.max_suppressed
    assert result.min_class_size >= k
    assert result.lattice_size == 12960
    assert 0 < result.nodes_checked < result.lattice_size  # pruned, not exhaustive
    released = apply_transformation(adult, result)
    assert released.num_rows == 30162 - result.suppressed
    assert measure_k(released, QIS) == result.min_class_size


def test_one_step_finer_is_not_anonymous(
    adult: pa.Table, hierarchies: dict[str, Hierarchy]
) -> None:
    # Optimality is not an accident of the metric: every direct specialization of ARX's optimum
    # for k=5 without suppression violates k-anonymity (measured on the generalized data).
    optimum = (1, 2, 1, 1, 3, 2, 2, 1, 1)
    for i, level in enumerate(optimum):
        if level == 0:
            continue
        finer = list(optimum)
        finer[i] -= 1
        generalized = {
            q: hierarchies[q].generalize(adult.column(q), lv)
            for q, lv in zip(QIS, finer, strict=True)
        }
        assert measure_k(pa.table(generalized), QIS) < 5, QIS[i]


def test_eight_qis_and_non_monotonic_entropy_match_arx(
    adult: pa.Table, hierarchies: dict[str, Hierarchy]
) -> None:
    h8 = {q: hierarchies[q] for q in QIS8}
    # TestAnonymizationCombinations.java line 60.
    r = anonymize(adult, h8, k=5, suppression_limit=0.0)
    assert (r.transformation, r.information_loss) == ((1, 1, 1, 1, 3, 2, 2, 1), 324620.5269918692)
    # TestAnonymizationCombinations.java line 101: suppressed records are charged extra.
    r = anonymize(adult, h8, k=5, suppression_limit=0.05, metric=NonUniformEntropy(monotonic=False))
    assert (r.transformation, r.information_loss) == ((0, 0, 1, 1, 2, 2, 2, 0), 180132.40848244698)


def test_entropy_l_diversity_matches_arx(
    adult: pa.Table, hierarchies: dict[str, Hierarchy]
) -> None:
    h8 = {q: hierarchies[q] for q in QIS8}
    nm = NonUniformEntropy(monotonic=False)
    common = {"k": 1, "metric": nm, "sensitive": "occupation", "l_diversity": "entropy"}
    # TestAnonymizationLDiversity.java line 51 (no suppression) and line 49 (4 %).
    r = anonymize(adult, h8, suppression_limit=0.0, l=5, **common)
    assert (r.transformation, r.information_loss) == ((1, 1, 1, 1, 3, 2, 2, 1), 324620.5269918692)
    r = anonymize(adult, h8, suppression_limit=0.04, l=5, **common)
    assert (r.transformation, r.information_loss) == ((1, 0, 1, 1, 2, 2, 2, 1), 228878.2039109517)
    # Lines 50 and 52: l=100 has no solution (occupation has 14 values).
    with pytest.raises(NoSolutionError):
        anonymize(adult, h8, suppression_limit=0.04, l=100, **common)


def test_cli_writes_anonymized_csv(
    adult: pa.Table, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "adult_k5.csv"
    argv = ["--input", str(ADULT / "adult.csv"), "--sep", ";"]
    for q in QIS:
        argv += ["--hierarchy", f"{q}={ADULT / f'adult_hierarchy_{q}.csv'}"]
    argv += ["--k", "5", "--suppression", "4%", "--out", str(out)]
    assert kanon_main(argv) == 0
    printed = capsys.readouterr().out
    assert "255559.85455731067" in printed
    assert "  age             0 of 4" in printed
    released = read_csv(out, sep=";")
    assert released.column_names == adult.column_names
    assert released.num_rows == 30162 - 906
    assert measure_k(released, QIS) >= 5
    assert set(released.column("sex").to_pylist()) == {"*"}


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kanon_main(["--help"]) == 0
    assert "datashare kanon" in capsys.readouterr().out
    base = ["--input", "x.csv", "--k", "2", "--out", str(tmp_path / "o.csv")]
    assert kanon_main([*base, "--hierarchy", "age"]) == 2  # not COLUMN=FILE
    assert kanon_main([*base, "--hierarchy", "a=b", "--suppression", "150%"]) == 2
    assert kanon_main([*base, "--hierarchy", "a=b", "--l", "2"]) == 2  # --l needs --sensitive
    assert kanon_main([*base, "--hierarchy", "a=missing.csv"]) == 1  # no such input
    capsys.readouterr()


def test_parse_suppression() -> None:
    assert parse_suppression("4%") == pytest.approx(0.04)
    assert parse_suppression("0.04") == 0.04
    assert parse_suppression("0") == 0.0


# -- hierarchies ---------------------------------------------------------------------------------


def test_hierarchy_csv_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("02128;0212*;*\n02129;0212*;*\n\n02138;0213*;*\n")
    h = Hierarchy.from_csv(path, name="zip")
    assert (len(h), h.depth, h.max_level) == (3, 3, 2)
    assert h.row("02129") == ("02129", "0212*", "*")
    assert h.generalize(["02138", "02128", "02138"], 1).to_pylist() == ["0213*", "0212*", "0213*"]
    h.to_csv(tmp_path / "h2.csv")
    assert Hierarchy.from_csv(tmp_path / "h2.csv").column(1) == h.column(1)
    assert Hierarchy.from_table(h.to_table()).column(2) == ("*", "*", "*")


def test_hierarchy_rows_must_have_equal_depth() -> None:
    with pytest.raises(HierarchyError) as err:
        Hierarchy([["a", "x", "*"], ["b", "*"]], name="grade")
    e = err.value
    assert (e.column, e.value, e.level) == ("grade", "b", 1)
    assert "column 'grade'" in str(e) and "value 'b'" in str(e) and "row 2" in str(e)


def test_hierarchy_must_be_monotone() -> None:
    rows = [["02128", "0212*", "021**"], ["02129", "0212*", "022**"]]
    with pytest.raises(HierarchyError) as err:
        Hierarchy(rows, name="zip")
    e = err.value
    assert (e.column, e.value, e.level) == ("zip", "0212*", 1)
    assert "'021**'" in str(e) and "'022**'" in str(e) and "level 2" in str(e)


def test_hierarchy_conflicting_duplicate() -> None:
    with pytest.raises(HierarchyError, match="listed twice") as err:
        Hierarchy([["a", "x"], ["a", "y"]], name="school")
    assert (err.value.column, err.value.value, err.value.level) == ("school", "a", 0)
    assert len(Hierarchy([["a", "x"], ["a", "x"]])) == 1  # an identical repeat is harmless


def test_data_value_missing_from_hierarchy() -> None:
    h = Hierarchy.from_dict({"F": "*", "M": "*"})
    data = pa.table({"gender": ["F", "M", "X", "F"], "grade": ["1", "2", "3", "4"]})
    with pytest.raises(HierarchyError) as err:
        anonymize(data, {"gender": h}, k=2)
    e = err.value
    assert (e.column, e.value, e.level) == ("gender", "X", 0)
    assert "column 'gender'" in str(e) and "value 'X'" in str(e) and "level 0" in str(e)
    with pytest.raises(HierarchyError, match="value 'NULL'"):
        h.check_values(pa.array(["F", None]), column="gender")


def test_builders() -> None:
    ages = interval_hierarchy([1, 7, 12, 39], widths=[5, 10, 20])
    assert ages.row("7") == ("7", "5-9", "0-9", "0-19", "*")
    assert ages.row("39") == ("39", "35-39", "30-39", "20-39", "*")
    bands = interval_hierarchy([3, 9, 15], bands=[[5, 10], [10]])
    assert bands.row("3") == ("3", "<5", "<10", "*")
    assert bands.row("9") == ("9", "5-9", "<10", "*")
    assert bands.row("15") == ("15", ">=10", ">=10", "*")
    with pytest.raises(HierarchyError, match="multiple"):
        interval_hierarchy([1], widths=[5, 7])
    zips = mask_hierarchy(["02128", "02139"], steps=(1, 2))
    assert zips.row("02128") == ("02128", "0212*", "021**", "*")
    assert mask_hierarchy(["021"]).row("021") == ("021", "02*", "0**", "*")
    days = date_hierarchy(pa.array(["2008-01-15", "2009-12-31"]).cast(pa.date32()))
    assert days.row("2008-01-15") == ("2008-01-15", "2008-01", "2008", "*")
    assert flat_hierarchy(["Y", "N", "Y"]).column(1) == ("*", "*")
    with pytest.raises(HierarchyError, match="not a number"):
        interval_hierarchy(["x"], widths=[5])


def test_builders_anonymize_student_like_records() -> None:
    data = pa.table(
        {
            "birth_year": [2008, 2008, 2009, 2009, 2010, 2011, 2008, 2009],
            "zip": ["02128", "02129", "02128", "02119", "02119", "02118", "02124", "02125"],
            "gender": ["F", "M", "F", "M", "F", "M", "F", "M"],
            "score": [1, 2, 3, 4, 5, 6, 7, 8],
        }
    )
    h = {
        "birth_year": interval_hierarchy(data["birth_year"], widths=[2, 4]),
        "zip": mask_hierarchy(data["zip"], steps=(1, 2)),
        "gender": flat_hierarchy(data["gender"]),
    }
    result = anonymize(data, h, k=2, suppression_limit=0.25)
    released = apply_transformation(data, result)
    assert measure_k(released, list(h)) >= 2
    assert released.num_rows == 8 - result.suppressed <= 8
    assert released.column("score").type == pa.int64()  # non-QI columns untouched


# -- optimality of the search, independently of ARX -------------------------------------------


def _synthetic() -> tuple[pa.Table, dict[str, Hierarchy]]:
    rng = random.Random(7)
    n = 400
    data = pa.table(
        {
            "age": [rng.randint(5, 18) for _ in range(n)],
            "zip": [
                rng.choice(["02128", "02129", "02119", "02121", "02124", "02136"]) for _ in range(n)
            ],
            "gender": [rng.choice("FMX") for _ in range(n)],
            "grade": [rng.choice(["K", "1", "2", "6", "7", "9", "12"]) for _ in range(n)],
        }
    )
    bands = {"K": "K-2", "1": "K-2", "2": "K-2", "6": "6-8", "7": "6-8", "9": "9-12", "12": "9-12"}
    school = {"K-2": "ES", "6-8": "MS", "9-12": "HS"}
    hierarchies = {
        "age": interval_hierarchy(data["age"], widths=[2, 4, 8]),
        "zip": mask_hierarchy(data["zip"]),
        "gender": flat_hierarchy(data["gender"]),
        "grade": Hierarchy.from_dict({g: [b, school[b], "*"] for g, b in bands.items()}),
    }
    return data, hierarchies


@pytest.mark.parametrize(("k", "suppression"), [(3, 0.0), (5, 0.05), (20, 0.1)])
def test_search_is_optimal_by_exhaustive_enumeration(k: int, suppression: float) -> None:
    # Brute force over every transformation with pandas, the metrics written out from their
    # definitions (docs/kanon.md); the engine must find the same minimum.
    data, hierarchies = _synthetic()
    names = list(hierarchies)
    n = data.num_rows
    limit = math.floor(suppression * n)
    best = dict.fromkeys(["precision", "precision-nm", "discernibility"], math.inf)
    codes = {  # generalized values as integer codes, per QI and level
        (q, lv): np.unique(
            hierarchies[q].generalize(data[q], lv).to_numpy(zero_copy_only=False),
            return_inverse=True,
        )[1]
        for q in names
        for lv in range(hierarchies[q].depth)
    }
    for levels in itertools.product(*(range(h.depth) for h in hierarchies.values())):
        rows = np.stack([codes[q, lv] for q, lv in zip(names, levels, strict=True)], axis=1)
        sizes = np.unique(rows, axis=0, return_counts=True)[1]
        dropped = int(sizes[sizes < k].sum())
        if dropped > limit:
            continue
        pairs = zip(names, levels, strict=True)
        intensity = sum(lv / (hierarchies[q].depth - 1) for q, lv in pairs) / len(names)
        kept = sizes[sizes >= k]
        losses = {
            "precision": intensity,
            "precision-nm": (1 - dropped / n) * intensity + dropped / n,
            "discernibility": float((kept * kept).sum()) + dropped * n,
        }
        best = {m: min(best[m], losses[m]) for m in best}
    for name, expected in best.items():
        result = anonymize(
            data, hierarchies, k=k, suppression_limit=suppression, metric=metric_by_name(name)
        )
        assert result.information_loss == pytest.approx(expected, rel=1e-12), name
        assert measure_k(apply_transformation(data, result), names) >= k
