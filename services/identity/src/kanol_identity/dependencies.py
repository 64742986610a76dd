"""What identity's routes receive from FastAPI: a database session, the signing keys, and
the administrator calling the admin API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.auth import Caller, require_scopes
from kanol_common.errors import Conflict, Forbidden
from kanol_common.runtime import DatabaseSession
from kanol_identity.errors import OperatorOnly, OrganisationNotFound
from kanol_identity.models import OPERATOR_SCOPE, ORG_ADMIN_SCOPE
from kanol_identity.signing import SigningKeys


def get_signing_keys(request: Request) -> SigningKeys:
    keys: SigningKeys = request.app.state.signing_keys
    return keys


async def commit(session: AsyncSession) -> None:
    """Commit the request's work; a unique constraint lost to a concurrent request is a 409."""
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("The resource was created concurrently by another request.") from exc


@dataclass(frozen=True, slots=True)
class Admin:
    """Who calls the admin API: an operator of the syndicate, or one organisation's admin.

    An operator (scope ``identity:admin``) administers every organisation. An organisation's
    admin (scope ``org:admin``) administers its own agents and API clients; another
    organisation is, to it, not found.
    """

    caller: Caller
    operator: bool

    def check_organisation(self, siren: str) -> None:
        """404 for an organisation the caller does not administer, as if it did not exist."""
        if not self.operator and siren != self.caller.siren:
            raise OrganisationNotFound(f"No organisation has the SIREN {siren}.")

    def check_operator(self, action: str) -> None:
        if not self.operator:
            raise OperatorOnly(f"Only the platform's operators may {action}.")


async def get_admin(
    caller: Annotated[Caller, Depends(require_scopes())],
) -> Admin:
    if caller.has_scopes(OPERATOR_SCOPE):
        return Admin(caller=caller, operator=True)
    if caller.has_scopes(ORG_ADMIN_SCOPE):
        return Admin(caller=caller, operator=False)
    raise Forbidden(
        f"The admin API requires the scope {OPERATOR_SCOPE} or {ORG_ADMIN_SCOPE}.",
        missing_scopes=[OPERATOR_SCOPE],
        any_of_scopes=[OPERATOR_SCOPE, ORG_ADMIN_SCOPE],
    )


SessionDep = DatabaseSession
SigningKeysDep = Annotated[SigningKeys, Depends(get_signing_keys)]
AdminDep = Annotated[Admin, Depends(get_admin)]
