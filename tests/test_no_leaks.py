"""Nothing published contains what its tier may not receive.

Scans every file of every tier, value by value, for the source export's identifiers: tiers 1, 2
and 4 must contain no student name, home address, raw student or state ID, or full date of
birth; tier 3 must contain no raw ID and no student whose family opted out.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from datashare.encryption import reader_keys, system_kms
from datashare.keys import LocalKeyring, token_key_name
from datashare.lake.client import connect
from datashare.policy import load_policy
from datashare.privacy.tokenize import Tokenizer
from datashare.releases import read_manifest


@pytest.fixture(scope="module")
def source(published: dict) -> pa.Table:
    return pacsv.read_csv(
        published["source"] / "students.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={"student_id": pa.string(), "sasid": pa.string()}
        ),
    )


def _files(published: dict, n: int) -> list[tuple[str, pa.Table]]:
    tier = load_policy().tier(n)
    lake = connect("pipeline")
    doc = read_manifest(lake, tier.bucket, published["release_id"])
    out = []
    for name, ds in doc["datasets"].items():
        props = reader_keys(system_kms(), doc, name).decryption_properties()
        for f in ds["files"]:
            data = lake.get_bytes(tier.bucket, f["key"])
            out.append(
                (f["key"], pq.read_table(pa.BufferReader(data), decryption_properties=props))
            )
    return out


def _as_strings(table: pa.Table) -> list[tuple[str, pa.Array]]:
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if not pa.types.is_boolean(col.type):
            cols.append((name, pc.cast(col, pa.string())))
    return cols


def _hits(table: pa.Table, forbidden: pa.Array) -> dict[str, int]:
    hits = {}
    for name, col in _as_strings(table):
        n = pc.sum(pc.is_in(col, value_set=forbidden)).as_py() or 0
        if n:
            hits[name] = n
    return hits


@pytest.mark.parametrize("n", [1, 2, 4])
def test_no_direct_identifier_reaches_tiers_1_2_4(
    published: dict, source: pa.Table, n: int
) -> None:
    full_names = pc.binary_join_element_wise(source["first_name"], source["last_name"], " ")
    columns = [
        source[c] for c in ("student_id", "sasid", "first_name", "last_name", "home_address")
    ]
    columns += [full_names, pc.cast(source["birth_date"], pa.string())]
    forbidden = pa.concat_arrays([pc.unique(c) for c in columns])
    files = _files(published, n)
    assert files
    for key, table in files:
        assert _hits(table, forbidden) == {}, key


def test_tier3_has_no_raw_ids_and_no_opted_out_student(published: dict, source: pa.Table) -> None:
    ids = pa.concat_arrays(
        [source["student_id"].combine_chunks(), source["sasid"].combine_chunks()]
    )
    opted = source.filter(source["directory_opt_out"])
    assert opted.num_rows > 0, "the fixture export should contain opted-out students"
    secret = LocalKeyring().current(token_key_name(3))
    opted_tokens = Tokenizer(secret.secret, 3, secret.version).tokenize(opted["student_id"])
    opted_addresses = opted["home_address"].combine_chunks()
    files = _files(published, 3)
    assert files
    for key, table in files:
        assert _hits(table, ids) == {}, key
        assert pc.sum(pc.is_in(table["student_token"], value_set=opted_tokens)).as_py() == 0
        # Adversarially: the opted-out students' (name, address) pairs are absent too.
        names = pc.binary_join_element_wise(
            table["first_name"], table["last_name"], table["home_address"], "|"
        )
        opted_keys = pc.binary_join_element_wise(
            opted["first_name"], opted["last_name"], opted_addresses, "|"
        )
        assert pc.sum(pc.is_in(names, value_set=opted_keys.combine_chunks())).as_py() == 0


def test_tier3_holds_only_directory_fields(published: dict) -> None:
    policy = load_policy()
    for _, table in _files(published, 3):
        for name in table.column_names:
            if name == "student_token":
                continue
            cls = policy.classify("student_year", name)
            assert cls.directory, f"{name} is not directory information"


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_published_bytes_are_ciphertext(published: dict, source: pa.Table, n: int) -> None:
    """At rest every published file is encrypted: its bytes hold none of the source's IDs or
    names, and pyarrow cannot open it without keys."""
    tier = load_policy().tier(n)
    lake = connect("pipeline")
    doc = read_manifest(lake, tier.bucket, published["release_id"])
    probes = [
        v.encode()
        for c in ("student_id", "sasid", "last_name", "home_address")
        for v in source.column(c).to_pylist()[:300]
        if v and len(v) >= 5
    ]
    probes += [b"school_id", b"students", b"student_token"]  # column names, too
    for ds in doc["datasets"].values():
        for f in ds["files"]:
            data = lake.get_bytes(tier.bucket, f["key"])
            assert not [p for p in probes if p in data], f["key"]
            with pytest.raises(OSError):
                pq.read_table(pa.BufferReader(data))
