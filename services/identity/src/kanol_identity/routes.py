"""identity's admin API: organisations, subscriptions, agents and API clients.

Operators (scope ``identity:admin``) administer every organisation; an organisation's
admin (scope ``org:admin``) reads its own organisation and administers its own agents and
API clients. Another organisation, its agents and its clients answer 404 to it, and
nothing changes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from kanol_identity import agents, service
from kanol_identity.dependencies import AdminDep, SessionDep, commit
from kanol_identity.models import (
    DEPARTEMENT_PATTERN,
    AgentCreate,
    AgentPublic,
    AgentUpdate,
    ApiClientCreate,
    ApiClientCreated,
    ApiClientPublic,
    ApiClientUpdate,
    OrganisationCreate,
    OrganisationKind,
    OrganisationPublic,
    OrganisationUpdate,
    SubscriptionsPublic,
    SubscriptionsPut,
    TotpCode,
    TotpEnrolment,
)

router = APIRouter(prefix="/v1/organisations", tags=["organisations"])

SirenPath = Annotated[str, "the organisation's SIREN"]


class OrganisationPage(BaseModel):
    items: list[OrganisationPublic]
    next_after: str | None = None


# -- organisations -------------------------------------------------------------------------


@router.post("", status_code=201, summary="Register an organisation (operators)")
async def register_organisation(
    data: OrganisationCreate, admin: AdminDep, session: SessionDep, response: Response
) -> OrganisationPublic:
    admin.check_operator("register organisations")
    organisation = await service.register_organisation(session, data)
    public = await service.organisation_public(session, organisation)
    await commit(session)

    response.headers["Location"] = f"/v1/organisations/{organisation.siren}"
    return public


@router.get("", summary="Organisations in SIREN order (an organisation's admin: its own)")
async def list_organisations(
    admin: AdminDep,
    session: SessionDep,
    kind: OrganisationKind | None = None,
    parent_siren: Annotated[str | None, Query(pattern=r"^[0-9]{9}$")] = None,
    departement: Annotated[str | None, Query(pattern=DEPARTEMENT_PATTERN)] = None,
    after: Annotated[str | None, Query(description="The last SIREN of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> OrganisationPage:
    only = None if admin.operator else admin.caller.siren
    organisations = await service.list_organisations(
        session,
        after=after,
        limit=limit,
        kind=kind,
        parent_siren=parent_siren,
        departement=departement,
        only=only,
    )
    items = await service.organisations_public(session, organisations)
    next_after = items[-1].siren if len(items) == limit else None
    return OrganisationPage(items=items, next_after=next_after)


@router.get("/{siren}", summary="An organisation by its SIREN, with its subscriptions")
async def get_organisation(
    siren: SirenPath, admin: AdminDep, session: SessionDep
) -> OrganisationPublic:
    admin.check_organisation(siren)
    organisation = await service.get_organisation(session, siren)
    return await service.organisation_public(session, organisation)


@router.patch("/{siren}", summary="Change an organisation's name, kind, département or parent")
async def update_organisation(
    siren: SirenPath, data: OrganisationUpdate, admin: AdminDep, session: SessionDep
) -> OrganisationPublic:
    admin.check_organisation(siren)
    admin.check_operator("change organisations")
    organisation, _ = await service.update_organisation(session, siren, data)
    public = await service.organisation_public(session, organisation)
    await commit(session)
    return public


@router.get("/{siren}/subscriptions", summary="Own and effective subscriptions")
async def get_subscriptions(
    siren: SirenPath, admin: AdminDep, session: SessionDep
) -> SubscriptionsPublic:
    admin.check_organisation(siren)
    organisation = await service.get_organisation(session, siren)
    public = await service.organisation_public(session, organisation)
    return SubscriptionsPublic(
        siren=siren,
        subscriptions=public.subscriptions,
        effective_subscriptions=public.effective_subscriptions,
    )


@router.put("/{siren}/subscriptions", summary="Set the organisation's own subscriptions")
async def put_subscriptions(
    siren: SirenPath, data: SubscriptionsPut, admin: AdminDep, session: SessionDep
) -> SubscriptionsPublic:
    admin.check_organisation(siren)
    admin.check_operator("change subscriptions")
    await service.set_subscriptions(session, siren, data.services)
    organisation = await service.get_organisation(session, siren)
    public = await service.organisation_public(session, organisation)
    await commit(session)
    return SubscriptionsPublic(
        siren=siren,
        subscriptions=public.subscriptions,
        effective_subscriptions=public.effective_subscriptions,
    )


# -- agents --------------------------------------------------------------------------------


@router.post("/{siren}/agents", status_code=201, summary="Provision an agent")
async def provision_agent(
    siren: SirenPath, data: AgentCreate, admin: AdminDep, session: SessionDep, response: Response
) -> AgentPublic:
    admin.check_organisation(siren)
    agent = await agents.provision_agent(session, siren, data)
    await commit(session)

    response.headers["Location"] = f"/v1/organisations/{siren}/agents/{agent.id}"
    return agent.public()


@router.get("/{siren}/agents", summary="The organisation's agents")
async def list_agents(siren: SirenPath, admin: AdminDep, session: SessionDep) -> list[AgentPublic]:
    admin.check_organisation(siren)
    return [agent.public() for agent in await agents.list_agents(session, siren)]


@router.get("/{siren}/agents/{agent_id}", summary="An agent")
async def get_agent(
    siren: SirenPath, agent_id: str, admin: AdminDep, session: SessionDep
) -> AgentPublic:
    admin.check_organisation(siren)
    return (await agents.get_agent(session, siren, agent_id)).public()


@router.patch("/{siren}/agents/{agent_id}", summary="Change an agent's name, password or roles")
async def update_agent(
    siren: SirenPath, agent_id: str, data: AgentUpdate, admin: AdminDep, session: SessionDep
) -> AgentPublic:
    admin.check_organisation(siren)
    agent = await agents.update_agent(session, siren, agent_id, data)
    await commit(session)
    return agent.public()


@router.post(
    "/{siren}/agents/{agent_id}/deactivate",
    summary="Deactivate an agent: it can no longer sign in and its sessions end",
)
async def deactivate_agent(
    siren: SirenPath, agent_id: str, admin: AdminDep, session: SessionDep
) -> AgentPublic:
    admin.check_organisation(siren)
    agent = await agents.deactivate_agent(session, siren, agent_id)
    await commit(session)
    return agent.public()


@router.post(
    "/{siren}/agents/{agent_id}/reactivate",
    summary="Reactivate an agent: it signs in afresh; its old sessions stay ended",
)
async def reactivate_agent(
    siren: SirenPath, agent_id: str, admin: AdminDep, session: SessionDep
) -> AgentPublic:
    admin.check_organisation(siren)
    agent = await agents.reactivate_agent(session, siren, agent_id)
    await commit(session)
    return agent.public()


@router.post(
    "/{siren}/agents/{agent_id}/totp",
    summary="Enrol a TOTP second factor; the secret is shown only here",
)
async def enrol_totp(
    siren: SirenPath, agent_id: str, admin: AdminDep, session: SessionDep
) -> TotpEnrolment:
    admin.check_organisation(siren)
    enrolment = await agents.enrol_totp(session, siren, agent_id)
    await commit(session)
    return enrolment


@router.post("/{siren}/agents/{agent_id}/totp/confirm", summary="Confirm with a first code")
async def confirm_totp(
    siren: SirenPath, agent_id: str, data: TotpCode, admin: AdminDep, session: SessionDep
) -> AgentPublic:
    admin.check_organisation(siren)
    agent = await agents.confirm_totp(session, siren, agent_id, data.code)
    await commit(session)
    return agent.public()


@router.delete("/{siren}/agents/{agent_id}/totp", summary="Remove the second factor")
async def disable_totp(
    siren: SirenPath, agent_id: str, admin: AdminDep, session: SessionDep
) -> AgentPublic:
    admin.check_organisation(siren)
    agent = await agents.disable_totp(session, siren, agent_id)
    await commit(session)
    return agent.public()


# -- API clients ---------------------------------------------------------------------------


@router.post(
    "/{siren}/api-clients",
    status_code=201,
    summary="Register an API client of the organisation; its secret is shown only here",
)
async def register_api_client(
    siren: SirenPath, data: ApiClientCreate, admin: AdminDep, session: SessionDep
) -> ApiClientCreated:
    admin.check_organisation(siren)
    client, secret = await service.register_api_client(
        session, siren, data, operator=admin.operator
    )
    await commit(session)

    return ApiClientCreated(**client.public().model_dump(), client_secret=secret)


@router.get("/{siren}/api-clients", summary="The organisation's API clients")
async def list_api_clients(
    siren: SirenPath, admin: AdminDep, session: SessionDep
) -> list[ApiClientPublic]:
    admin.check_organisation(siren)
    return [client.public() for client in await service.list_api_clients(session, siren)]


@router.get("/{siren}/api-clients/{client_id}", summary="An API client")
async def get_api_client(
    siren: SirenPath, client_id: str, admin: AdminDep, session: SessionDep
) -> ApiClientPublic:
    admin.check_organisation(siren)
    return (await service.get_api_client(session, siren, client_id)).public()


@router.patch(
    "/{siren}/api-clients/{client_id}",
    summary="Change an API client's name, scopes, redirect URIs or public keys",
)
async def update_api_client(
    siren: SirenPath, client_id: str, data: ApiClientUpdate, admin: AdminDep, session: SessionDep
) -> ApiClientPublic:
    admin.check_organisation(siren)
    client = await service.update_api_client(
        session, siren, client_id, data, operator=admin.operator
    )
    await commit(session)
    return client.public()


@router.post(
    "/{siren}/api-clients/{client_id}/secret",
    summary="Give the client a new secret, shown only here; the old one stops working",
)
async def rotate_client_secret(
    siren: SirenPath, client_id: str, admin: AdminDep, session: SessionDep
) -> ApiClientCreated:
    admin.check_organisation(siren)
    client, secret = await service.rotate_client_secret(session, siren, client_id)
    await commit(session)
    return ApiClientCreated(**client.public().model_dump(), client_secret=secret)


@router.post(
    "/{siren}/api-clients/{client_id}/revoke",
    summary="Revoke an API client: identity issues it no token any more",
)
async def revoke_api_client(
    siren: SirenPath, client_id: str, admin: AdminDep, session: SessionDep
) -> ApiClientPublic:
    admin.check_organisation(siren)
    client = await service.revoke_api_client(session, siren, client_id)
    await commit(session)
    return client.public()
