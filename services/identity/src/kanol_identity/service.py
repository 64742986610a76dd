"""What identity does: organisations, subscriptions and API clients.

Functions take the caller's open session and never commit; the request or the command does,
so a change and the event reporting it land together or not at all. Agents live in
:mod:`kanol_identity.agents`, effective subscriptions in :mod:`kanol_identity.subscriptions`,
tokens in :mod:`kanol_identity.tokens`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.events.identity import (
    ApiClientRegistered,
    ApiClientRevoked,
    OrganisationRegistered,
    OrganisationUpdated,
)
from kanol_common.logging import get_logger
from kanol_common.outbox import publish
from kanol_identity import credentials, subscriptions
from kanol_identity.errors import (
    ApiClientAlreadyRegistered,
    ApiClientNotFound,
    ClientKeyInvalid,
    ClientRevoked,
    NotGrantable,
    NotSubscribed,
    OrganisationAlreadyRegistered,
    OrganisationNotFound,
    OrganisationParentInvalid,
)
from kanol_identity.models import (
    ORG_ADMIN_SCOPE,
    PARENT_KINDS,
    ApiClient,
    ApiClientCreate,
    ApiClientUpdate,
    ClientAuthMethod,
    Organisation,
    OrganisationCreate,
    OrganisationKind,
    OrganisationPublic,
    OrganisationUpdate,
    Service,
    scope_service,
    utcnow,
)
from kanol_identity.repository import (
    ApiClientRepository,
    OrganisationRepository,
    SubscriptionRepository,
)

log = get_logger(__name__)


class Outcome(StrEnum):
    """What an idempotent write did."""

    REGISTERED = "registered"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


# -- organisations -------------------------------------------------------------------------


async def get_organisation(session: AsyncSession, siren: str) -> Organisation:
    organisation = await OrganisationRepository(session).get_by_siren(siren)
    if organisation is None:
        raise OrganisationNotFound(f"No organisation has the SIREN {siren}.")
    return organisation


async def organisations_public(
    session: AsyncSession, organisations: Sequence[Organisation]
) -> list[OrganisationPublic]:
    """Organisations as the API shows them, with their own and effective subscriptions."""
    sirens = [organisation.siren for organisation in organisations]
    effective = await subscriptions.effective_of(session, sirens)
    own = await SubscriptionRepository(session).services_of(sirens)
    return [
        OrganisationPublic(
            siren=organisation.siren,
            name=organisation.name,
            kind=OrganisationKind(organisation.kind),
            departement=organisation.departement,
            parent_siren=organisation.parent_siren,
            arrondissement=organisation.arrondissement,
            nature_collectivite=organisation.nature_collectivite,
            subscriptions=sorted(Service(service) for service in own[organisation.siren]),
            effective_subscriptions=list(effective[organisation.siren]),
            created_at=organisation.created_at,
            updated_at=organisation.updated_at,
        )
        for organisation in organisations
    ]


async def organisation_public(
    session: AsyncSession, organisation: Organisation
) -> OrganisationPublic:
    return (await organisations_public(session, [organisation]))[0]


async def list_organisations(
    session: AsyncSession,
    *,
    after: str | None,
    limit: int,
    kind: OrganisationKind | None = None,
    parent_siren: str | None = None,
    departement: str | None = None,
    only: str | None = None,
) -> list[Organisation]:
    return await OrganisationRepository(session).page(
        after=after,
        limit=limit,
        kind=kind.value if kind else None,
        parent_siren=parent_siren,
        departement=departement,
        only=only,
    )


async def register_organisation(session: AsyncSession, data: OrganisationCreate) -> Organisation:
    repository = OrganisationRepository(session)
    if await repository.get_by_siren(data.siren) is not None:
        raise OrganisationAlreadyRegistered(
            f"An organisation with the SIREN {data.siren} is already registered.",
            siren=data.siren,
        )
    await _check_parent(session, data.siren, data.kind, data.parent_siren)

    organisation = Organisation(
        siren=data.siren,
        name=data.name,
        kind=data.kind.value,
        departement=data.departement,
        parent_siren=data.parent_siren,
        arrondissement=data.arrondissement,
        nature_collectivite=data.nature_collectivite,
        created_at=utcnow(),
    )
    repository.add(organisation)
    await session.flush()

    event = OrganisationRegistered(
        siren=data.siren,
        name=data.name,
        kind=data.kind.value,
        departement=data.departement,
        parent_siren=data.parent_siren,
        arrondissement=data.arrondissement,
        nature_collectivite=data.nature_collectivite,
    )
    publish(session, event, subject=data.siren, tenant=data.siren)
    # A commune registered under a subscribed EPCI may use its services at once.
    after = await subscriptions.effective_of(session, [data.siren])
    subscriptions.publish_changes(session, {}, after)
    log.info("organisation.registered", tenant=data.siren, kind=data.kind.value)
    return organisation


async def update_organisation(
    session: AsyncSession, siren: str, data: OrganisationUpdate
) -> tuple[Organisation, bool]:
    """Apply the fields the caller sent; the organisation and whether anything changed."""
    organisation = await get_organisation(session, siren)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("name") is None:
        changes.pop("name", None)
    if changes.get("kind") is None:
        changes.pop("kind", None)
    if changes.get("departement") is None:
        changes.pop("departement", None)
    changes = {
        field: value.value if isinstance(value, StrEnum) else value
        for field, value in changes.items()
        if getattr(organisation, field) != (value.value if isinstance(value, StrEnum) else value)
    }
    if not changes:
        return organisation, False

    kind = OrganisationKind(changes.get("kind", organisation.kind))
    parent_siren = changes.get("parent_siren", organisation.parent_siren)
    await _check_parent(session, siren, kind, parent_siren)
    if "kind" in changes:
        await _check_children_fit(session, organisation, kind)

    covered = await subscriptions.covered_by(session, siren)
    before = await subscriptions.effective_of(session, covered)
    for field, value in changes.items():
        setattr(organisation, field, value)
    organisation.updated_at = utcnow()
    OrganisationRepository(session).add(organisation)
    await session.flush()

    event = OrganisationUpdated(
        siren=siren,
        name=organisation.name,
        kind=organisation.kind,
        departement=organisation.departement,
        parent_siren=organisation.parent_siren,
        arrondissement=organisation.arrondissement,
        nature_collectivite=organisation.nature_collectivite,
    )
    publish(session, event, subject=siren, tenant=siren)
    after = await subscriptions.effective_of(session, covered)
    subscriptions.publish_changes(session, before, after)
    log.info("organisation.updated", tenant=siren, fields=sorted(changes))
    return organisation, True


async def upsert_organisation(session: AsyncSession, data: OrganisationCreate) -> Outcome:
    """Register the organisation, or bring it to ``data``; unchanged ones publish nothing."""
    existing = await OrganisationRepository(session).get_by_siren(data.siren)
    if existing is None:
        await register_organisation(session, data)
        return Outcome.REGISTERED

    fields = data.model_dump(
        include={"name", "kind", "departement", "parent_siren"}
        | {"arrondissement", "nature_collectivite"} & data.model_fields_set
    )
    # The envelope's codes are kept when the source (SIRENE, a seed) does not give them.
    update = OrganisationUpdate.model_validate(fields)
    _, changed = await update_organisation(session, data.siren, update)
    return Outcome.UPDATED if changed else Outcome.UNCHANGED


async def set_subscriptions(session: AsyncSession, siren: str, services: Iterable[Service]) -> bool:
    """Bring the organisation's own subscriptions to ``services``; whether they changed.

    Publishes ``SubscriptionsChanged`` for it and for every organisation it covers whose
    effective subscriptions moved (an EPCI's communes, their CCAS, its CIAS).
    """
    await get_organisation(session, siren)
    covered = await subscriptions.covered_by(session, siren)
    before = await subscriptions.effective_of(session, covered)

    if not await subscriptions.set_own(session, siren, services):
        return False

    after = await subscriptions.effective_of(session, covered)
    subscriptions.publish_changes(session, before, after)
    return True


async def _check_parent(
    session: AsyncSession, siren: str, kind: OrganisationKind, parent_siren: str | None
) -> None:
    if parent_siren is None:
        return
    allowed = PARENT_KINDS.get(kind, ())
    if not allowed:
        raise OrganisationParentInvalid(
            f"An organisation of kind {kind.value} has no parent.", parent_siren=parent_siren
        )
    if parent_siren == siren:
        raise OrganisationParentInvalid("An organisation cannot be its own parent.")

    parent = await OrganisationRepository(session).get_by_siren(parent_siren)
    if parent is None:
        raise OrganisationParentInvalid(
            f"No organisation has the SIREN {parent_siren}; register the parent first.",
            parent_siren=parent_siren,
        )
    if parent.kind not in allowed:
        expected = " or ".join(kind.value for kind in allowed)
        raise OrganisationParentInvalid(
            f"The parent of a {kind.value} must be a {expected}, not a {parent.kind}.",
            parent_siren=parent_siren,
        )


async def _check_children_fit(
    session: AsyncSession, organisation: Organisation, kind: OrganisationKind
) -> None:
    for child in await OrganisationRepository(session).children(organisation.siren):
        if kind not in PARENT_KINDS.get(OrganisationKind(child.kind), ()):
            raise OrganisationParentInvalid(
                f"The {child.kind} {child.siren} has this organisation as parent, which "
                f"cannot be a {kind.value}; move it first.",
                child_siren=child.siren,
            )


# -- API clients ---------------------------------------------------------------------------


async def check_scopes(
    session: AsyncSession, siren: str, scopes: Iterable[str], *, operator: bool
) -> None:
    """Refuse scopes of services the organisation lacks, and platform scopes from non-operators.

    ``org:admin`` and service scopes may be granted by the organisation's own admin; the
    platform scopes (``identity:admin``, ``documents:read``) only by an operator.
    """
    wanted = set(scopes)
    if not operator:
        beyond = sorted(
            scope for scope in wanted if scope != ORG_ADMIN_SCOPE and scope_service(scope) is None
        )
        if beyond:
            raise NotGrantable(f"Only an operator may grant: {' '.join(beyond)}", scopes=beyond)

    services = await subscriptions.effective_services(session, siren)
    missing = sorted(
        {service.value for scope in wanted if (service := scope_service(scope)) is not None}
        - services
    )
    if missing:
        raise NotSubscribed(
            f"The organisation {siren} is not subscribed to: {' '.join(missing)}",
            siren=siren,
            services=missing,
        )


async def allowed_scopes(session: AsyncSession, client: ApiClient) -> tuple[str, ...]:
    """The client's scopes that its organisation's subscriptions allow today.

    A client keeps its registered scopes when a subscription ends; the token endpoint asks
    this so the ended service's scopes are not granted any more.
    """
    services = await subscriptions.effective_services(session, client.siren)
    return tuple(
        sorted(
            scope
            for scope in client.scopes
            if (service := scope_service(scope)) is None or service.value in services
        )
    )


def public_key_set(jwks: dict[str, Any] | None, pem: str | None) -> dict[str, Any]:
    """The client's public keys as a JWK set (each with a kid), from a JWK set or a PEM."""
    if (jwks is None) == (pem is None):
        raise ClientKeyInvalid("A private_key_jwt client needs jwks or public_key_pem, not both.")
    try:
        keys = [_import_pem(pem)] if pem is not None else _import_jwks(jwks or {})
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ClientKeyInvalid(f"The public key cannot be read: {exc}") from exc

    if not keys:
        raise ClientKeyInvalid("The key set holds no key.")
    if any(key.is_private for key in keys):
        raise ClientKeyInvalid("Send the public key only; the private key stays with the client.")
    if any(not isinstance(key, RSAKey | ECKey | OKPKey) for key in keys):
        raise ClientKeyInvalid("Only RSA, EC and OKP public keys can sign client assertions.")
    return {
        "keys": [{**key.as_dict(private=False), "kid": key.kid or key.thumbprint()} for key in keys]
    }


def _import_jwks(jwks: dict[str, Any]) -> list[Any]:
    return list(KeySet.import_key_set(jwks))  # type: ignore[arg-type]


def _import_pem(pem: str) -> RSAKey | ECKey | OKPKey:
    for key_type in (RSAKey, ECKey, OKPKey):
        try:
            return key_type.import_key(pem)
        except JoseError:
            continue
    raise ValueError("not an RSA, EC or Ed25519 public key in PEM")


async def register_api_client(
    session: AsyncSession,
    siren: str,
    data: ApiClientCreate,
    *,
    client_secret: str | None = None,
    operator: bool = True,
) -> tuple[ApiClient, str | None]:
    """A new client of the organisation and its secret (None for private_key_jwt).

    The secret is stored only as a hash: this is the one time it is known.
    """
    await get_organisation(session, siren)
    client_id = data.client_id or credentials.new_client_id()
    repository = ApiClientRepository(session)
    if await repository.get_by_client_id(client_id) is not None:
        raise ApiClientAlreadyRegistered(
            f"An API client named {client_id} already exists.", client_id=client_id
        )
    await check_scopes(session, siren, data.scopes, operator=operator)

    secret: str | None = None
    jwks: dict[str, Any] | None = None
    if data.auth_method == ClientAuthMethod.PRIVATE_KEY_JWT:
        jwks = public_key_set(data.jwks, data.public_key_pem)
    else:
        secret = client_secret or credentials.new_client_secret()
    now = utcnow()
    client = ApiClient(
        client_id=client_id,
        siren=siren,
        name=data.name,
        auth_method=data.auth_method.value,
        secret_hash=await credentials.hash_secret(secret) if secret else None,
        jwks=jwks,
        redirect_uris=[str(uri) for uri in data.redirect_uris],
        scopes=list(data.scopes),
        created_at=now,
        updated_at=now,
    )
    repository.add(client)

    event = ApiClientRegistered(client_id=client_id, siren=siren, scopes=tuple(data.scopes))
    publish(session, event, subject=client_id, tenant=siren)
    log.info("api_client.registered", tenant=siren, client_id=client_id, scopes=data.scopes)
    return client, secret


async def get_api_client(session: AsyncSession, siren: str, client_id: str) -> ApiClient:
    """The organisation's client; another organisation's client is not found."""
    client = await ApiClientRepository(session).get_by_client_id(client_id)
    if client is None or client.siren != siren:
        raise ApiClientNotFound(f"The organisation {siren} has no API client {client_id}.")
    return client


async def list_api_clients(session: AsyncSession, siren: str) -> list[ApiClient]:
    await get_organisation(session, siren)
    return await ApiClientRepository(session).of_organisation(siren)


async def update_api_client(
    session: AsyncSession,
    siren: str,
    client_id: str,
    data: ApiClientUpdate,
    *,
    operator: bool,
) -> ApiClient:
    client = await get_api_client(session, siren, client_id)
    if client.is_revoked:
        raise ClientRevoked(f"The API client {client_id} is revoked.")

    sent = data.model_fields_set
    if data.scopes is not None and sorted(data.scopes) != sorted(client.scopes):
        await check_scopes(session, siren, data.scopes, operator=operator)
        client.scopes = list(data.scopes)
    if "name" in sent:
        client.name = data.name
    if data.redirect_uris is not None:
        client.redirect_uris = [str(uri) for uri in data.redirect_uris]
    if data.jwks is not None or data.public_key_pem is not None:
        if client.auth_method != ClientAuthMethod.PRIVATE_KEY_JWT:
            raise ClientKeyInvalid("Only a private_key_jwt client has public keys.")
        client.jwks = public_key_set(data.jwks, data.public_key_pem)

    client.updated_at = utcnow()
    ApiClientRepository(session).add(client)
    log.info("api_client.updated", tenant=siren, client_id=client_id, fields=sorted(sent))
    return client


async def rotate_client_secret(
    session: AsyncSession, siren: str, client_id: str
) -> tuple[ApiClient, str]:
    """A new secret for the client; the old one stops working at once."""
    client = await get_api_client(session, siren, client_id)
    if client.is_revoked:
        raise ClientRevoked(f"The API client {client_id} is revoked.")
    if client.auth_method != ClientAuthMethod.CLIENT_SECRET:
        raise ClientKeyInvalid(
            f"The API client {client_id} authenticates with its key, it has no secret."
        )

    secret = credentials.new_client_secret()
    now = utcnow()
    client.secret_hash = await credentials.hash_secret(secret)
    client.secret_rotated_at = now
    client.updated_at = now
    ApiClientRepository(session).add(client)
    log.info("api_client.secret_rotated", tenant=siren, client_id=client_id)
    return client, secret


async def revoke_api_client(session: AsyncSession, siren: str, client_id: str) -> ApiClient:
    """Revoke the client (a second call changes nothing); it gets no token any more."""
    client = await get_api_client(session, siren, client_id)
    if client.is_revoked:
        return client

    client.revoked_at = utcnow()
    client.updated_at = client.revoked_at
    ApiClientRepository(session).add(client)
    publish(
        session, ApiClientRevoked(client_id=client_id, siren=siren), subject=client_id, tenant=siren
    )
    log.info("api_client.revoked", tenant=siren, client_id=client_id)
    return client
