"""The checkpoint signing key: 0600 files only, env forms, never printed or pickled."""

from __future__ import annotations

import base64
import pickle
from pathlib import Path

import pytest

from mash_hub.crypto.errors import KeyConfigError, KeyringExistsError, KeyringPermissionError
from mash_hub.crypto.signing import create_signing_key_file, load_signing_key
from mash_hub.settings import Settings


def settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path, **extra)  # type: ignore[arg-type]


def test_created_on_demand_with_mode_0600_and_reloaded(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="does not exist"):
        load_signing_key(settings(tmp_path))
    key = load_signing_key(settings(tmp_path), create=True)
    path = tmp_path / "audit-signing.key"
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_signing_key(settings(tmp_path), create=True)
    assert again.key_id == key.key_id
    assert key.verify(key.sign(b"m"), b"m") and not key.verify(key.sign(b"m"), b"n")
    with pytest.raises(KeyringExistsError):
        create_signing_key_file(path)


def test_group_readable_and_symlinked_key_files_are_refused(tmp_path: Path) -> None:
    key_path = tmp_path / "audit-signing.key"
    create_signing_key_file(key_path)
    key_path.chmod(0o640)
    with pytest.raises(KeyringPermissionError, match="chmod"):
        load_signing_key(settings(tmp_path))
    key_path.chmod(0o600)
    link = tmp_path / "link.key"
    link.symlink_to(key_path)
    with pytest.raises(KeyringPermissionError, match="symbolic link"):
        load_signing_key(settings(tmp_path, audit_signing_key_path=link))


def test_environment_forms(tmp_path: Path) -> None:
    seed = bytes(range(32))
    encoded = base64.b64encode(seed).decode()
    direct = load_signing_key(settings(tmp_path, audit_signing_key=encoded))
    secret = tmp_path / "secret"
    secret.write_text(encoded + "\n")
    secret.chmod(0o400)
    from_file = load_signing_key(settings(tmp_path, audit_signing_key_file=secret))
    assert direct.key_id == from_file.key_id
    with pytest.raises(KeyConfigError, match="not both"):
        load_signing_key(
            settings(tmp_path, audit_signing_key=encoded, audit_signing_key_file=secret)
        )
    with pytest.raises(KeyConfigError, match="32 bytes"):
        load_signing_key(settings(tmp_path, audit_signing_key=base64.b64encode(b"short").decode()))


def test_never_printed_or_pickled(tmp_path: Path) -> None:
    key = create_signing_key_file(tmp_path / "k")
    seed_b64 = (tmp_path / "k").read_text().strip()
    assert seed_b64 not in repr(key) and key.key_id in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)
