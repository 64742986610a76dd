"""Access tokens for tests: a signing key of their own, and a verifier that trusts only it.

tokens = TokenFactory()
app.state.token_verifier = tokens.verifier()
headers = {"Authorization": f"Bearer {tokens.issue('213502388', 'actes:write')}"}
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySetSerialization, RSAKey

from kanol_common.auth import StaticJwksVerifier

DEFAULT_ISSUER = "http://127.0.0.1:8001"
DEFAULT_AUDIENCE = "kanol"


class TokenFactory:
    """Signs tokens shaped like identity's with a fresh RSA key (RS256).

    The defaults match :class:`~kanol_common.settings.CommonSettings`, so a service built
    with default settings accepts them once ``verifier()`` is set on ``app.state``.
    """

    def __init__(
        self,
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        kid: str | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = kid or f"test-{uuid.uuid4().hex[:12]}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": self.kid, "use": "sig"})

    def issue(
        self,
        siren: str,
        scopes: Iterable[str] | str,
        client_id: str = "test-client",
        expires_in: int = 300,
        **claim_overrides: Any,
    ) -> str:
        """A signed token; an override set to ``None`` removes that claim."""
        now = int(time.time())
        scope = scopes if isinstance(scopes, str) else " ".join(scopes)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client_id,
            "client_id": client_id,
            "siren": siren,
            "scope": scope,
            "iat": now,
            "exp": now + expires_in,
            "jti": uuid.uuid4().hex,
        }
        claims.update(claim_overrides)
        claims = {name: value for name, value in claims.items() if value is not None}

        header = {"alg": "RS256", "kid": self.kid}
        return jwt.encode(header, claims, self.key, algorithms=["RS256"])

    def jwks(self) -> KeySetSerialization:
        """The public key set, as identity serves it at ``/.well-known/jwks.json``."""
        return {"keys": [self.key.as_dict(private=False)]}

    def verifier(self) -> StaticJwksVerifier:
        return StaticJwksVerifier(self.jwks(), issuer=self.issuer, audience=self.audience)
