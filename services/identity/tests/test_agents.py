"""Agents: provisioned under their organisation with roles of its services, Argon2id
passwords, an optional TOTP second factor, and deactivation."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlmodel import select

from kanol_common.events.identity import AgentDeactivated, AgentProvisioned
from kanol_identity import credentials
from kanol_identity.models import Agent, scopes_for_roles
from kanol_identity.testing import Identity

from .directory import PROBLEMS, OrgAdmin, org_admin, outbox_events


def _agent(**changes: Any) -> dict[str, Any]:
    return {
        "login": f"Agent.{uuid.uuid4().hex[:8]}@Mairie-Demo.fr",
        "display_name": "Anne Le Goff",
        "password": "correct horse battery staple",
        "roles": ["actes:submitter", "archive:reader"],
        **changes,
    }


async def _provision(identity: Identity, admin: OrgAdmin, **changes: Any) -> dict[str, Any]:
    response = await identity.http.post(
        f"/v1/organisations/{admin.siren}/agents", json=_agent(**changes), headers=admin.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _row(identity: Identity, agent_id: str) -> Agent:
    async with identity.app.state.runtime.database.session() as session:
        return (await session.exec(select(Agent).where(Agent.id == agent_id))).one()


class TestProvisioning:
    async def test_an_org_admin_provisions_an_agent_of_its_organisation(
        self, identity: Identity
    ) -> None:
        admin = await org_admin(identity)

        body = await _provision(identity, admin)

        assert body["siren"] == admin.siren
        assert body["login"] == body["login"].lower()
        assert body["roles"] == ["actes:submitter", "archive:reader"]
        assert body["active"] is True
        assert body["totp_enabled"] is False
        assert "password_hash" not in body and "totp_secret" not in body
        row = await _row(identity, body["id"])
        assert row.password_hash.startswith("$argon2id$")
        assert await credentials.password_matches(row.password_hash, _agent()["password"])
        events = await outbox_events(identity, AgentProvisioned, body["id"])
        assert events == [
            AgentProvisioned(
                agent_id=body["id"], siren=admin.siren, roles=("actes:submitter", "archive:reader")
            )
        ]

    async def test_a_login_is_taken_once_whatever_its_case(self, identity: Identity) -> None:
        admin = await org_admin(identity)
        login = f"dupont.{uuid.uuid4().hex[:6]}@mairie.fr"
        await _provision(identity, admin, login=login)

        again = await identity.http.post(
            f"/v1/organisations/{admin.siren}/agents",
            json=_agent(login=login.upper()),
            headers=admin.headers,
        )

        assert again.status_code == 409
        assert again.json()["type"] == PROBLEMS + "agent-login-taken"

    async def test_a_role_of_a_service_not_subscribed_is_refused(self, identity: Identity) -> None:
        admin = await org_admin(identity)

        response = await identity.http.post(
            f"/v1/organisations/{admin.siren}/agents",
            json=_agent(roles=["actes:submitter", "ads:instructor"]),
            headers=admin.headers,
        )

        assert response.status_code == 422
        body = response.json()
        assert body["type"] == PROBLEMS + "not-subscribed"
        assert body["services"] == ["ads"]

    @pytest.mark.parametrize(
        ("field", "value"),
        [("login", "not-an-email"), ("password", "short"), ("roles", ["actes:everything"])],
    )
    async def test_bad_fields_are_422(self, identity: Identity, field: str, value: Any) -> None:
        admin = await org_admin(identity)

        response = await identity.http.post(
            f"/v1/organisations/{admin.siren}/agents",
            json=_agent(**{field: value}),
            headers=admin.headers,
        )

        assert response.status_code == 422, response.text

    async def test_roles_give_scopes_of_subscribed_services_only(self) -> None:
        roles = ["org:admin", "actes:submitter", "ads:instructor", "archive:archivist"]

        scopes = scopes_for_roles(roles, {"actes", "archive"})

        assert scopes == (
            "actes:read",
            "actes:write",
            "archive:archivist",
            "archive:read",
            "archive:write",
            "org:admin",
        )


class TestChanges:
    async def test_roles_name_and_password_change(self, identity: Identity) -> None:
        admin = await org_admin(identity)
        agent = await _provision(identity, admin)

        response = await identity.http.patch(
            f"/v1/organisations/{admin.siren}/agents/{agent['id']}",
            json={
                "roles": ["org:admin"],
                "display_name": "Anne Le Goff-Martin",
                "password": "another long passphrase",
            },
            headers=admin.headers,
        )

        assert response.status_code == 200, response.text
        assert response.json()["roles"] == ["org:admin"]
        assert response.json()["display_name"] == "Anne Le Goff-Martin"
        row = await _row(identity, agent["id"])
        assert await credentials.password_matches(row.password_hash, "another long passphrase")

    async def test_deactivation_is_published_once_and_freezes_the_agent(
        self, identity: Identity
    ) -> None:
        admin = await org_admin(identity)
        agent = await _provision(identity, admin)
        url = f"/v1/organisations/{admin.siren}/agents/{agent['id']}"

        first = await identity.http.post(f"{url}/deactivate", headers=admin.headers)
        second = await identity.http.post(f"{url}/deactivate", headers=admin.headers)
        changed = await identity.http.patch(url, json={"roles": []}, headers=admin.headers)

        assert first.status_code == second.status_code == 200
        assert first.json()["active"] is False
        assert first.json()["deactivated_at"] == second.json()["deactivated_at"]
        assert (await _row(identity, agent["id"])).active is False
        assert await outbox_events(identity, AgentDeactivated, agent["id"]) == [
            AgentDeactivated(agent_id=agent["id"], siren=admin.siren)
        ]
        assert changed.status_code == 409
        assert changed.json()["type"] == PROBLEMS + "agent-inactive"

    async def test_the_list_holds_the_organisation_s_agents(self, identity: Identity) -> None:
        admin = await org_admin(identity)
        first = await _provision(identity, admin)
        second = await _provision(identity, admin)

        response = await identity.http.get(
            f"/v1/organisations/{admin.siren}/agents", headers=admin.headers
        )

        assert response.status_code == 200
        assert {agent["id"] for agent in response.json()} == {first["id"], second["id"]}


class TestSecondFactor:
    async def test_enrol_then_confirm_with_a_code_of_the_app(self, identity: Identity) -> None:
        admin = await org_admin(identity)
        agent = await _provision(identity, admin)
        url = f"/v1/organisations/{admin.siren}/agents/{agent['id']}/totp"

        enrolled = await identity.http.post(url, headers=admin.headers)
        assert enrolled.status_code == 200, enrolled.text
        secret = enrolled.json()["secret"]
        assert enrolled.json()["provisioning_uri"].startswith("otpauth://totp/Kanol:")
        assert f"secret={secret}" in enrolled.json()["provisioning_uri"]

        wrong = await identity.http.post(
            f"{url}/confirm", json={"code": _other_code(secret)}, headers=admin.headers
        )
        confirmed = await identity.http.post(
            f"{url}/confirm", json={"code": credentials.totp_code(secret)}, headers=admin.headers
        )

        assert wrong.status_code == 422
        assert wrong.json()["type"] == PROBLEMS + "totp-code-invalid"
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["totp_enabled"] is True
        row = await _row(identity, agent["id"])
        assert row.totp_confirmed and row.totp_last_step is not None

    async def test_a_code_is_not_accepted_twice(self) -> None:
        secret = credentials.new_totp_secret()
        code = credentials.totp_code(secret)

        step = credentials.totp_verify(secret, code)

        assert step is not None
        assert credentials.totp_verify(secret, code, last_step=step) is None

    async def test_a_code_of_a_neighbouring_step_counts_and_a_farther_one_not(self) -> None:
        secret = credentials.new_totp_secret()
        now = 1_800_000_000.0

        previous = credentials.totp_code(secret, at=now - 30)
        older = credentials.totp_code(secret, at=now - 90)

        assert credentials.totp_matching_step(secret, previous, at=now) == int(now) // 30 - 1
        assert credentials.totp_matching_step(secret, older, at=now) is None

    async def test_disable_removes_the_factor(self, identity: Identity) -> None:
        admin = await org_admin(identity)
        agent = await _provision(identity, admin)
        url = f"/v1/organisations/{admin.siren}/agents/{agent['id']}/totp"
        secret = (await identity.http.post(url, headers=admin.headers)).json()["secret"]
        await identity.http.post(
            f"{url}/confirm", json={"code": credentials.totp_code(secret)}, headers=admin.headers
        )

        response = await identity.http.delete(url, headers=admin.headers)

        assert response.status_code == 200
        assert response.json()["totp_enabled"] is False
        assert (await _row(identity, agent["id"])).totp_secret is None

    async def test_confirm_without_enrolment_is_409(self, identity: Identity) -> None:
        admin = await org_admin(identity)
        agent = await _provision(identity, admin)

        response = await identity.http.post(
            f"/v1/organisations/{admin.siren}/agents/{agent['id']}/totp/confirm",
            json={"code": "123456"},
            headers=admin.headers,
        )

        assert response.status_code == 409
        assert response.json()["type"] == PROBLEMS + "totp-not-enrolled"


def _other_code(secret: str) -> str:
    """A six-digit code that is none of the window's valid ones."""
    now = time.time()
    valid = {credentials.totp_code(secret, at=now + delta) for delta in (-60, -30, 0, 30, 60)}
    return next(
        code
        for code in ("000000", "111111", "222222", "333333", "444444", "555555")
        if code not in valid
    )
