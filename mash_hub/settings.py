"""The hub's one settings object.

Every tunable lives here so an operator has one place to read (and one prefix, ``MASH_``,
to set). Nothing else in the package reads environment variables for configuration.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Hub configuration, read from ``MASH_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="MASH_", extra="ignore")

    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "SQLAlchemy/psycopg URL of an external PostgreSQL server. Unset: the hub runs a "
            "private embedded PostgreSQL server in MASH_DATA_DIR."
        ),
    )
    data_dir: Path = Field(
        default=Path(".mash-hub"),
        description="Where the embedded server, development keys and local state live.",
    )
    pool_size: int = Field(default=5, ge=1, le=100, description="Connections kept in the pool.")
    pool_max_overflow: int = Field(default=10, ge=0, le=200)
    pool_timeout_seconds: float = Field(default=30.0, gt=0)
    log_level: str = Field(default="INFO")
    key_provider: Literal["auto", "keyring", "env"] = Field(
        default="auto",
        description=(
            "Where key-encryption keys come from: a local keyring file, or MASH_KEKS / "
            "MASH_KEK_PRIMARY / MASH_INDEX_ROOT_KEY (or their _FILE forms). 'auto' uses the "
            "environment when MASH_KEKS is set, else the keyring."
        ),
    )
    keyring_path: Path | None = Field(
        default=None, description="The keyring file; default <data_dir>/keyring.json."
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper

    @property
    def resolved_keyring_path(self) -> Path:
        path = self.keyring_path or self.data_dir / "keyring.json"
        return path.expanduser().absolute()

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this process, read once."""
    return Settings()
