"""Transfers checked after the answer: ``POST /v1/transfers`` with ``Prefer: respond-async``.

A package of several gigabytes takes minutes to hash and store; a proxy or the sender's
HTTP client may give up before the ATR comes. With ``Prefer: respond-async`` (RFC 7240) a
ZIP package is spooled to disk, recorded as a pending transfer and answered at once with
202 and the address of its status; a worker then checks and stores it exactly as a
synchronous transfer, and keeps its ATR (OK or KO) for the sender to fetch. The package
waits in the object store, not on the receiving replica's disk, so any replica may check
it, and the row and the package outlive a crash: a transfer a replica was checking when it
stopped is taken up again once its lease has passed. A multipart body, read by the request
itself, is always answered synchronously (the preference is not applied).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Final, Protocol

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_archive.models import CHECKING, DONE, RECEIVED, PendingTransfer
from kanol_archive.repository import PendingTransferRepository
from kanol_archive.retention import in_use
from kanol_common import holds
from kanol_common.auth import Caller, require_scopes
from kanol_common.db import Database, UtcDateTime
from kanol_common.errors import Conflict, NotFound
from kanol_common.holds import put_held
from kanol_common.logging import get_logger
from kanol_common.runtime import DatabaseSession
from kanol_common.storage import ObjectNotFound, ObjectStore
from kanol_common.wakeup import Wakeup

log = get_logger(__name__)

RESPOND_ASYNC: Final = "respond-async"
# A replica that claimed a transfer and went silent this long is taken to have stopped.
LEASE: Final = timedelta(minutes=30)
POLL_SECONDS: Final = 5.0
# Finished transfers past their keeping time are forgotten at most this often, this many
# per transaction.
FORGET_EVERY: Final = timedelta(hours=1)
FORGET_BATCH: Final = 500
PACKAGE_NAME: Final = "package.zip"


class PendingTransferPublic(SQLModel):
    id: uuid.UUID
    state: str = Field(description="received, checking, then done")
    received_at: UtcDateTime
    finished_at: UtcDateTime | None = None
    status: int | None = Field(
        default=None, description="Once done: 201 archived, 200 sent before, 422 refused"
    )
    archive_id: uuid.UUID | None = None
    reply_url: str | None = Field(default=None, description="The ATR, once done")


def public(pending: PendingTransfer) -> PendingTransferPublic:
    done = pending.state == DONE
    return PendingTransferPublic(
        id=pending.id,
        state=pending.state,
        received_at=pending.received_at,
        finished_at=pending.finished_at,
        status=pending.status,
        archive_id=pending.archive_id,
        reply_url=f"/v1/transfers/pending/{pending.id}/reply" if done else None,
    )


def prefers_async(request: Request) -> bool:
    """Whether the request's ``Prefer`` header asks for ``respond-async`` (RFC 7240)."""
    preferences = ",".join(request.headers.getlist("prefer"))
    return any(
        item.split(";", 1)[0].strip().lower() == RESPOND_ASYNC for item in preferences.split(",")
    )


async def record(
    session: AsyncSession, caller: Caller, package_sha256: str, now: datetime
) -> PendingTransfer:
    """The pending transfer's row (the caller commits it with the 202)."""
    pending = PendingTransfer(
        siren=caller.siren,
        client_id=caller.client_id,
        state=RECEIVED,
        received_at=now,
        package_sha256=package_sha256,
    )
    session.add(pending)
    await session.flush()
    log.info("transfer.pending", tenant=caller.siren, pending_id=str(pending.id))
    return pending


def accepted_response(pending: PendingTransfer) -> Response:
    location = f"/v1/transfers/pending/{pending.id}"
    body = public(pending).model_dump(mode="json", exclude_none=True)
    headers = {"Location": location, "Preference-Applied": RESPOND_ASYNC}
    return JSONResponse(body, status_code=202, headers=headers)


# -- the worker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """What a synchronous transfer would have answered."""

    status: int
    reply: bytes
    archive_id: uuid.UUID | None


class PackageCheck(Protocol):
    """Checks and deposits (or refuses) the spooled ZIP at ``path`` in ``session``."""

    async def __call__(self, session: AsyncSession, path: Path, caller: Caller) -> Checked: ...


@dataclass
class PendingTransfers:
    """Checks the pending transfers, oldest first; every replica may run one."""

    database: Database
    store: ObjectStore
    spool_dir: Path
    check: PackageCheck
    keep_finished: timedelta = timedelta(days=30)

    def __post_init__(self) -> None:
        self._wakeup = Wakeup()
        self._forgotten_at: datetime | None = None

    def wake(self) -> None:
        self._wakeup.ring()

    async def run(self) -> None:
        while True:
            try:
                while await self.run_once():
                    pass
                if self._forgotten_at is None or _now() - self._forgotten_at >= FORGET_EVERY:
                    await self.forget_finished()
                    self._forgotten_at = _now()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("transfer.pending_turn_failed")
            await self._wakeup.wait(POLL_SECONDS)

    async def run_once(self) -> bool:
        """Check the oldest transfer waiting (or left by a stopped replica); whether one was."""
        pending = await self._claim()
        if pending is None:
            return False
        try:
            await self._process(pending)
        except Exception as exc:
            # The claim stays: another turn takes the transfer up again once the lease has
            # passed; meanwhile the operator sees why in the row and the log.
            await self._note_error(pending.id, f"{type(exc).__name__}: {exc}")
            raise
        return True

    async def forget_finished(self) -> int:
        """Forget the transfers finished more than ``keep_finished`` ago, and remove their
        replies nothing else needs (an accepted transfer's ATR stays with its archive);
        how many were forgotten."""
        forgotten = 0
        while True:
            async with self.database.session() as session:
                repository = PendingTransferRepository(session)
                batch = await repository.finished_before(_now() - self.keep_finished, FORGET_BATCH)
                if not batch:
                    break
                await repository.forget([row.id for row in batch])
                await session.commit()
                replies = [row.reply_sha256 for row in batch if row.reply_sha256]
                await holds.remove_unused(session, self.store, replies, in_use)
                await session.commit()
            forgotten += len(batch)
        if forgotten:
            log.info("transfer.pending_forgotten", count=forgotten)
        return forgotten

    async def _fetch(self, sha256: str, path: Path) -> None:
        """The package back from the store into ``path``; nothing there if it is gone (the
        check then refuses it, asking the sender to send it again)."""
        try:
            async with await anyio.open_file(path, "wb") as file:
                async for chunk in self.store.open_chunks(sha256):
                    await file.write(chunk)
        except ObjectNotFound:
            log.error("transfer.pending_package_lost", package_sha256=sha256)
            await anyio.Path(path).unlink(missing_ok=True)

    async def _forget_package(self, session: AsyncSession, sha256: str) -> None:
        """Remove the package from the store unless something else needs the same bytes."""
        await holds.remove_unused(session, self.store, [sha256], in_use)
        await session.commit()

    async def _note_error(self, pending_id: uuid.UUID, error: str) -> None:
        with contextlib.suppress(Exception):
            async with self.database.session() as session:
                await PendingTransferRepository(session).note_error(pending_id, error)
                await session.commit()

    async def _claim(self) -> PendingTransfer | None:
        now = _now()
        async with self.database.session() as session:
            repository = PendingTransferRepository(session)
            candidate = await repository.claimable(lease_ended_before=now - LEASE)
            if candidate is None:
                return None
            claimed = await repository.claim(candidate, now)
            await session.commit()
        if not claimed:
            return None
        candidate.state, candidate.claimed_at = CHECKING, now
        return candidate

    async def _process(self, pending: PendingTransfer) -> None:
        caller = Caller(
            client_id=pending.client_id,
            siren=pending.siren,
            scopes=frozenset(),
            token_id=f"pending-{pending.id}",
        )
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        async with self.database.session() as session:
            with tempfile.TemporaryDirectory(dir=self.spool_dir, prefix="pending-") as folder:
                path = Path(folder) / PACKAGE_NAME
                await self._fetch(pending.package_sha256, path)
                checked = await self.check(session, path, caller)
            (stored,) = await put_held(session, self.store, checked.reply)
            await PendingTransferRepository(session).finish(
                pending.id,
                status=checked.status,
                reply_sha256=stored.sha256,
                archive_id=checked.archive_id,
                now=_now(),
            )
            await session.commit()
            await self._forget_package(session, pending.package_sha256)
        log.info(
            "transfer.pending_done",
            tenant=pending.siren,
            pending_id=str(pending.id),
            status=checked.status,
        )


def _now() -> datetime:
    return datetime.now(UTC)


# -- the status and the answer -------------------------------------------------------------


class PendingTransferNotFound(NotFound):
    type_slug = "pending-transfer-not-found"
    title = "No such pending transfer"


class PendingTransferNotDone(Conflict):
    type_slug = "pending-transfer-not-done"
    title = "The transfer is still being checked"


router = APIRouter(prefix="/v1/transfers/pending", tags=["transfers"])
Sender = Annotated[Caller, Depends(require_scopes("archive:write"))]


async def _owned(session: AsyncSession, caller: Caller, pending_id: uuid.UUID) -> PendingTransfer:
    pending = await PendingTransferRepository(session).get(pending_id)
    if pending is None or pending.siren != caller.siren:
        raise PendingTransferNotFound(f"No pending transfer {pending_id} for this organisation.")
    return pending


@router.get(
    "/{pending_id}",
    response_model=PendingTransferPublic,
    response_model_exclude_none=True,
    summary="Where a transfer sent with Prefer: respond-async stands",
)
async def get_pending(
    pending_id: uuid.UUID, caller: Sender, session: DatabaseSession
) -> PendingTransferPublic:
    return public(await _owned(session, caller, pending_id))


@router.get(
    "/{pending_id}/reply",
    summary="The ATR of a transfer sent with Prefer: respond-async, once checked",
    response_class=Response,
    responses={
        200: {"description": "The ATR, OK or KO", "content": {"application/xml": {}}},
        409: {"description": "Still being checked"},
    },
)
async def get_pending_reply(
    pending_id: uuid.UUID, caller: Sender, session: DatabaseSession, request: Request
) -> Response:
    pending = await _owned(session, caller, pending_id)
    if pending.state != DONE or pending.reply_sha256 is None:
        raise PendingTransferNotDone(
            f"The transfer {pending_id} is {pending.state}; ask again in a moment."
        )
    store: ObjectStore = request.app.state.object_store
    reply = await store.get(pending.reply_sha256)
    return Response(reply, media_type="application/xml")
