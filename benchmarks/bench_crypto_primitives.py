"""Micro-benchmarks of the crypto primitives (run directly; not collected by pytest).

python benchmarks/bench_crypto_primitives.py [--n 20000]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

from mash_hub.crypto import (
    BlindIndexer,
    EnvKeyProvider,
    FieldCipher,
    LocalKeyringProvider,
    new_data_key,
)
from mash_hub.crypto.envelope import GroupValue, unwrap_data_key, wrap_data_key

PERSON = {
    "given_names": ["Mary Ann"],
    "family_name": "O'Brien-Smith",
    "other_names": ["Molly Smyth"],
    "date_of_birth": dt.date(2014, 5, 17),
    "postcodes": ["LS1 4AP"],
    "nhs_number": "943 476 5919",
    "upn": "A123456789012",
    "pnc_id": "2019/0012345X",
}
GROUP: dict[str, GroupValue] = {
    "given_names": ["Mary", "Ann"],
    "family_name": "O'Brien-Smith",
    "other_names": ["Molly Smyth"],
    "date_of_birth": "2014-05-17",
    "sex": "F",
    "nhs_number": "9434765919",
    "upn": "A123456789012",
    "pnc_id": "19/0012345X",
    "address": "12 Example Street, Leeds",
    "postcode": "LS1 4AP",
}

ROW = "7d1c0a3e-0000-4000-8000-000000000001"


def _us(label: str, func: Callable[[], object], n: int) -> None:
    best = min(timeit.repeat(func, number=n, repeat=5)) / n
    print(f"{label:<44} {best * 1e6:8.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    n = parser.parse_args().n
    b64 = base64.b64encode
    provider = EnvKeyProvider(
        {
            "MASH_KEKS": "bench:" + b64(os.urandom(32)).decode(),
            "MASH_INDEX_ROOT_KEY": b64(os.urandom(32)).decode(),
        }
    )
    dek = new_data_key()
    cipher = FieldCipher(dek)
    field_ct = cipher.encrypt("O'Brien-Smith", table="persons", column="family_name", row_id=ROW)
    group_ct = cipher.encrypt_group(GROUP, table="persons", group="identity", row_id=ROW)
    wrapped = wrap_data_key(provider, dek, "r1")
    indexer = BlindIndexer.from_provider(provider)
    indexer.compute("family_token", "smith")

    print(f"python crypto primitives, best of 5 x {n}")
    _us(
        "field encrypt (FieldCipher.encrypt)",
        lambda: cipher.encrypt("O'Brien-Smith", table="persons", column="family_name", row_id=ROW),
        n,
    )
    _us(
        "field decrypt (FieldCipher.decrypt)",
        lambda: cipher.decrypt(field_ct, table="persons", column="family_name", row_id=ROW),
        n,
    )
    _us(
        "group encrypt, 10 fields",
        lambda: cipher.encrypt_group(GROUP, table="persons", group="identity", row_id=ROW),
        n,
    )
    _us(
        "group decrypt, 10 fields",
        lambda: cipher.decrypt_group(group_ct, table="persons", group="identity", row_id=ROW),
        n,
    )
    _us("FieldCipher(dek) construction", lambda: FieldCipher(dek), n)
    _us(
        "new DEK + wrap (local AES-GCM KEK)",
        lambda: wrap_data_key(provider, new_data_key(), "r1"),
        n,
    )
    _us("unwrap DEK", lambda: unwrap_data_key(provider, wrapped, "r1"), n)
    with tempfile.TemporaryDirectory() as tmp:
        keyring = LocalKeyringProvider.create(Path(tmp) / "keyring.json")
        file_wrapped = wrap_data_key(keyring, dek, "r1")
        _us(
            "unwrap DEK (keyring file, change check)",
            lambda: unwrap_data_key(keyring, file_wrapped, "r1"),
            n,
        )
    _us(
        "blind index compute (HMAC, cached key)",
        lambda: indexer.compute("family_token", "smith"),
        n,
    )
    terms = indexer.terms_for(PERSON)
    _us(
        f"terms_for(person) -> {len(terms)} terms",
        lambda: indexer.terms_for(PERSON),
        max(n // 10, 1),
    )


if __name__ == "__main__":
    main()
