"""Auth settings (env prefix PLOTLINE_AUTH_)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PLOTLINE_AUTH_", extra="ignore")

    token_ttl_seconds: int = 3600
    # A new signing key every week; old keys stay in the JWKS until their tokens expire.
    key_rotation_seconds: int = 7 * 24 * 3600
    login_max_failures: int = 5
    login_window_seconds: int = 300
    # Login cookie: Secure when served over HTTPS (always, in production).
    cookie_secure: bool = False
    cookie_path: str = "/"
    # With an SMTP URL (smtp://user:pass@host:port), new accounts must confirm their address.
    smtp_url: SecretStr | None = None
    mail_from: str = "plotline@localhost"
    # Base URL put in verification mails, e.g. https://plots.example.org/prefix
    public_url: str = "http://127.0.0.1:5006"
    verify_ttl_seconds: int = 24 * 3600
