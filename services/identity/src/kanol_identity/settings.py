"""identity's settings: the common ones plus where it listens and how long its tokens live."""

from __future__ import annotations

from kanol_common.settings import CommonSettings


class IdentitySettings(CommonSettings):
    service_name: str = "identity"
    host: str = "127.0.0.1"
    port: int = 8001

    access_token_lifetime_seconds: int = 15 * 60
    signing_key_bits: int = 2048
    # A retired signing key stays in the JWKS this long after rotation, so the tokens it
    # signed keep verifying until they expire (their lifetime plus the verifiers' leeway).
    retired_key_grace_seconds: int = 15 * 60 + 120

    # -- the authorisation server (agents in a browser, refresh tokens, brute force) --
    id_token_lifetime_seconds: int = 5 * 60
    authorization_code_lifetime_seconds: int = 60
    # A refresh token lives this long unused; its family (one login) at most a working day.
    refresh_token_lifetime_seconds: int = 8 * 3600
    refresh_family_lifetime_seconds: int = 12 * 3600
    # The browser's login session at identity (single sign-on between the agent's apps).
    login_session_lifetime_seconds: int = 8 * 3600
    # Secure cookies need HTTPS; only a local development server over plain HTTP sets false.
    session_cookie_secure: bool = True
    # Automatic rotation: a signing key older than this is replaced (0: only rotate-keys).
    signing_key_max_age_seconds: int = 0
    # Failures allowed before delays start, per account or client, and per IP address.
    throttle_free_failures: int = 5
    throttle_free_failures_per_address: int = 50
    throttle_base_delay_seconds: int = 2
    throttle_max_delay_seconds: int = 15 * 60
    throttle_window_seconds: int = 15 * 60
    # How often each replica rotates an old signing key and deletes expired rows.
    housekeeping_interval_seconds: float = 300.0
