"""What identity's routes receive from FastAPI: a database session and the signing keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.errors import Conflict
from kanol_common.runtime import DatabaseSession
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


SessionDep = DatabaseSession
SigningKeysDep = Annotated[SigningKeys, Depends(get_signing_keys)]
