"""What identity does: register organisations and API clients, authenticate clients, issue tokens.

Functions take the caller's open session and never commit; the request or the command does,
so a change and the event reporting it land together or not at all.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from joserfc import jwt
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.events.identity import ApiClientRegistered, OrganisationRegistered
from kanol_common.logging import get_logger
from kanol_common.outbox import publish
from kanol_identity import credentials
from kanol_identity.errors import (
    ApiClientAlreadyRegistered,
    InvalidClient,
    InvalidScope,
    OrganisationAlreadyRegistered,
    OrganisationNotFound,
)
from kanol_identity.models import (
    ApiClient,
    ApiClientCreate,
    Organisation,
    OrganisationCreate,
    utcnow,
)
from kanol_identity.repository import ApiClientRepository, OrganisationRepository
from kanol_identity.settings import IdentitySettings
from kanol_identity.signing import ALGORITHM, SigningKeys

log = get_logger(__name__)

ACCESS_TOKEN_TYPE = "at+jwt"  # RFC 9068: a JWT access token says so in its header


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scopes: tuple[str, ...]


async def get_organisation(session: AsyncSession, siren: str) -> Organisation:
    organisation = await OrganisationRepository(session).get_by_siren(siren)
    if organisation is None:
        raise OrganisationNotFound(f"No organisation has the SIREN {siren}.")
    return organisation


async def register_organisation(session: AsyncSession, data: OrganisationCreate) -> Organisation:
    repository = OrganisationRepository(session)
    if await repository.get_by_siren(data.siren) is not None:
        raise OrganisationAlreadyRegistered(
            f"An organisation with the SIREN {data.siren} is already registered.",
            siren=data.siren,
        )

    organisation = Organisation(
        siren=data.siren,
        name=data.name,
        kind=data.kind.value,
        departement=data.departement,
        created_at=utcnow(),
    )
    repository.add(organisation)

    event = OrganisationRegistered(
        siren=data.siren, name=data.name, kind=data.kind.value, departement=data.departement
    )
    publish(session, event, subject=data.siren, tenant=data.siren)
    log.info("organisation.registered", tenant=data.siren, kind=data.kind.value)
    return organisation


async def register_api_client(
    session: AsyncSession,
    siren: str,
    data: ApiClientCreate,
    *,
    client_secret: str | None = None,
) -> tuple[ApiClient, str]:
    """A new client of the organisation and its secret, which is stored only as a hash."""
    await get_organisation(session, siren)
    client_id = data.client_id or credentials.new_client_id()
    repository = ApiClientRepository(session)
    if await repository.get_by_client_id(client_id) is not None:
        raise ApiClientAlreadyRegistered(
            f"An API client named {client_id} already exists.", client_id=client_id
        )

    secret = client_secret or credentials.new_client_secret()
    client = ApiClient(
        client_id=client_id,
        siren=siren,
        secret_hash=await credentials.hash_secret(secret),
        scopes=list(data.scopes),
        created_at=utcnow(),
    )
    repository.add(client)

    event = ApiClientRegistered(client_id=client_id, siren=siren, scopes=tuple(data.scopes))
    publish(session, event, subject=client_id, tenant=siren)
    log.info("api_client.registered", tenant=siren, client_id=client_id, scopes=data.scopes)
    return client, secret


async def authenticate_client(session: AsyncSession, client_id: str, secret: str) -> ApiClient:
    """The client whose secret this is; every failure reads the same to the caller."""
    repository = ApiClientRepository(session)
    client = await repository.get_by_client_id(client_id)
    if client is None:
        await credentials.spend_verification_time(secret)
        log.info("oauth.client_refused", client_id=client_id, reason="unknown")
        raise InvalidClient("Client authentication failed.")
    if not await credentials.secret_matches(client.secret_hash, secret):
        log.info("oauth.client_refused", client_id=client_id, reason="bad_secret")
        raise InvalidClient("Client authentication failed.")
    if client.is_revoked:
        log.info("oauth.client_refused", client_id=client_id, reason="revoked")
        raise InvalidClient("Client authentication failed.")

    if credentials.needs_rehash(client.secret_hash):
        # The hashing parameters were strengthened since this secret was stored.
        client.secret_hash = await credentials.hash_secret(secret)
        repository.add(client)
    return client


def granted_scopes(client: ApiClient, requested: str | None) -> tuple[str, ...]:
    """The scopes asked for, all of them the client's; all of the client's when none asked."""
    if requested is None or not requested.strip():
        return tuple(sorted(client.scopes))

    wanted = set(requested.split())
    beyond = sorted(wanted - set(client.scopes))
    if beyond:
        raise InvalidScope(f"The client may not request: {' '.join(beyond)}")
    return tuple(sorted(wanted))


async def issue_access_token(
    session: AsyncSession,
    keys: SigningKeys,
    settings: IdentitySettings,
    client: ApiClient,
    scopes: tuple[str, ...],
) -> IssuedToken:
    key = await keys.current(session)
    now = int(time.time())
    lifetime = settings.access_token_lifetime_seconds
    claims = {
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "sub": client.client_id,
        "client_id": client.client_id,
        "siren": client.siren,
        "scope": " ".join(scopes),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": ACCESS_TOKEN_TYPE}
    token = jwt.encode(header, claims, key, algorithms=[ALGORITHM])

    log.info(
        "oauth.token_issued",
        tenant=client.siren,
        client_id=client.client_id,
        scopes=list(scopes),
        jti=claims["jti"],
        kid=key.kid,
    )
    return IssuedToken(access_token=token, expires_in=lifetime, scopes=scopes)
