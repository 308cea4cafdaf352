"""Key providers: keyring file permissions, rotation, environment/secret-file loading."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
import warnings
from pathlib import Path

import pytest

from mash_hub.crypto import (
    CryptoError,
    DecryptionError,
    DevelopmentKeysWarning,
    EnvKeyProvider,
    KeyConfigError,
    KeyProvider,
    KeyringExistsError,
    KeyringPermissionError,
    LocalKeyringProvider,
    UnknownKeyError,
    generate_dev_keyring,
    new_data_key,
    rewrap_data_key,
    unwrap_data_key,
    wrap_data_key,
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _key_strings(raw: bytes) -> list[str]:
    return [_b64(raw), raw.hex(), base64.urlsafe_b64encode(raw).decode(), repr(raw)]


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyringProvider:
    return LocalKeyringProvider.create(tmp_path / "keyring.json")


def test_create_makes_0600_file_and_loads(keyring: LocalKeyringProvider) -> None:
    assert stat.S_IMODE(keyring.path.stat().st_mode) == 0o600
    assert isinstance(keyring, KeyProvider)
    assert keyring.kek_ids() == [keyring.primary_kek_id()]
    assert keyring.primary_kek_id().startswith("kek-")
    assert len(keyring.index_root_key()) == 32
    doc = json.loads(keyring.path.read_text())
    assert doc["format"] == 1 and doc["primary"] == keyring.primary_kek_id()
    assert not [p for p in keyring.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_create_ignores_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        provider = LocalKeyringProvider.create(tmp_path / "k.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(provider.path.stat().st_mode) == 0o600


def test_create_refuses_to_overwrite(keyring: LocalKeyringProvider) -> None:
    before = keyring.path.read_bytes()
    with pytest.raises(KeyringExistsError, match="refusing to overwrite"):
        LocalKeyringProvider.create(keyring.path)
    assert keyring.path.read_bytes() == before


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_load_refuses_group_or_world_access(keyring: LocalKeyringProvider, mode: int) -> None:
    keyring.path.chmod(mode)
    with pytest.raises(KeyringPermissionError) as info:
        LocalKeyringProvider(keyring.path)
    message = str(info.value)
    assert str(keyring.path) in message
    assert f"chmod 600 {keyring.path}" in message
    assert f"{mode:04o}" in message
    assert isinstance(info.value, CryptoError)


def test_load_accepts_0400(keyring: LocalKeyringProvider) -> None:
    keyring.path.chmod(0o400)
    assert LocalKeyringProvider(keyring.path).primary_kek_id() == keyring.primary_kek_id()


def test_load_refuses_symlink(keyring: LocalKeyringProvider, tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(keyring.path)
    with pytest.raises(KeyringPermissionError, match="symbolic link") as info:
        LocalKeyringProvider(link)
    assert str(link) in str(info.value)


def test_load_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="does not exist"):
        LocalKeyringProvider(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    bad.chmod(0o600)
    with pytest.raises(KeyConfigError, match="not valid JSON"):
        LocalKeyringProvider(bad)


def test_short_key_in_keyring_is_named_not_shown(keyring: LocalKeyringProvider) -> None:
    doc = json.loads(keyring.path.read_text())
    short = _b64(b"k" * 16)
    doc["keks"][doc["primary"]]["key"] = short
    keyring.path.write_text(json.dumps(doc))
    with pytest.raises(KeyConfigError, match="32 bytes") as info:
        LocalKeyringProvider(keyring.path)
    assert short not in str(info.value) and doc["primary"] in str(info.value)


def test_wrap_unwrap_round_trip_and_record_binding(keyring: LocalKeyringProvider) -> None:
    dek = new_data_key()
    wrapped = wrap_data_key(keyring, dek, "record-1")
    assert wrapped.kek_id == keyring.primary_kek_id()
    assert unwrap_data_key(keyring, wrapped, "record-1") == dek
    with pytest.raises(DecryptionError, match="authentication failed"):
        unwrap_data_key(keyring, wrapped, "record-2")
    tampered = type(wrapped)(wrapped.kek_id, wrapped.blob[:-1] + bytes([wrapped.blob[-1] ^ 1]))
    with pytest.raises(DecryptionError):
        unwrap_data_key(keyring, tampered, "record-1")
    with pytest.raises(DecryptionError, match="truncated"):
        unwrap_data_key(keyring, type(wrapped)(wrapped.kek_id, wrapped.blob[:-1]), "record-1")
    with pytest.raises(UnknownKeyError):
        unwrap_data_key(keyring, type(wrapped)("kek-unknown", wrapped.blob), "record-1")


def test_rotation_then_retirement(keyring: LocalKeyringProvider) -> None:
    old_id = keyring.primary_kek_id()
    dek = new_data_key()
    old_wrapped = wrap_data_key(keyring, dek, 7)

    new_id = keyring.add_kek()
    assert new_id != old_id
    assert keyring.primary_kek_id() == new_id
    assert sorted(keyring.kek_ids()) == sorted([old_id, new_id])
    assert stat.S_IMODE(keyring.path.stat().st_mode) == 0o600
    assert unwrap_data_key(keyring, old_wrapped, 7) == dek
    assert wrap_data_key(keyring, dek, 7).kek_id == new_id

    rewrapped = rewrap_data_key(keyring, old_wrapped, 7)
    assert rewrapped.kek_id == new_id

    with pytest.raises(KeyConfigError, match="primary"):
        keyring.retire_kek(new_id)
    keyring.retire_kek(old_id)
    assert keyring.kek_ids() == [new_id]
    assert stat.S_IMODE(keyring.path.stat().st_mode) == 0o600
    with pytest.raises(UnknownKeyError, match="retired"):
        unwrap_data_key(keyring, old_wrapped, 7)
    assert unwrap_data_key(keyring, rewrapped, 7) == dek
    entry = json.loads(keyring.path.read_text())["keks"][old_id]
    assert entry["state"] == "retired" and "key" not in entry


def test_other_process_sees_rotation(keyring: LocalKeyringProvider) -> None:
    other = LocalKeyringProvider(keyring.path)
    old_id = keyring.primary_kek_id()
    wrapped = wrap_data_key(keyring, new_data_key(), "r")
    new_id = keyring.add_kek()
    assert other.primary_kek_id() == new_id
    keyring.retire_kek(old_id)
    with pytest.raises(UnknownKeyError, match="retired"):
        unwrap_data_key(other, wrapped, "r")


def test_add_kek_without_promotion_and_set_primary(keyring: LocalKeyringProvider) -> None:
    old_id = keyring.primary_kek_id()
    new_id = keyring.add_kek(make_primary=False)
    assert keyring.primary_kek_id() == old_id
    keyring.set_primary(new_id)
    assert keyring.primary_kek_id() == new_id
    with pytest.raises(UnknownKeyError):
        keyring.set_primary("kek-missing")


def test_repr_hides_keys(keyring: LocalKeyringProvider) -> None:
    doc = json.loads(keyring.path.read_text())
    raws = [base64.b64decode(e["key"]) for e in doc["keks"].values()]
    raws.append(keyring.index_root_key())
    text = repr(keyring) + str(keyring)
    for raw in raws:
        for shown in _key_strings(raw):
            assert shown not in text
    assert keyring.primary_kek_id() in text


def test_generate_dev_keyring_warns_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keyring.json"
    with pytest.warns(DevelopmentKeysWarning, match="development keys generated at"):
        first = generate_dev_keyring(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = generate_dev_keyring(path)
    assert second.primary_kek_id() == first.primary_kek_id()


# --- environment provider ---------------------------------------------------------------

KEK_A = bytes(range(32))
KEK_B = bytes(range(32, 64))
INDEX_ROOT = bytes(range(64, 96))


def _env(**extra: str) -> dict[str, str]:
    env = {
        "MASH_KEKS": f"kek-a:{_b64(KEK_A)},kek-b:{_b64(KEK_B)}",
        "MASH_KEK_PRIMARY": "kek-b",
        "MASH_INDEX_ROOT_KEY": _b64(INDEX_ROOT),
    }
    env.update(extra)
    return env


def test_env_provider_from_variables() -> None:
    provider = EnvKeyProvider(_env())
    assert provider.kek_ids() == ["kek-a", "kek-b"]
    assert provider.primary_kek_id() == "kek-b"
    assert provider.index_root_key() == INDEX_ROOT
    dek = new_data_key()
    assert unwrap_data_key(provider, wrap_data_key(provider, dek, "x"), "x") == dek
    assert EnvKeyProvider.configured(_env())
    assert not EnvKeyProvider.configured({})


def test_env_single_kek_needs_no_primary() -> None:
    env = _env(MASH_KEKS=f"only:{_b64(KEK_A)}")
    del env["MASH_KEK_PRIMARY"]
    assert EnvKeyProvider(env).primary_kek_id() == "only"


def test_env_provider_from_secret_files(tmp_path: Path) -> None:
    keks_file = tmp_path / "keks"
    keks_file.write_text(f"kek-a:{_b64(KEK_A)}\nkek-b:{_b64(KEK_B)}\n")
    root_file = tmp_path / "root"
    root_file.write_text(_b64(INDEX_ROOT) + "\n")
    for f in (keks_file, root_file):
        f.chmod(0o400)
    link = tmp_path / "root-link"
    link.symlink_to(root_file)
    env = {
        "MASH_KEKS_FILE": str(keks_file),
        "MASH_KEK_PRIMARY": "kek-a",
        "MASH_INDEX_ROOT_KEY_FILE": str(link),
    }
    provider = EnvKeyProvider(env)
    assert provider.primary_kek_id() == "kek-a"
    assert provider.index_root_key() == INDEX_ROOT
    assert EnvKeyProvider.configured(env)


def test_env_secret_file_permissions_refused(tmp_path: Path) -> None:
    root_file = tmp_path / "root"
    root_file.write_text(_b64(INDEX_ROOT))
    root_file.chmod(0o644)
    env = _env(MASH_INDEX_ROOT_KEY_FILE=str(root_file))
    del env["MASH_INDEX_ROOT_KEY"]
    with pytest.raises(KeyringPermissionError, match="chmod 600") as info:
        EnvKeyProvider(env)
    assert "MASH_INDEX_ROOT_KEY_FILE" in str(info.value)
    assert _b64(INDEX_ROOT) not in str(info.value)


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"MASH_KEKS": ""}, "MASH_KEKS"),
        ({"MASH_INDEX_ROOT_KEY": ""}, "MASH_INDEX_ROOT_KEY"),
        ({"MASH_INDEX_ROOT_KEY": _b64(INDEX_ROOT[:16])}, "MASH_INDEX_ROOT_KEY"),
        ({"MASH_INDEX_ROOT_KEY": "not*base64!" + _b64(INDEX_ROOT)}, "MASH_INDEX_ROOT_KEY"),
        ({"MASH_KEKS": f"kek-a:{_b64(KEK_A[:31])}"}, "MASH_KEKS"),
        ({"MASH_KEKS": _b64(KEK_A)}, "MASH_KEKS"),
        ({"MASH_KEKS": f"kek-a:{_b64(KEK_A)},kek-a:{_b64(KEK_B)}"}, "MASH_KEKS"),
        ({"MASH_KEK_PRIMARY": "kek-z"}, "MASH_KEK_PRIMARY"),
        ({"MASH_KEKS_FILE": "/nonexistent/keks"}, "MASH_KEKS"),
    ],
)
def test_env_errors_name_variable_not_value(change: dict[str, str], variable: str) -> None:
    env = {k: v for k, v in _env(**change).items() if v}
    with pytest.raises(KeyConfigError) as info:
        EnvKeyProvider(env)
    message = str(info.value)
    assert variable in message
    for raw in (KEK_A, KEK_B, INDEX_ROOT, KEK_A[:31], INDEX_ROOT[:16]):
        for shown in _key_strings(raw):
            assert shown not in message
    assert info.value.__cause__ is None


def test_env_primary_required_with_several_keks() -> None:
    env = _env()
    del env["MASH_KEK_PRIMARY"]
    with pytest.raises(KeyConfigError, match="MASH_KEK_PRIMARY"):
        EnvKeyProvider(env)


def test_env_repr_hides_keys() -> None:
    text = repr(EnvKeyProvider(_env()))
    for raw in (KEK_A, KEK_B, INDEX_ROOT):
        for shown in _key_strings(raw):
            assert shown not in text


def test_keyring_opened_to_others_after_loading_is_refused(keyring: LocalKeyringProvider) -> None:
    wrapped = wrap_data_key(keyring, new_data_key(), "r")
    keyring.path.chmod(0o644)
    with pytest.raises(KeyringPermissionError, match="chmod 600"):
        unwrap_data_key(keyring, wrapped, "r")
    with pytest.raises(KeyringPermissionError), keyring.batch():
        pass
    keyring.path.chmod(0o600)
    unwrap_data_key(keyring, wrapped, "r")


def test_keyring_swapped_for_a_symlink_after_loading_is_refused(
    keyring: LocalKeyringProvider, tmp_path: Path
) -> None:
    wrapped = wrap_data_key(keyring, new_data_key(), "r")
    real = tmp_path / "elsewhere.json"
    keyring.path.rename(real)
    keyring.path.symlink_to(real)
    with pytest.raises(KeyringPermissionError, match="symbolic link"):
        unwrap_data_key(keyring, wrapped, "r")


def test_a_batch_checks_the_keyring_once_on_entry_and_only_for_its_thread(
    keyring: LocalKeyringProvider,
) -> None:
    wrapped = [wrap_data_key(keyring, new_data_key(), i) for i in range(3)]
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            unwrap_data_key(keyring, wrapped[0], 0)
        except KeyringPermissionError as exc:
            errors.append(exc)

    with keyring.batch():
        keyring.path.chmod(0o644)
        # Checked on entry: the rest of this batch (nested ones too) goes on unchecked ...
        with keyring.batch():
            assert [unwrap_data_key(keyring, w, i) for i, w in enumerate(wrapped)]
        assert unwrap_data_key(keyring, wrapped[1], 1)
        # ... while another thread's calls are still checked one by one.
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1
    with pytest.raises(KeyringPermissionError):
        unwrap_data_key(keyring, wrapped[2], 2)
    with pytest.raises(KeyringPermissionError), keyring.batch():
        pass


def test_a_batch_sees_a_rotation_made_before_it_started(keyring: LocalKeyringProvider) -> None:
    other = LocalKeyringProvider(keyring.path)
    old_id = keyring.primary_kek_id()
    wrapped = wrap_data_key(keyring, new_data_key(), "r")
    new_id = keyring.add_kek()
    keyring.retire_kek(old_id)
    with other.batch():
        assert other.primary_kek_id() == new_id
        with pytest.raises(UnknownKeyError, match="retired"):
            unwrap_data_key(other, wrapped, "r")


def test_env_provider_batches_too() -> None:
    provider = EnvKeyProvider(
        {"MASH_KEKS": f"k1:{_b64(b'a' * 32)}", "MASH_INDEX_ROOT_KEY": _b64(b"b" * 32)}
    )
    with provider.batch():
        wrapped = wrap_data_key(provider, new_data_key(), "r")
        assert unwrap_data_key(provider, wrapped, "r")
