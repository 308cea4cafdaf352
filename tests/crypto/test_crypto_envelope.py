"""Field and field-group encryption: round trips, binding to place, tamper detection."""

from __future__ import annotations

import base64
import pickle
import uuid
from typing import TypedDict, cast

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from mash_hub.crypto import (
    DataKey,
    DecryptionError,
    FieldCipher,
    WrappedKey,
    new_data_key,
)

DEK = DataKey(bytes(range(100, 132)))


class Place(TypedDict):
    table: str
    column: str
    row_id: str


class GroupPlace(TypedDict):
    table: str
    group: str
    row_id: str


PLACE: Place = {"table": "persons", "column": "family_name", "row_id": "row-1"}
GROUP_PLACE: GroupPlace = {"table": "persons", "group": "identity", "row_id": "row-1"}
SECRET = "Ġráinne Ní Mhaoilmhichíl"


@pytest.fixture
def cipher() -> FieldCipher:
    return FieldCipher(DEK)


def test_round_trip_text_and_bytes(cipher: FieldCipher) -> None:
    assert cipher.decrypt(cipher.encrypt(SECRET, **PLACE), **PLACE) == SECRET
    assert cipher.decrypt_text(cipher.encrypt("", **PLACE), **PLACE) == ""
    raw = bytes(range(256))
    assert cipher.decrypt(cipher.encrypt(raw, **PLACE), **PLACE) == raw
    with pytest.raises(DecryptionError, match="bytes, not text"):
        cipher.decrypt_text(cipher.encrypt(raw, **PLACE), **PLACE)


def test_function_wrappers_match_cipher() -> None:
    ct = FieldCipher(DEK).encrypt(SECRET, **PLACE)
    assert FieldCipher(DEK.material).decrypt(ct, **PLACE) == SECRET
    assert FieldCipher(DEK).decrypt(ct, **PLACE) == SECRET
    group = {"a": "1", "b": None, "c": ["x", "y"]}
    one_off = FieldCipher(DEK)
    assert (
        one_off.decrypt_group(one_off.encrypt_group(group, **GROUP_PLACE), **GROUP_PLACE) == group
    )


def test_format_and_padding(cipher: FieldCipher) -> None:
    ct = cipher.encrypt("abc", **PLACE)
    assert ct[0] == 1
    assert len(ct) == 1 + 12 + 16 + 16
    assert len(cipher.encrypt("a" * 14, **PLACE)) == len(ct)
    assert len(cipher.encrypt("a" * 15, **PLACE)) == len(ct) + 16


def test_same_value_never_same_ciphertext(cipher: FieldCipher) -> None:
    cts = {cipher.encrypt(SECRET, **PLACE) for _ in range(200)}
    assert len(cts) == 200
    nonces = {ct[1:13] for ct in cts}
    assert len(nonces) == 200
    groups = {cipher.encrypt_group({"a": SECRET}, **GROUP_PLACE) for _ in range(50)}
    assert len(groups) == 50


@pytest.mark.parametrize(
    "moved",
    [
        {"row_id": "row-2"},
        {"column": "given_names"},
        {"table": "persons_archive"},
        {"table": "persons|family_name", "column": ""},
        {"table": "person", "column": "sfamily_name"},
    ],
)
def test_moved_ciphertext_fails(cipher: FieldCipher, moved: dict[str, str]) -> None:
    ct = cipher.encrypt(SECRET, **PLACE)
    with pytest.raises(DecryptionError, match="authentication failed") as info:
        cipher.decrypt(ct, **cast(Place, {**PLACE, **moved}))
    assert SECRET not in str(info.value)


def test_row_id_types_are_canonical(cipher: FieldCipher) -> None:
    rid = uuid.uuid4()
    ct = cipher.encrypt(SECRET, table="t", column="c", row_id=rid)
    assert cipher.decrypt(ct, table="t", column="c", row_id=str(rid)) == SECRET
    ct = cipher.encrypt(SECRET, table="t", column="c", row_id=42)
    assert cipher.decrypt(ct, table="t", column="c", row_id="42") == SECRET


def test_group_and_field_are_not_interchangeable(cipher: FieldCipher) -> None:
    field_ct = cipher.encrypt("x", table="persons", column="identity", row_id="row-1")
    with pytest.raises(DecryptionError):
        cipher.decrypt_group(field_ct, **GROUP_PLACE)
    group_ct = cipher.encrypt_group({"a": "x"}, **GROUP_PLACE)
    with pytest.raises(DecryptionError):
        cipher.decrypt(group_ct, table="persons", column="identity", row_id="row-1")


def test_group_moved_fails(cipher: FieldCipher) -> None:
    ct = cipher.encrypt_group({"family_name": SECRET}, **GROUP_PLACE)
    for moved in ({"row_id": "row-2"}, {"group": "details:police"}, {"table": "other"}):
        with pytest.raises(DecryptionError) as info:
            cipher.decrypt_group(ct, **cast(GroupPlace, {**GROUP_PLACE, **moved}))
        assert SECRET not in str(info.value)


def test_wrong_key_fails() -> None:
    ct = FieldCipher(DEK).encrypt(SECRET, **PLACE)
    with pytest.raises(DecryptionError):
        FieldCipher(new_data_key()).decrypt(ct, **PLACE)


def test_every_byte_tampered_fails(cipher: FieldCipher) -> None:
    ct = cipher.encrypt(SECRET, **PLACE)
    for position in range(len(ct)):
        for flip in (0x01, 0x80):
            tampered = bytearray(ct)
            tampered[position] ^= flip
            with pytest.raises(DecryptionError) as info:
                cipher.decrypt(bytes(tampered), **PLACE)
            assert SECRET not in str(info.value)


def test_truncated_and_unknown_version_fail(cipher: FieldCipher) -> None:
    ct = cipher.encrypt(SECRET, **PLACE)
    for size in range(len(ct)):
        with pytest.raises(DecryptionError):
            cipher.decrypt(ct[:size], **PLACE)
    with pytest.raises(DecryptionError, match="unknown ciphertext version 2"):
        cipher.decrypt(b"\x02" + ct[1:], **PLACE)
    with pytest.raises(DecryptionError):
        cipher.decrypt(ct + b"\x00", **PLACE)
    with pytest.raises(ValueError, match="version"):
        cipher.encrypt(SECRET, **PLACE, version=2)


def test_error_messages_name_place_only(cipher: FieldCipher) -> None:
    ct = cipher.encrypt(SECRET, **PLACE)
    with pytest.raises(DecryptionError) as info:
        cipher.decrypt(ct, table="persons", column="family_name", row_id="row-9")
    message = str(info.value)
    assert "persons.family_name" in message and "row-9" in message
    for shown in (DEK.material.hex(), base64.b64encode(DEK.material).decode(), SECRET):
        assert shown not in message


def test_group_holds_nested_json_values(cipher: FieldCipher) -> None:
    history = {"addresses": [{"postcode": "LS6 2QT", "current": True, "years": 3}], "n": 1.5}
    ct = cipher.encrypt_group(history, **GROUP_PLACE)
    assert cipher.decrypt_group(ct, **GROUP_PLACE) == history


def test_group_rejects_non_json_values_without_echoing_them(cipher: FieldCipher) -> None:
    for bad in ({"a": {b"raw-secret"}}, {"a": float("nan")}, {"a": object()}):
        with pytest.raises(TypeError) as info:
            cipher.encrypt_group(bad, **GROUP_PLACE)
        assert "raw-secret" not in str(info.value)


def test_reprs_and_pickling_hide_keys(cipher: FieldCipher) -> None:
    texts = [repr(cipher), str(cipher), repr(DEK), str(DEK), f"{DEK}"]
    for text in texts:
        assert DEK.material.hex() not in text
        assert base64.b64encode(DEK.material).decode() not in text
        assert repr(DEK.material) not in text
    for obj in (cipher, DEK):
        with pytest.raises(TypeError):
            pickle.dumps(obj)


def test_wrapped_key_packing() -> None:
    wrapped = WrappedKey("kek-20261128-1a2b3c", b"\x01" + b"z" * 60)
    assert WrappedKey.from_bytes(wrapped.to_bytes()) == wrapped
    with pytest.raises(DecryptionError):
        WrappedKey.from_bytes(b"\x40abc")


def test_data_key_validation() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey(b"short")
    assert new_data_key() != new_data_key()


_text = st.text(alphabet=st.characters(codec="utf-8"))
_names = st.sampled_from(
    ["", "a", "family_name", "| |", "עִברִית", "名前", "🙂", "x\u0301", "a\x00b"]
)


@settings(max_examples=300, deadline=None)
@given(value=_text, table=_names, column=_names, row=st.one_of(_text, st.integers()))
def test_hypothesis_field_round_trip(value: str, table: str, column: str, row: str | int) -> None:
    cipher = FieldCipher(DEK)
    ct = cipher.encrypt(value, table=table, column=column, row_id=row)
    assert cipher.decrypt(ct, table=table, column=column, row_id=row) == value


@settings(max_examples=200, deadline=None)
@given(value=st.binary())
def test_hypothesis_bytes_round_trip(value: bytes) -> None:
    cipher = FieldCipher(DEK)
    assert cipher.decrypt(cipher.encrypt(value, **PLACE), **PLACE) == value


_group_value = st.one_of(st.none(), _text, st.lists(_text, max_size=5))


@settings(max_examples=200, deadline=None)
@given(mapping=st.dictionaries(_text, _group_value, max_size=10))
def test_hypothesis_group_round_trip(mapping: dict[str, str | list[str] | None]) -> None:
    cipher = FieldCipher(DEK)
    ct = cipher.encrypt_group(mapping, **GROUP_PLACE)
    assert cipher.decrypt_group(ct, **GROUP_PLACE) == mapping


@settings(max_examples=200, deadline=None)
@given(value=_text, data=st.data())
def test_hypothesis_tamper_position(value: str, data: st.DataObject) -> None:
    cipher = FieldCipher(DEK)
    ct = bytearray(cipher.encrypt(value, **PLACE))
    position = data.draw(st.integers(0, len(ct) - 1))
    ct[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecryptionError):
        cipher.decrypt(bytes(ct), **PLACE)


def test_group_ciphertext_is_bound_to_the_spelled_out_associated_data() -> None:
    """The associated data (built from a cached prefix) is exactly the documented encoding,
    so ciphertexts written before and after the cache open alike."""
    key, row_id = bytes(range(32)), uuid.UUID("12345678-1234-5678-1234-567812345678")
    sealed = FieldCipher(key).encrypt_group(
        {"a": 1}, table="record_field_groups", group="identity", row_id=row_id
    )
    aad = b"mash-hub|field|\x01"
    for part in (b"group", b"record_field_groups", b"identity", str(row_id).encode()):
        aad += len(part).to_bytes(4, "big") + part
    padded = AESGCM(key).decrypt(sealed[1:13], sealed[13:], aad)
    assert padded.startswith(b'g{"a":1}\x80')
