"""Auth settings (env prefix PLOTLINE_AUTH_)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.names import env_prefix
from services.common.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=env_prefix("auth"), extra="ignore")

    token_ttl_seconds: int = 3600
    # A new signing key every week; old keys stay in the JWKS until their tokens expire.
    key_rotation_seconds: int = 7 * 24 * 3600
    # Throttling counts failures per (username, client address) and per client address, so
    # failures from elsewhere never lock the owner out. The peer address is the socket's:
    # there is no trusted-proxy setting, so X-Forwarded-For is never believed.
    login_max_failures: int = 5  # per username from one client address
    login_max_address_failures: int = 20  # per client address, across usernames
    login_window_seconds: int = 300
    # argon2 runs in worker threads (it releases the GIL); this bounds how many at once, so
    # a login burst cannot take every thread or all the memory argon2 needs per hash.
    password_hash_workers: int = 4
    # Login cookie: Secure when served over HTTPS (always, in production).
    cookie_secure: bool = False
    cookie_path: str = "/"
    # With an SMTP URL (smtp://user:pass@host:port), new accounts must confirm their address.
    smtp_url: SecretStr | None = None
    mail_from: str = "plotline@localhost"
    # Base URL put in verification mails, e.g. https://plots.example.org/prefix
    public_url: str = "http://127.0.0.1:5006"
    verify_ttl_seconds: int = 24 * 3600
