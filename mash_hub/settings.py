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
    pool_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a request waits for a free pooled connection before the API "
        "answers 503 (database_unavailable).",
    )
    connect_timeout_seconds: int = Field(
        default=5,
        ge=2,
        le=300,
        description="How long one attempt to open a connection to PostgreSQL may take "
        "(libpq connect_timeout), so a server that does not answer cannot hang requests.",
    )
    log_level: str = Field(default="INFO")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: one JSON object per log line (time, level, logger, message, "
        "request id), for a log pipeline. Neither form holds personal data.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a Prometheus scraper presents at /metrics; unset: no metrics.",
    )
    key_provider: Literal["auto", "keyring", "env"] = Field(
        default="auto",
        description=(
            "Where key-encryption keys come from: a local keyring file, or MASH_KEKS / "
            "MASH_KEK_PRIMARY / MASH_INDEX_ROOT_KEY (or their _FILE forms). 'auto' uses the "
            "environment when MASH_KEKS is set, else the keyring."
        ),
    )
    feeds_dir: Path | None = Field(
        default=None,
        description="A folder of extra feed definitions (YAML), beside the shipped ones.",
    )
    ingest_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Processes that standardise and encrypt during ingestion: 0 = one per CPU.",
    )
    linkage_model: Path | None = Field(
        default=None,
        description="The trained linkage model JSON; default: one trained in the data dir, "
        "else the model shipped in linkage/.",
    )
    keyring_path: Path | None = Field(
        default=None, description="The keyring file; default <data_dir>/keyring.json."
    )
    policy_dir: Path | None = Field(
        default=None,
        description=(
            "The folder holding the access policy's model.conf and policy.csv; default the "
            "repository's policies/ (or the copy bundled into the wheel)."
        ),
    )
    audit_checkpoint_dir: Path | None = Field(
        default=None,
        description=(
            "Where signed audit checkpoints are exported (JSON lines), outside the database; "
            "default <data_dir>/audit-checkpoints."
        ),
    )
    audit_checkpoint_interval_seconds: float = Field(
        default=300.0, ge=0, description="How often `serve` signs a checkpoint; 0 disables."
    )
    audit_signing_key_path: Path | None = Field(
        default=None,
        description="The Ed25519 checkpoint signing key; default <data_dir>/audit-signing.key.",
    )
    audit_signing_key: SecretStr | None = Field(
        default=None, description="The checkpoint signing key (base64 Ed25519 seed)."
    )
    audit_signing_key_file: Path | None = Field(
        default=None, description="A secret file holding MASH_AUDIT_SIGNING_KEY's value."
    )
    backup_key: SecretStr | None = Field(
        default=None, description="The key sealing backup files (base64, 32 bytes)."
    )
    backup_key_file: Path | None = Field(
        default=None, description="A secret file holding MASH_BACKUP_KEY's value."
    )
    backup_key_path: Path | None = Field(
        default=None, description="The backup key file; default <data_dir>/backup.key."
    )
    erasure_ledger_path: Path | None = Field(
        default=None,
        description="Erasures (person ids and times) kept outside the database, re-applied "
        "on restore; default <data_dir>/erasure-ledger.jsonl.",
    )

    request_statement_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Longest one SQL statement of an HTTP request may run before PostgreSQL "
        "cancels it and the API answers 503 (database_timeout); 0: no limit. CLI commands "
        "and jobs (ingest, linkage, verify) have none.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Largest request body the API accepts (413 above)."
    )
    rate_limit_per_minute: int = Field(
        default=600,
        ge=1,
        description="API requests per minute per authenticated principal (burst the same).",
    )
    auth_failures_per_minute: int = Field(
        default=10,
        ge=1,
        description="Failed authentications per minute per client IP before answering 429.",
    )
    token_signing_key_path: Path | None = Field(
        default=None,
        description="Secret signing hub-issued staff tokens; default <data_dir>/token-signing.key",
    )
    token_signing_key: SecretStr | None = Field(
        default=None, description="The token signing secret (base64, 32 bytes)."
    )
    token_signing_key_file: Path | None = Field(
        default=None, description="A secret file holding MASH_TOKEN_SIGNING_KEY's value."
    )
    token_issuer: str = Field(default="mash-hub", description="`iss` of hub-issued tokens.")
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The address people open the hub's pages at (sign-in links start with it).",
    )
    token_audience: str = Field(default="mash-hub-api", description="`aud` of hub-issued tokens.")
    oidc_issuer: str | None = Field(
        default=None, description="Issuer of staff OIDC access tokens; unset disables OIDC."
    )
    oidc_audience: str | None = Field(default=None, description="Required `aud` of OIDC tokens.")
    oidc_jwks_url: str | None = Field(default=None, description="The OIDC provider's JWKS URL.")
    oidc_jwks_file: Path | None = Field(
        default=None, description="A local JWKS file instead of the URL (air-gapped use)."
    )
    oidc_role_claim: str = Field(default="mash_role", description="OIDC claim holding the role.")
    oidc_agency_claim: str = Field(
        default="mash_agency", description="OIDC claim holding the agency."
    )
    oidc_client_id: str | None = Field(
        default=None,
        description="The pages' client id at the OIDC provider (MASH_OIDC_ISSUER); set, the "
        "sign-in page offers the provider's sign-in (authorization code with PKCE). ID tokens "
        "must name it in `aud`. The role, agency and JWKS settings are the API's.",
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None,
        description="The pages' client secret, for a confidential client; unset: a public "
        "client (PKCE alone).",
    )
    oidc_provider_name: str = Field(
        default="your organisation's account",
        description='Shown on the sign-in page as "Sign in with <name>".',
    )
    oidc_scope: str = Field(
        default="openid", description="Scopes asked for at sign-in (must include openid)."
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
    def resolved_audit_checkpoint_dir(self) -> Path:
        path = self.audit_checkpoint_dir or self.data_dir / "audit-checkpoints"
        return path.expanduser().absolute()

    @property
    def resolved_audit_signing_key_path(self) -> Path:
        path = self.audit_signing_key_path or self.data_dir / "audit-signing.key"
        return path.expanduser().absolute()

    @property
    def resolved_token_signing_key_path(self) -> Path:
        path = self.token_signing_key_path or self.data_dir / "token-signing.key"
        return path.expanduser().absolute()

    @property
    def resolved_backup_key_path(self) -> Path:
        path = self.backup_key_path or self.data_dir / "backup.key"
        return path.expanduser().absolute()

    @property
    def resolved_erasure_ledger_path(self) -> Path:
        path = self.erasure_ledger_path or self.data_dir / "erasure-ledger.jsonl"
        return path.expanduser().absolute()

    @property
    def oidc_sign_in_enabled(self) -> bool:
        """The pages offer OIDC sign-in (issuer, audience and the pages' client id set)."""
        return bool(self.oidc_issuer and self.oidc_audience and self.oidc_client_id)

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this process, read once."""
    return Settings()
