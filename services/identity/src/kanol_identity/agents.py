"""Agents: people's accounts under an organisation, their roles and their second factor.

An agent's login is its e-mail address, stored in lower case. Roles name a service
(``actes:submitter``) or the organisation (``org:admin``); a role of a service the
organisation is not subscribed to is refused. A deactivated agent keeps its row (its
actions stay attributable) but can no longer sign in, and the OAuth endpoints refuse its
refresh tokens and userinfo calls.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.events.identity import AgentDeactivated, AgentProvisioned, AgentReactivated
from kanol_common.logging import get_logger
from kanol_common.outbox import publish
from kanol_identity import credentials, subscriptions
from kanol_identity.errors import (
    AgentInactive,
    AgentLoginTaken,
    AgentNotFound,
    NotSubscribed,
    TotpCodeInvalid,
    TotpNotEnrolled,
)
from kanol_identity.models import (
    Agent,
    AgentCreate,
    AgentUpdate,
    Role,
    TotpEnrolment,
    utcnow,
)
from kanol_identity.repository import AgentRepository
from kanol_identity.service import get_organisation

log = get_logger(__name__)


async def check_roles(session: AsyncSession, siren: str, roles: list[Role]) -> None:
    services = await subscriptions.effective_services(session, siren)
    missing = sorted({role.service.value for role in roles if role.service is not None} - services)
    if missing:
        raise NotSubscribed(
            f"The organisation {siren} is not subscribed to: {' '.join(missing)}",
            siren=siren,
            services=missing,
        )


async def provision_agent(session: AsyncSession, siren: str, data: AgentCreate) -> Agent:
    organisation = await get_organisation(session, siren)
    login = data.login.lower()
    repository = AgentRepository(session)
    if await repository.get_by_login(login) is not None:
        raise AgentLoginTaken(f"An agent already signs in as {login}.", login=login)
    roles = sorted(set(data.roles))
    await check_roles(session, siren, roles)

    now = utcnow()
    assert organisation.id is not None
    agent = Agent(
        organisation_id=organisation.id,
        siren=siren,
        login=login,
        display_name=data.display_name,
        password_hash=await credentials.hash_password(data.password),
        roles=[role.value for role in roles],
        created_at=now,
        updated_at=now,
    )
    repository.add(agent)

    event = AgentProvisioned(agent_id=agent.id, siren=siren, roles=tuple(agent.roles))
    publish(session, event, subject=agent.id, tenant=siren)
    log.info("agent.provisioned", tenant=siren, agent_id=agent.id, roles=agent.roles)
    return agent


async def get_agent(session: AsyncSession, siren: str, agent_id: str) -> Agent:
    """The organisation's agent; another organisation's agent is not found."""
    agent = await AgentRepository(session).get(agent_id)
    if agent is None or agent.siren != siren:
        raise AgentNotFound(f"The organisation {siren} has no agent {agent_id}.")
    return agent


async def list_agents(session: AsyncSession, siren: str) -> list[Agent]:
    await get_organisation(session, siren)
    return await AgentRepository(session).of_organisation(siren)


async def update_agent(
    session: AsyncSession, siren: str, agent_id: str, data: AgentUpdate
) -> Agent:
    agent = await _active_agent(session, siren, agent_id)

    if data.roles is not None:
        roles = sorted(set(data.roles))
        await check_roles(session, siren, roles)
        agent.roles = [role.value for role in roles]
    if data.display_name is not None:
        agent.display_name = data.display_name
    if data.password is not None:
        agent.password_hash = await credentials.hash_password(data.password)

    agent.updated_at = utcnow()
    AgentRepository(session).add(agent)
    log.info(
        "agent.updated",
        tenant=siren,
        agent_id=agent_id,
        fields=sorted(data.model_dump(exclude_unset=True)),
    )
    return agent


async def deactivate_agent(session: AsyncSession, siren: str, agent_id: str) -> Agent:
    """Deactivate the agent (a second call changes nothing); its sessions end."""
    agent = await get_agent(session, siren, agent_id)
    if not agent.active:
        return agent

    agent.active = False
    agent.deactivated_at = utcnow()
    agent.updated_at = agent.deactivated_at
    AgentRepository(session).add(agent)
    publish(
        session, AgentDeactivated(agent_id=agent_id, siren=siren), subject=agent_id, tenant=siren
    )
    log.info("agent.deactivated", tenant=siren, agent_id=agent_id)
    return agent


async def reactivate_agent(session: AsyncSession, siren: str, agent_id: str) -> Agent:
    """Let a deactivated agent sign in again (a second call changes nothing).

    Its sessions and refresh tokens from before the deactivation stay void
    (:meth:`Agent.honours`): it signs in afresh.
    """
    agent = await get_agent(session, siren, agent_id)
    if agent.active:
        return agent

    agent.active = True
    agent.updated_at = utcnow()
    AgentRepository(session).add(agent)
    publish(
        session, AgentReactivated(agent_id=agent_id, siren=siren), subject=agent_id, tenant=siren
    )
    log.info("agent.reactivated", tenant=siren, agent_id=agent_id)
    return agent


async def enrol_totp(session: AsyncSession, siren: str, agent_id: str) -> TotpEnrolment:
    """Start (or restart) enrolling a second factor: a new secret, not yet confirmed.

    Enrolling replaces a factor in place at once, so an admin resetting a lost phone does
    not need the old code; until the new one is confirmed the agent signs in without one.
    """
    agent = await _active_agent(session, siren, agent_id)

    secret = credentials.new_totp_secret()
    agent.totp_secret = secret
    agent.totp_confirmed = False
    agent.totp_last_step = None
    agent.updated_at = utcnow()
    AgentRepository(session).add(agent)
    log.info("agent.totp_enrolment_started", tenant=siren, agent_id=agent_id)
    return TotpEnrolment(
        secret=secret, provisioning_uri=credentials.totp_provisioning_uri(secret, agent.login)
    )


async def confirm_totp(session: AsyncSession, siren: str, agent_id: str, code: str) -> Agent:
    """Turn the enrolled factor on once the agent shows a code its app computed."""
    agent = await _active_agent(session, siren, agent_id)
    if agent.totp_secret is None:
        raise TotpNotEnrolled(f"The agent {agent_id} has no second factor being enrolled.")

    step = credentials.totp_verify(agent.totp_secret, code, last_step=agent.totp_last_step)
    if step is None:
        log.info("agent.totp_confirmation_refused", tenant=siren, agent_id=agent_id)
        raise TotpCodeInvalid("The code does not match; check the device's clock and retry.")

    agent.totp_confirmed = True
    agent.totp_last_step = step
    agent.updated_at = utcnow()
    AgentRepository(session).add(agent)
    log.info("agent.totp_confirmed", tenant=siren, agent_id=agent_id)
    return agent


async def disable_totp(session: AsyncSession, siren: str, agent_id: str) -> Agent:
    agent = await get_agent(session, siren, agent_id)
    if agent.totp_secret is None:
        return agent

    agent.totp_secret = None
    agent.totp_confirmed = False
    agent.totp_last_step = None
    agent.updated_at = utcnow()
    AgentRepository(session).add(agent)
    log.info("agent.totp_disabled", tenant=siren, agent_id=agent_id)
    return agent


async def _active_agent(session: AsyncSession, siren: str, agent_id: str) -> Agent:
    agent = await get_agent(session, siren, agent_id)
    if not agent.active:
        raise AgentInactive(f"The agent {agent_id} is deactivated.")
    return agent
