"""identity's admin API: organisations and their API clients (scope ``identity:admin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from kanol_common.auth import Caller, require_scopes
from kanol_identity import service
from kanol_identity.dependencies import SessionDep, commit
from kanol_identity.models import (
    ApiClientCreate,
    ApiClientCreated,
    OrganisationCreate,
    OrganisationPublic,
)

ADMIN_SCOPE = "identity:admin"

# TODO: an API client cannot yet be revoked or given a new secret through this API; an
# operator sets api_client.revoked_at in the database (or re-runs the seed command with a
# new secret), and tokens already issued stay valid until they expire (15 minutes).
router = APIRouter(prefix="/v1/organisations", tags=["organisations"])

AdminCaller = Annotated[Caller, Depends(require_scopes(ADMIN_SCOPE))]


@router.post("", status_code=201, summary="Register an organisation")
async def register_organisation(
    data: OrganisationCreate, _: AdminCaller, session: SessionDep, response: Response
) -> OrganisationPublic:
    organisation = await service.register_organisation(session, data)
    await commit(session)

    response.headers["Location"] = f"/v1/organisations/{organisation.siren}"
    return organisation.public()


@router.get("/{siren}", summary="An organisation by its SIREN")
async def get_organisation(siren: str, _: AdminCaller, session: SessionDep) -> OrganisationPublic:
    organisation = await service.get_organisation(session, siren)
    return organisation.public()


@router.post(
    "/{siren}/api-clients",
    status_code=201,
    summary="Register an API client of the organisation; its secret is shown only here",
)
async def register_api_client(
    siren: str, data: ApiClientCreate, _: AdminCaller, session: SessionDep
) -> ApiClientCreated:
    client, secret = await service.register_api_client(session, siren, data)
    await commit(session)

    return ApiClientCreated(**client.public().model_dump(), client_secret=secret)
