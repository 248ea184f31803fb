"""Derive the synthetic BPS generator's calibration tables from public DESE / Analyze Boston data.

Reads ../shared/reference/ma_bps/ (relative to the project root) and writes small CSVs to
include/datashare/synth/data/. Deterministic: same inputs give byte-identical outputs.
See include/datashare/synth/data/README.md for what every table and column means.

    .venv/bin/python scripts/build_calibration.py [--ref DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REF = ROOT.parent / "shared" / "reference" / "ma_bps"
DEFAULT_OUT = ROOT / "include" / "datashare" / "synth" / "data"

BPS_DISTRICT = "00350000"
BPS_PREFIX = "0035"  # DESE school codes are district code (4 digits) + school number (4 digits)

# --- Hand-written DESE code -> Analyze Boston SCH_ID matches ---------------------------------
# Applied before the automatic name matcher. Each entry exists because normalized names are
# ambiguous (two AB schools share the surname token) or share no usable token. Where one DESE
# school spans several AB SCH_IDs (split campuses / programmes), we pick the SCH_ID whose
# building address equals DESE's 2016-17 directory address; the other SCH_IDs stay in
# buildings.csv only (listed in the README).
MATCH_OVERRIDES: dict[str, str] = {
    "00350001": "4291",  # Lee Academy (PK-3) -> "Lee Academy"; token "lee" also hits Lee K-8
    "00350183": "4290",  # Joseph Lee (PK-8) -> "Lee K-8"
    "00350004": "4171",  # Lyon K-8 -> "Lyon K-8"; token "lyon" also hits "Lyon, Mary 9-12"
    "00350655": "1171",  # Lyon Upper 9-12 -> "Lyon, Mary 9-12"
    "00350009": "4450",  # East Boston Early Childhood Center -> "East Boston EEC" (135 Grove St)
    "00350012": "4661",  # Boston Teachers Union School -> "BTU K-8 Pilot" (25 Walk Hill St)
    "00350100": "4370",  # Ellis Mendell -> "Mendell Elementary" (164 School St); not "Ellis"
    "00350116": "4192",  # Franklin D Roosevelt -> Roosevelt Upper (95 Needham Rd); 4193 = K1-1
    "00350190": "4031",  # Joyce Kilmer -> Kilmer Lower (35 Baker St); 4033 = upper campus
    "00350266": "4391",  # Dr. William Henderson Lower -> "Henderson Lower (K-3)"
    "00350426": "1140",  # Dr. William Henderson Upper -> "Henderson Upper (4-12)"
    "00350286": "4650",  # Josiah Quincy (PK-5) -> "Quincy Lower (K-5)"
    "00350565": "1450",  # Quincy Upper School -> "Quincy Upper School"
    "00350545": "1020",  # Boston Latin Academy -> "Boston Latin Academy" (BLS has same tokens)
    "00350560": "1010",  # Boston Latin -> "Boston Latin School"
    "00350363": "1291",  # William McKinley -> McKinley Elementary (90 Warren Ave); 1292-1294
    #                      are the other McKinley programmes DESE reports as this one school
    "00350575": "1030",  # O'Bryant School Math/Science -> "O'Bryant Math & Sci."
    "00350581": "1103",  # Community Academy of Science and Health -> "Comm Acad Sci Health"
}
# The matched AB row of a split school carries a campus/programme label; use a school-wide one.
LABEL_OVERRIDES: dict[str, str] = {"1291": "McKinley"}  # AB label "McKinley Elem"; DESE: K-12
CAMPUS_SUFFIX = re.compile(r"\s*\((?:Upper|Lower)\)$")  # "Curley K-8 (Upper)" -> "Curley K-8"

# DESE schools known to have no row in the 2018 Analyze Boston layer (kept with empty geography).
EXPECTED_UNMATCHED: dict[str, str] = {
    "00350755": "Boston Collaborative High School (DESE 2016-17 directory: 60 Hawthorne St, "
    "Roslindale 02131) has no row in the 2018 Analyze Boston layer",
}

# Words dropped before comparing names: school-type words that one source uses and the other
# omits ("Guild Elementary" vs "Curtis Guild"), grade-span fragments ("(K1-5)", "9-12"), and
# words like "academy"/"high" that DESE and AB attach inconsistently.
# fmt: off
NAME_STOPWORDS = frozenset({
    "school", "schools", "elementary", "elem", "elemen", "academy", "acad", "early", "learning",
    "center", "education", "ed", "upper", "lower", "middle", "high", "hs", "ms", "es", "pilot",
    "elc", "eec", "dr", "the", "of", "at", "for", "and",
    "k", "k0", "k1", "k8", "1", "2", "3", "4", "5", "6", "7", "8", "9", "12",
})
# fmt: on

GRADE_COLS = ["PK", "K"] + [f"{g:02d}" for g in range(1, 13)] + ["SP"]
DESE_GRADE_COLS = ["PK", "K"] + [f"Gr.{g}" for g in range(1, 13)] + ["SPED_Beyond_Grade_12"]
GRADE_RANK = {"PK": -1, "K": 0} | {f"{g:02d}": g for g in range(1, 13)}

RACE_COLS = {
    "pct_african_american": "% African American",
    "pct_asian": "% Asian",
    "pct_hispanic": "% Hispanic",
    "pct_white": "% White",
    "pct_native_american": "% Native American",
    "pct_pacific_islander": "% Native Hawaiian, Pacific Islander",
    "pct_multi_race": "% Multi-Race, Non-Hispanic",
}
GENDER_COLS = {"pct_male": "% Males", "pct_female": "% Females"}
# Selected populations: (published % column, count column). Counts are used for the district
# average; the published % is kept per school (it agrees with the count to rounding).
POP_COLS = {
    "pct_ell": ("% English Language Learner", "English Language Learner"),
    "pct_swd": ("% Students With Disabilities", "Students With Disabilities"),
    "pct_high_needs": ("% High Needs", "High Needs"),
    "pct_econ_dis": ("% Economically Disadvantaged", "Economically Disadvantaged"),
    "pct_first_lang_not_eng": ("% First Language Not English", "First Language Not English"),
}
RATE_COLS = [*POP_COLS, *RACE_COLS, *GENDER_COLS]
# Published % and count/total*100 differ by <= 0.05 when only rounding separates them.
PCT_TOLERANCE = 0.1

# fmt: off
SUBGROUPS = ["ell", "swd", "econ_dis", "african_american", "hispanic", "asian", "white",
             "multi_race", "male", "female"]
# fmt: on
SUBGROUP_LABEL = re.compile(
    r"english learner|students with disab|econ\w* disadv|low income|high needs|"
    r"african american|hispanic|multi-race|\bfemale\b|\bmale\b",
    re.IGNORECASE,
)

SCHOOLS_COLUMNS = [
    "school_id",
    "dese_code",
    "school_name",
    "school_label",
    "school_type",
    "address",
    "city",
    "zip",
    "latitude",
    "longitude",
    *[f"enr_{g}" for g in GRADE_COLS],
    "enr_total",
    *RATE_COLS,
    "rates_imputed",
]


# --- readers ------------------------------------------------------------------------------------


@functools.cache
def load_sheet(path: Path) -> pd.DataFrame:
    """First sheet of an xlsx, no header, all cells as text (keeps zero-padded DESE codes)."""
    with warnings.catch_warnings():
        # DESE's exports carry page headers openpyxl cannot parse; irrelevant to the data.
        warnings.filterwarnings("ignore", message="Cannot parse header or footer")
        return pd.read_excel(path, header=None, dtype=str)


def read_xlsx(path: Path, header: int | str) -> pd.DataFrame:
    """Sheet with the header at row `header` (0-based) or at the row whose first cell is it."""
    raw = load_sheet(path)
    if isinstance(header, str):
        header = int(raw.index[raw.iloc[:, 0].str.strip() == header][0])
    df = raw.iloc[header + 1 :].reset_index(drop=True)
    df.columns = [str(c).strip() for c in raw.iloc[header]]
    return df


def num(s: pd.Series) -> pd.Series:
    """DESE numbers as text: '1,234', '$27,671.31', ' ' (2015 blank) -> float / NaN."""
    cleaned = s.astype("string").str.replace(r"[$,\s]", "", regex=True).replace("", pd.NA)
    return pd.to_numeric(cleaned, errors="coerce")


def read_analyze_boston(ref: Path) -> pd.DataFrame:
    ab = pd.read_csv(
        ref / "bps_public_schools_analyzeboston_2018.csv",
        dtype=str,
        encoding="utf-8-sig",
        keep_default_na=False,
    )
    for col in ab.columns:
        # One BLDG_NAME ends in "\r\n"; collapse all internal whitespace to single spaces.
        ab[col] = ab[col].str.replace(r"\s+", " ", regex=True).str.strip()
    ab["ZIPCODE"] = ab["ZIPCODE"].str.zfill(5)
    return ab


def read_enrollment(ref: Path) -> pd.DataFrame:
    # Rows 1-6 are a title block; the header is spreadsheet row 7 (0-based 6).
    df = read_xlsx(ref / "dese_enrollment_by_school_grade_2018-19.xlsx", header=6)
    df = df[(df["DISTRICT_NAME"] == "Boston") & df["SCHOOL"].str.startswith(BPS_PREFIX)].copy()
    for col in ["School_Total", *DESE_GRADE_COLS]:
        df[col] = num(df[col]).astype(int)
    df["SCHOOL_NAME"] = df["SCHOOL_NAME"].str.strip()
    return df.sort_values("SCHOOL").reset_index(drop=True)


def read_profiles(ref: Path) -> pd.DataFrame:
    df = pd.read_csv(ref / "MA_Public_Schools_2017.csv", dtype=str)
    df = df[df["District Code"] == BPS_DISTRICT].copy()
    return df.set_index("School Code")


# --- matching -----------------------------------------------------------------------------------


Tokens = frozenset[str]


def name_tokens(name: str) -> Tokens:
    s = name.lower().replace("&", " and ").replace("'", "")  # O'Bryant -> obryant
    words = re.sub(r"[^a-z0-9]+", " ", s).split()
    # Single letters are middle initials in DESE names ("Charles H Taylor", "P.A. Shaw").
    return frozenset(w for w in words if w not in NAME_STOPWORDS and len(w) > 1)


def match_schools(enr: pd.DataFrame, ab: pd.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """Return ({dese_code: SCH_ID}, {dese_code: method}) for the DESE schools that match."""
    ab_names = {
        sid: (name_tokens(g["SCH_NAME"].iloc[0]), name_tokens(g["SCH_LABEL"].iloc[0]))
        for sid, g in ab.groupby("SCH_ID", sort=True)
    }
    dese = {r.SCHOOL: name_tokens(r.SCHOOL_NAME) for r in enr.itertuples()}
    matched: dict[str, str] = {}
    method: dict[str, str] = {}
    for code, sid in MATCH_OVERRIDES.items():
        if code not in dese or sid not in ab_names:
            raise SystemExit(f"override {code}->{sid} refers to an unknown school")
        matched[code], method[code] = sid, "override"

    def run_stage(label: str, accept: Callable[[Tokens, Tokens, Tokens], bool]) -> None:
        # Candidates are computed against the AB schools still free *before* the stage, and
        # conflicts within a stage are errors, so the result does not depend on row order.
        free = {sid: t for sid, t in ab_names.items() if sid not in matched.values()}
        found: dict[str, str] = {}
        for code, toks in dese.items():
            if code in matched or code in EXPECTED_UNMATCHED or not toks:
                continue
            cands = [sid for sid, (n, lab) in free.items() if accept(toks, n, lab)]
            if len(cands) == 1:
                found[code] = cands[0]
        dup = [sid for sid in set(found.values()) if list(found.values()).count(sid) > 1]
        if dup:
            raise SystemExit(f"{label} match conflict on SCH_ID {dup}; add overrides")
        for code, sid in found.items():
            matched[code], method[code] = sid, label

    # 1) identical token sets (SCH_NAME or SCH_LABEL); 2) one name's tokens contain the
    # other's (e.g. {"guild"} within {"curtis", "guild"}), only when exactly one AB school fits.
    run_stage("exact", lambda d, n, lab: d in (n, lab))
    run_stage("subset", lambda d, n, lab: any(x and (x <= d or d <= x) for x in (n, lab)))
    return matched, method


def address_key(address: object) -> str:
    """House number + first street word: '18 Croftland Av' and '18 Croftland Avenue' agree."""
    words = re.sub(r"[^a-z0-9 ]", "", str(address).lower()).split()
    return " ".join(words[:2])


def primary_building(ab: pd.DataFrame, sid: str, dese_address: object) -> pd.Series:
    """The AB row that represents a school whose SCH_ID spans several building rows.

    Preference: the building at DESE's directory address (Curley: 493 Centre St, not the
    lower campus), then the row whose CSP_SCH_ID equals SCH_ID, then file order.
    """
    rows = ab[ab["SCH_ID"] == sid]
    at_dese = rows[rows["ADDRESS"].map(address_key) == address_key(dese_address)]
    if len(at_dese):
        return at_dese.iloc[0]
    own = rows[rows["CSP_SCH_ID"] == sid]
    return (own if len(own) else rows).iloc[0]


def infer_school_type(grades: dict[str, int]) -> str:
    served = [GRADE_RANK[g] for g, n in grades.items() if n > 0 and g in GRADE_RANK]
    lo, hi = min(served), max(served)
    if hi <= 2:
        return "ELC"
    if lo <= 1 and hi <= 6:
        return "ES"
    if lo <= 1 and hi <= 8:
        return "K-8"
    if lo <= 1 and hi == 12:
        return "K-12"
    if lo >= 5 and hi <= 8:
        return "MS"
    if lo >= 9:
        return "HS"
    if lo in (6, 7) and hi == 12:
        return "6/7-12"
    return "Special"


# --- tables -------------------------------------------------------------------------------------


def profile_rates(prof: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, int]:
    """Per-school 2016-17 rates (percent) plus the BPS enrollment-weighted average."""
    total = num(prof["TOTAL_Enrollment"])
    rates = pd.DataFrame(index=prof.index)
    for out, (pct_col, _) in POP_COLS.items():
        rates[out] = num(prof[pct_col])
    for out, col in {**RACE_COLS, **GENDER_COLS}.items():
        rates[out] = num(prof[col])
    # `% Economically Disadvantaged` is corrupt in this file (it runs monotonically down the
    # rows, unrelated to the school); recompute from the count wherever the two disagree.
    econ = 100 * num(prof["Economically Disadvantaged"]) / total
    bad = (rates["pct_econ_dis"] - econ).abs() > PCT_TOLERANCE
    rates.loc[bad, "pct_econ_dis"] = econ[bad]

    avg = {}
    for out, (_, cnt_col) in POP_COLS.items():
        avg[out] = 100 * num(prof[cnt_col]).sum() / total.sum()
    for out in [*RACE_COLS, *GENDER_COLS]:
        avg[out] = (rates[out] * total).sum() / total.sum()
    return rates.round(1), pd.Series(avg).round(1), int(bad.sum())


def build_schools(
    enr: pd.DataFrame, ab: pd.DataFrame, prof: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, str], pd.Series, int]:
    matched, method = match_schools(enr, ab)
    rates, district_avg, n_econ_fixed = profile_rates(prof)
    rows = []
    for rec in enr.to_dict("records"):
        code = rec["SCHOOL"]
        grades = {g: rec[d] for g, d in zip(GRADE_COLS, DESE_GRADE_COLS, strict=True)}
        row: dict[str, object] = {"dese_code": code, "school_name": rec["SCHOOL_NAME"]}
        sid = matched.get(code)
        if sid is not None:
            dese_address = prof.at[code, "Address 1"] if code in prof.index else None
            b = primary_building(ab, sid, dese_address)
            row |= {
                "school_id": sid,
                "school_label": LABEL_OVERRIDES.get(sid, CAMPUS_SUFFIX.sub("", b["SCH_LABEL"])),
                "school_type": b["SCH_TYPE"],
                "address": b["ADDRESS"],
                "city": b["CITY"],
                "zip": b["ZIPCODE"],
                "latitude": round(float(b["Y"]), 6),
                "longitude": round(float(b["X"]), 6),
            }
        else:
            # Unmatched: stable id from the DESE code; geography left empty on purpose.
            row |= {
                "school_id": "D" + code[-4:],
                "school_label": rec["SCHOOL_NAME"],
                "school_type": infer_school_type(grades),
            }
        row |= {f"enr_{g}": n for g, n in grades.items()}
        row["enr_total"] = rec["School_Total"]
        if code in rates.index:
            row |= rates.loc[code].to_dict()
            row["rates_imputed"] = False
        else:
            row |= district_avg.to_dict()
            row["rates_imputed"] = True
        rows.append(row)
    schools = pd.DataFrame(rows).reindex(columns=SCHOOLS_COLUMNS)
    method_by_id = {matched[c]: m for c, m in method.items()}
    return schools, method_by_id, district_avg, n_econ_fixed


def build_buildings(ab: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "building_id": ab["BLDG_ID"],
            "building_name": ab["BLDG_NAME"],
            "school_id": ab["SCH_ID"],
            "csp_school_id": ab["CSP_SCH_ID"],
            "address": ab["ADDRESS"],
            "city": ab["CITY"],
            "zip": ab["ZIPCODE"],
            "latitude": ab["Y"].astype(float).round(6),
            "longitude": ab["X"].astype(float).round(6),
        }
    )


def read_mcas_school(path: Path) -> pd.DataFrame:
    # 2017 has a title row above the header, 2018 does not: find the header row by its label.
    df = read_xlsx(path, header="School Name")
    # Keep BPS schools only; this also drops the statewide total row (code 00000000).
    return df[df["School Code"].str.startswith(BPS_PREFIX, na=False)].copy()


def build_mcas(ref: Path, schools: pd.DataFrame) -> pd.DataFrame:
    # Neither file has a grade column. The 2018 file is one row per school x subject for all
    # tested grades (3-8) combined (its state row counts ~426k students = six grades); the 2017
    # file is grade 8 only (state row ~71k students; per-school counts track 2016-17 grade-8
    # enrollment). Encode them as grade "AL" (DESE's own all-grades code) and "08".
    sources = [
        ("dese_nextgen_mcas_school_ela_math_2018.xlsx", "AL", 2018),
        ("dese_nextgen_mcas_school_ela_math_2017.xlsx", "08", 2017),
    ]
    id_by_code = dict(zip(schools["dese_code"], schools["school_id"], strict=True))
    order = {sid: i for i, sid in enumerate(schools["school_id"])}
    parts = []
    for fname, grade, year in sources:
        df = read_mcas_school(ref / fname)
        df = df[df["School Code"].isin(id_by_code)]
        n = num(df["No. of Students Included"])
        parts.append(
            pd.DataFrame(
                {
                    "school_id": df["School Code"].map(id_by_code),
                    "grade": grade,
                    "subject": df["Subject"].str.strip().str.upper(),
                    "students_included": n.astype(int),
                    # Percent from the published counts (they sum exactly to students included);
                    # DESE's own % columns are integers and sum to 99-102.
                    "pct_exceeding": (100 * num(df["E #"]) / n).round(1),
                    "pct_meeting": (100 * num(df["M #"]) / n).round(1),
                    "pct_partially": (100 * num(df["PM #"]) / n).round(1),
                    "pct_not_meeting": (100 * num(df["NM #"]) / n).round(1),
                    "avg_scaled_score": num(df["Avg. Scaled Score"]).round(1),
                    "avg_sgp": num(df["SGP"]).round(1),  # blank where < 20 students in SGP
                    "source_year": year,
                }
            )
        )
    mcas = pd.concat(parts, ignore_index=True)
    mcas["_o"] = mcas["school_id"].map(order)
    mcas = mcas.sort_values(["_o", "grade", "subject"]).drop(columns="_o")
    return mcas.reset_index(drop=True)


def subgroup_rows_present(ref: Path) -> list[str]:
    """Next-Generation MCAS files whose row labels mention a student subgroup.

    Only Next-Gen files count: legacy (2014/2015) results are on another scale and level scheme,
    so their gaps would not transfer. Checked by hand: the legacy files have no subgroups either.
    """
    hits = []
    for path in sorted(ref.glob("dese_nextgen_mcas_*.xlsx")):
        labels = load_sheet(path).iloc[:, :4].stack().astype(str)  # name/code/subject columns
        if labels.str.contains(SUBGROUP_LABEL).any():
            hits.append(path.name)
    return hits


def build_subgroup_gaps(ref: Path) -> pd.DataFrame:
    hits = subgroup_rows_present(ref)
    if hits:
        raise SystemExit(f"subgroup rows now in {hits}: derive mcas_subgroup_gaps from them")
    # No reference file has subgroup rows (the 2021 district file is all-students only).
    # School-level ecological regressions were tried and rejected (see README), so the table
    # keeps its shape with empty values rather than shipping numbers we do not trust.
    return pd.DataFrame(
        [
            {
                "subject": s,
                "subgroup": g,
                "scaled_score_gap": None,
                "pct_me_gap": None,
                "source": "unavailable: no subgroup rows in reference files",
            }
            for s in ("ELA", "MATH")
            for g in SUBGROUPS
        ]
    )


def _district_row(df: pd.DataFrame, code_col: str = "District Code") -> pd.Series:
    row = df[df[code_col] == BPS_DISTRICT]
    if len(row) != 1:
        raise SystemExit(f"expected one BPS row, found {len(row)}")
    return row.iloc[0]


def build_district_rates(
    ref: Path, enr: pd.DataFrame, district_avg: pd.Series, n_profiles: int
) -> pd.DataFrame:
    out: list[tuple[str, object, str]] = []

    def add(items: Iterable[tuple[str, object]], source: str) -> None:
        out.extend((k, v, source) for k, v in items)

    def as_int(x: object) -> int:
        return int(num(pd.Series([x])).iloc[0])

    def as_float(x: object, nd: int = 1) -> float:
        return round(float(num(pd.Series([x])).iloc[0]), nd)

    add(
        [
            ("enrollment_total_2018_19", int(enr["School_Total"].sum())),
            ("school_count_2018_19", len(enr)),
        ],
        "dese_enrollment_by_school_grade_2018-19.xlsx (sum of Boston school rows)",
    )

    mob = _district_row(read_xlsx(ref / "dese_mobility_district_2021.xlsx", header=1))
    add(
        [
            ("mobility_churn_intake_enrollment_2021", as_int(mob["Churn/Intake Enroll"])),
            ("mobility_churn_pct_2021", as_float(mob["% Churn"])),
            ("mobility_intake_pct_2021", as_float(mob["% Intake"])),
            ("mobility_stability_enrollment_2021", as_int(mob["Stability Enroll"])),
            ("mobility_stability_pct_2021", as_float(mob["% Stability"])),
        ],
        "dese_mobility_district_2021.xlsx",
    )

    sp = load_sheet(ref / "dese_selected_populations_district_2021-22.xlsx").iloc[2:].copy()
    # Header row has "High Needs #" twice; by position the 2nd is the percent. Use positions.
    # fmt: off
    sp.columns = ["name", "code", "flne_n", "flne_pct", "ell_n", "ell_pct", "swd_n", "swd_pct",
                  "li_n", "li_pct", "fl_n", "fl_pct", "rl_n", "rl_pct", "hn_n", "hn_pct",
                  "ed_n", "ed_pct"]
    # fmt: on
    s = _district_row(sp, "code")
    add(
        [
            ("first_lang_not_eng_count_2021_22", as_int(s["flne_n"])),
            ("first_lang_not_eng_pct_2021_22", as_float(s["flne_pct"])),
            ("ell_count_2021_22", as_int(s["ell_n"])),
            ("ell_pct_2021_22", as_float(s["ell_pct"])),
            ("swd_count_2021_22", as_int(s["swd_n"])),
            ("swd_pct_2021_22", as_float(s["swd_pct"])),
            ("low_income_count_2021_22", as_int(s["li_n"])),
            ("low_income_pct_2021_22", as_float(s["li_pct"])),
            ("high_needs_count_2021_22", as_int(s["hn_n"])),
            ("high_needs_pct_2021_22", as_float(s["hn_pct"])),
        ],
        "dese_selected_populations_district_2021-22.xlsx",
    )

    ppe = _district_row(read_xlsx(ref / "dese_per_pupil_expenditures_district_2021.xlsx", 1))
    add(
        [
            ("in_district_expenditures_usd_2021", as_float(ppe["In-District Expenditures"], 2)),
            ("in_district_pupil_fte_2021", as_float(ppe["Total In-district FTEs"])),
            (
                "in_district_per_pupil_usd_2021",
                as_float(ppe["In-District Expenditures per Pupil"], 2),
            ),
            ("total_expenditures_usd_2021", as_float(ppe["Total Expenditures"], 2)),
            ("total_pupil_fte_2021", as_float(ppe["Total Pupil FTEs"])),
            ("total_per_pupil_usd_2021", as_float(ppe["Total Expenditures per Pupil"], 2)),
        ],
        "dese_per_pupil_expenditures_district_2021.xlsx",
    )

    grad = _district_row(read_xlsx(ref / "dese_gradrates_district_2021.xlsx", header=1))
    add(
        [
            ("grad4yr_cohort_count_2021", as_int(grad["# in Cohort"])),
            ("grad4yr_graduated_pct_2021", as_float(grad["% Graduated"])),
            ("grad4yr_still_in_school_pct_2021", as_float(grad["% Still in School"])),
            ("grad4yr_non_grad_completer_pct_2021", as_float(grad["% Non-Grad Completers"])),
            ("grad4yr_hs_equivalency_pct_2021", as_float(grad["% H.S. Equiv."])),
            ("grad4yr_dropped_out_pct_2021", as_float(grad["% Dropped Out"])),
            ("grad4yr_permanently_excluded_pct_2021", as_float(grad["% Permanently Excluded"])),
        ],
        "dese_gradrates_district_2021.xlsx (4-year cohort)",
    )

    drop = read_xlsx(ref / "dese_dropout_school_2017-18.xlsx", header=1)
    drop = drop[drop["School Code"].str.startswith(BPS_PREFIX, na=False)]
    n_drop, n_enr = num(drop["# Dropout All Grades"]), num(drop["# Enrolled Grades 09 through 12"])
    ok = n_drop.notna()  # suppressed schools have no count; leave them out of both sides
    add(
        [
            (
                "dropout_annual_pct_gr9_12_2017_18",
                round(100 * n_drop[ok].sum() / n_enr[ok].sum(), 1),
            ),
            ("dropout_annual_count_2017_18", int(n_drop[ok].sum())),
            ("dropout_enrolled_gr9_12_2017_18", int(n_enr[ok].sum())),
        ],
        f"computed from dese_dropout_school_2017-18.xlsx: sum over {int(ok.sum())} BPS schools "
        f"(excludes {int((~ok).sum())} with suppressed count)",
    )

    mc = read_xlsx(ref / "dese_nextgen_mcas_district_2021.xlsx", header=1)
    for _, r in mc[mc["District Code"] == BPS_DISTRICT].iterrows():
        subj = r["Subject"].strip().lower()
        items = [
            (f"mcas_2021_{subj}_me_pct", as_float(r["M+E %"], 0)),
            (f"mcas_2021_{subj}_exceeding_pct", as_float(r["E %"], 0)),
            (f"mcas_2021_{subj}_meeting_pct", as_float(r["M %"], 0)),
            (f"mcas_2021_{subj}_partially_pct", as_float(r["PM %"], 0)),
            (f"mcas_2021_{subj}_not_meeting_pct", as_float(r["NM %"], 0)),
            (f"mcas_2021_{subj}_students_included", as_int(r["No. of Students Included"])),
            (f"mcas_2021_{subj}_participation_pct", as_float(r["Part. Rate %"], 0)),
            (f"mcas_2021_{subj}_avg_scaled_score", as_float(r["Avg. Scaled Score"])),
        ]
        if pd.notna(num(pd.Series([r["SGP"]])).iloc[0]):
            items.append((f"mcas_2021_{subj}_avg_sgp", as_float(r["SGP"])))
        add(items, "dese_nextgen_mcas_district_2021.xlsx (grades 3-8 for ELA/MATH, 5 & 8 for SCI)")

    add(
        [(f"profile_2016_17_{k}", v) for k, v in district_avg.items()],
        f"computed: enrollment-weighted over the {n_profiles} BPS rows of "
        "MA_Public_Schools_2017.csv (selected populations from counts); imputation default",
    )
    df = pd.DataFrame(out, columns=["key", "value", "source"])
    # Integral values print without ".0"; everything else as computed above.
    df["value"] = [
        str(int(v)) if float(v).is_integer() and "pct" not in k and "usd" not in k else str(v)
        for k, v in zip(df["key"], df["value"], strict=True)
    ]
    return df


# --- validation and output ----------------------------------------------------------------------


def validate(schools: pd.DataFrame, enr: pd.DataFrame, mcas: pd.DataFrame) -> list[str]:
    problems = []
    if len(schools) != len(enr) or schools["dese_code"].duplicated().any():
        problems.append("schools.csv does not have one row per DESE Boston school")
    if schools["school_id"].duplicated().any():
        problems.append("duplicate school_id")
    grade_sum = schools[[f"enr_{g}" for g in GRADE_COLS]].sum(axis=1)
    if not (grade_sum == schools["enr_total"]).all():
        problems.append("grade columns do not sum to enr_total")
    if not (schools["enr_total"].to_numpy() == enr["School_Total"].to_numpy()).all():
        problems.append("enr_total differs from DESE School_Total")
    rates = schools[RATE_COLS]
    if rates.isna().any().any() or ((rates < 0) | (rates > 100)).any().any():
        problems.append("rates missing or outside 0-100")
    race = schools[list(RACE_COLS)].sum(axis=1)
    if ((race - 100).abs() > 0.5).any():
        problems.append(f"race % sums outside 100 +/- 0.5: {race.min():.1f}..{race.max():.1f}")
    gender = schools[list(GENDER_COLS)].sum(axis=1)
    if ((gender - 100).abs() > 0.5).any():
        problems.append("gender % sums outside 100 +/- 0.5")
    lvl = mcas[["pct_exceeding", "pct_meeting", "pct_partially", "pct_not_meeting"]].sum(axis=1)
    if ((lvl - 100).abs() > 0.3).any() or (mcas["students_included"] < 10).any():
        problems.append("mcas levels do not sum to 100 or a row has < 10 students")
    return problems


def write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, default=DEFAULT_REF, help="ma_bps reference directory")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = ap.parse_args(argv)
    ref, out = args.ref, args.out
    out.mkdir(parents=True, exist_ok=True)

    ab = read_analyze_boston(ref)
    enr = read_enrollment(ref)
    prof = read_profiles(ref)
    schools, method_by_id, district_avg, n_econ_fixed = build_schools(enr, ab, prof)
    buildings = build_buildings(ab)
    mcas = build_mcas(ref, schools)
    gaps = build_subgroup_gaps(ref)
    rates = build_district_rates(ref, enr, district_avg, len(prof))

    for name, df in [
        ("schools", schools),
        ("buildings", buildings),
        ("mcas", mcas),
        ("mcas_subgroup_gaps", gaps),
        ("district_rates", rates),
    ]:
        write_csv(df, out / f"{name}.csv")
        print(f"wrote {name}.csv: {len(df)} rows")

    methods = pd.Series(method_by_id).value_counts()
    unmatched = schools.loc[schools["latitude"].isna(), "dese_code"].tolist()
    n = len(schools)
    print(
        f"matched {n - len(unmatched)}/{n} DESE schools to Analyze Boston "
        f"({100 * (n - len(unmatched)) / n:.1f}%): {methods.to_dict()}; "
        f"unmatched: {unmatched}"
    )
    # Independent check of the name matching: AB address vs DESE's 2016-17 directory address.
    has_dir = schools[schools["dese_code"].isin(prof.index) & schools["latitude"].notna()]
    dir_addr = has_dir["dese_code"].map(prof["Address 1"]).map(address_key)
    differ = has_dir.loc[dir_addr != has_dir["address"].map(address_key), "dese_code"].tolist()
    print(
        f"address agrees with DESE 2016-17 directory for {len(has_dir) - len(differ)}/"
        f"{len(has_dir)} matched schools; differs (review by hand): {differ}"
    )
    imputed = schools.loc[schools["rates_imputed"], ["dese_code", "school_name"]]
    print(f"rates imputed from district average: {imputed.values.tolist()}")
    print(f"pct_econ_dis recomputed from count in {n_econ_fixed}/{len(prof)} BPS profile rows")
    print(f"enrollment total {schools['enr_total'].sum():,} across {n} schools")
    print(f"mcas rows by source year: {mcas['source_year'].value_counts().to_dict()}")

    problems = validate(schools, enr, mcas)
    if set(unmatched) != set(EXPECTED_UNMATCHED):
        problems.append(f"unmatched set changed: {unmatched}")
    if n != 117 or schools["enr_total"].sum() != 51_433:
        problems.append("expected 117 Boston schools and 51,433 students")
    for p in problems:
        print(f"VALIDATION FAILED: {p}", file=sys.stderr)
    if not problems:
        print(
            "validation ok: 117 schools, 51,433 students, grade sums = enr_total, "
            "rates in 0-100, race and gender sums within 100 +/- 0.5"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
