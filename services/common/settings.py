"""Settings base: every service subclasses it with its own env prefix (PLOTLINE_<SERVICE>_)."""

from __future__ import annotations

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that mean "nobody configured this"; refused outside --dev.
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "password", "placeholder", "xxx"}


class ServiceSettings(BaseSettings):
    """What every service needs; a service adds its own fields in its config module."""

    model_config = SettingsConfigDict(env_prefix="PLOTLINE_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    kv_url: str = "memory://"
    blob_url: str = "memory://"
    azure_connection_string: SecretStr | None = None
    multi_user: bool = False
    # JWT claims every service checks; auth issues tokens with exactly these.
    issuer: str = "plotline"
    audience: str = "plotline"
    # Optional HTTP JWKS endpoint; by default keys are asked of auth over NATS.
    jwks_url: str | None = None
    # How long a verified API key is trusted without asking auth again; a revocation
    # event drops it at once, this only bounds the damage of a lost event.
    api_key_cache_seconds: float = 10.0
    max_body_bytes: int = 1 << 20
    dev: bool = False

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> ServiceSettings:
        if self.dev:
            return self
        for name, value in self:
            if isinstance(value, SecretStr) and value.get_secret_value().strip().lower() in (
                PLACEHOLDER_SECRETS
            ):
                raise ValueError(f"{name} is a placeholder; set a real value (or use --dev)")
        return self
