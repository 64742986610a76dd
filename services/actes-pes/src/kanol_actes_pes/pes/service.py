"""What happens to a PES flow: its checks, its submission, each move, the events they cause.

Functions here take the caller's open session and never commit: the request or the
background task that called them commits, so a state change and its event (outbox row)
land together or not at all.

Lifecycle: ``submitted`` -> ``transmitting`` (claimed, idempotency key set) ->
``transmitted`` (Hélios took it) -> ``acknowledged`` (PES_ACQUIT, every EtatAck 1) |
``refused`` (an EtatAck 0); ``transmitting`` -> ``submitted`` (Hélios unreachable: retried
later) | ``transmission_failed`` (Hélios's gateway refused the file itself).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes.pes import pes_xml, repository
from kanol_actes_pes.pes.errors import PesDuplicate, PesOtherOrganisation, PesUnsignedRefused
from kanol_actes_pes.pes.models import (
    PesAckErrorPublic,
    PesDocument,
    PesDocumentPublic,
    PesDocumentRole,
    PesFlow,
    PesFlowPublic,
    PesFlowState,
    PesRetour,
    PesRetourPublic,
    PesSignaturePublic,
    PesStateChange,
)
from kanol_actes_pes.pes.signature import SignatureCheck, TrustAnchors, verify_signatures
from kanol_actes_pes.settings import ActesPesSettings
from kanol_common import outbox
from kanol_common.auth import Caller
from kanol_common.db import as_utc, as_utc_or_none
from kanol_common.events.base import DocumentRef
from kanol_common.events.pes import (
    PesAckError,
    PesFlowAcknowledged,
    PesFlowRefused,
    PesFlowSubmitted,
    PesFlowTransmitted,
    PesRetourReceived,
)
from kanol_common.holds import hold
from kanol_common.logging import get_logger
from kanol_common.storage import LocalObjectStore
from kanol_common.tracing import extract_context, get_tracer, inject_headers

log = get_logger(__name__)
_tracer = get_tracer(__name__)

MEDIA_TYPE_XML = "application/xml"

ALLOWED_TRANSITIONS: dict[PesFlowState | None, frozenset[PesFlowState]] = {
    None: frozenset({PesFlowState.SUBMITTED}),
    PesFlowState.SUBMITTED: frozenset({PesFlowState.TRANSMITTING}),
    PesFlowState.TRANSMITTING: frozenset(
        {PesFlowState.TRANSMITTED, PesFlowState.SUBMITTED, PesFlowState.TRANSMISSION_FAILED}
    ),
    PesFlowState.TRANSMITTED: frozenset({PesFlowState.ACKNOWLEDGED, PesFlowState.REFUSED}),
}


class IllegalTransition(Exception):
    """A move the lifecycle forbids: a bug, never a caller's mistake."""


class StaleFlow(Exception):
    """The flow was moved by someone else since it was read; the caller's move is void."""


def now_utc() -> datetime:
    return datetime.now(UTC)


# -- Checks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedFlow:
    """A PES_Aller that passed every check, with what was read of it."""

    content: bytes
    sha256: str
    header: pes_xml.PesHeader
    signatures: tuple[SignatureCheck, ...]
    filename: str

    @property
    def signed(self) -> bool:
        return bool(self.signatures)

    @property
    def signer_trusted(self) -> bool:
        return self.signed and all(check.trusted_chain for check in self.signatures)


def check_flow(
    content: bytes,
    caller_siren: str,
    anchors: TrustAnchors,
    *,
    accept_unsigned: bool,
    filename: str | None = None,
    now: datetime | None = None,
) -> CheckedFlow:
    """Every check of a posted flow, CPU only (run it in a worker thread).

    Order: safe parsing, the schema, the organisation, then the signatures, so that the
    cheapest refusal comes first and a signature is only checked on a valid flow.
    """
    tree, header = pes_xml.read_pes_aller(content)
    if header.siren != caller_siren:
        raise PesOtherOrganisation(
            f"IdColl {header.id_coll} is an establishment of the SIREN {header.siren}, not of"
            f" the organisation of this token ({caller_siren})"
        )
    checks = tuple(verify_signatures(tree, anchors, now))
    if not checks and not accept_unsigned:
        raise PesUnsignedRefused("The flow carries no signature and this platform requires one")
    return CheckedFlow(
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        header=header,
        signatures=checks,
        filename=_filename(filename, header.nom_fic),
    )


def _filename(given: str | None, nom_fic: str) -> str:
    name = given or f"{nom_fic}.xml"
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", name.rsplit("/", 1)[-1])[:200]
    return name if name.lower().endswith(".xml") else f"{name}.xml"


# -- Submission ----------------------------------------------------------------------------


async def submit_flow(
    session: AsyncSession,
    *,
    caller: Caller,
    checked: CheckedFlow,
    settings: ActesPesSettings,
    store: LocalObjectStore,
) -> tuple[PesFlow, PesDocument]:
    """Record a checked flow as submitted, with its document and its event.

    A duplicate (same NomFic for the same IdColl, or the same bytes) is refused with 409;
    the unique constraints decide when two such posts race. The bytes go to the object
    store last, once the rows are flushed, so a refused flow stores nothing.
    """
    header = checked.header
    duplicate = await repository.find_duplicate(
        session, header.id_coll, header.nom_fic, checked.sha256
    )
    if duplicate is not None:
        raise _duplicate(checked, duplicate.id)

    now = now_utc()
    flow = PesFlow(
        siren=header.siren,
        id_coll=header.id_coll,
        nom_fic=header.nom_fic,
        typ_fic=header.typ_fic,
        cod_col=header.cod_col,
        cod_bud=header.cod_bud,
        id_post=header.id_post,
        libelle_col_bud=header.libelle_col_bud,
        dte_str=header.dte_str,
        sha256=checked.sha256,
        size=len(checked.content),
        signed=checked.signed,
        signer_trusted=checked.signer_trusted,
        signatures=[_signature_json(check) for check in checked.signatures],
        state=PesFlowState.SUBMITTED.value,
        traceparent=inject_headers().get("traceparent"),
        created_at=now,
        updated_at=now,
    )
    document = PesDocument(
        flow_id=flow.id,
        role=PesDocumentRole.PES_ALLER.value,
        filename=checked.filename,
        media_type=MEDIA_TYPE_XML,
        sha256=checked.sha256,
        size=len(checked.content),
        created_at=now,
    )
    session.add(flow)
    try:
        # The flow first: without relationships, the unit of work does not order the
        # inserts by foreign key, and its document and history refer to it.
        await session.flush()
    except IntegrityError as exc:
        raise _duplicate(checked, None) from exc
    session.add_all(
        [document, _state_change(flow.id, None, PesFlowState.SUBMITTED, _why(caller), now)]
    )
    outbox.publish(
        session,
        PesFlowSubmitted(
            flow_id=str(flow.id),
            siren=flow.siren,
            id_coll=flow.id_coll,
            nom_fic=flow.nom_fic,
            cod_col=flow.cod_col,
            cod_bud=flow.cod_bud,
            id_post=flow.id_post,
            signed=flow.signed,
            submitted_at=now,
            documents=(document_ref(settings, document),),
        ),
        subject=str(flow.id),
        tenant=flow.siren,
    )
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _duplicate(checked, None) from exc

    await hold(session, checked.sha256)
    stored = await store.put(checked.content)
    if stored.sha256 != checked.sha256:
        raise RuntimeError("the stored flow differs from the upload it was read from")
    log.info(
        "pes.flow_submitted",
        flow_id=str(flow.id),
        tenant=flow.siren,
        nom_fic=flow.nom_fic,
        signed=flow.signed,
    )
    return flow, document


def _why(caller: Caller) -> str:
    return f"posted by {caller.client_id}"


def _duplicate(checked: CheckedFlow, existing: uuid.UUID | None) -> PesDuplicate:
    header = checked.header
    extensions: dict[str, Any] = {} if existing is None else {"existing_flow_id": str(existing)}
    return PesDuplicate(
        f"A flow named {header.nom_fic} for IdColl {header.id_coll}, or with the same content"
        f" (SHA-256 {checked.sha256}), was already posted",
        **extensions,
    )


def _signature_json(check: SignatureCheck) -> dict[str, Any]:
    return {
        "signature_id": check.signature_id,
        "signed_ids": list(check.signed_ids),
        "signer_subject": check.signer_subject,
        "signer_serial": check.signer_serial,
        "signer_sha256": check.signer_sha256,
        "signing_time": check.signing_time.isoformat(),
        "trusted_chain": check.trusted_chain,
        "revocation_checked": check.revocation_checked,
    }


# -- Lifecycle -----------------------------------------------------------------------------


@contextmanager
def in_trace_of(flow: PesFlow, name: str) -> Iterator[None]:
    """Work on a flow inside the trace of the request that posted it."""
    parent = extract_context({"traceparent": flow.traceparent}) if flow.traceparent else None
    attributes = {"kanol.pes_flow_id": str(flow.id), "kanol.tenant": flow.siren}
    with _tracer.start_as_current_span(name, context=parent, attributes=attributes):
        yield


def _state_change(
    flow_id: uuid.UUID,
    current: PesFlowState | None,
    target: PesFlowState,
    reason: str | None,
    now: datetime,
) -> PesStateChange:
    return PesStateChange(
        flow_id=flow_id,
        from_state=None if current is None else current.value,
        to_state=target.value,
        reason=reason,
        changed_at=now,
    )


async def change_state(
    session: AsyncSession,
    flow: PesFlow,
    target: PesFlowState,
    *,
    reason: str | None = None,
    **values: Any,
) -> None:
    """Move ``flow`` to ``target`` if the lifecycle allows it and nobody moved it first."""
    current = PesFlowState(flow.state)
    if target not in ALLOWED_TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"flow {flow.id}: {current.value} -> {target.value}")

    now = now_utc()
    values["updated_at"] = now
    values["late_reported_at"] = None
    if not await repository.compare_and_set_state(session, flow.id, current, target, values):
        raise StaleFlow(f"flow {flow.id} is no longer {current.value}")
    session.add(_state_change(flow.id, current, target, reason, now))
    set_committed_value(flow, "state", target.value)
    for name, value in values.items():
        set_committed_value(flow, name, value)


def publish_transmitted(session: AsyncSession, flow: PesFlow) -> None:
    assert flow.transmitted_at is not None and flow.helios_id is not None
    outbox.publish(
        session,
        PesFlowTransmitted(
            flow_id=str(flow.id),
            siren=flow.siren,
            nom_fic=flow.nom_fic,
            helios_id=flow.helios_id,
            transmitted_at=as_utc(flow.transmitted_at),
        ),
        subject=str(flow.id),
        tenant=flow.siren,
    )


def _refs(settings: ActesPesSettings, documents: Sequence[PesDocument]) -> tuple[DocumentRef, ...]:
    order = (PesDocumentRole.PES_ALLER.value, PesDocumentRole.PES_ACQUIT.value)
    return tuple(
        document_ref(settings, document)
        for role in order
        for document in documents
        if document.role == role
    )


def publish_acknowledged(
    session: AsyncSession,
    flow: PesFlow,
    documents: Sequence[PesDocument],
    settings: ActesPesSettings,
) -> None:
    assert flow.acknowledged_at is not None and flow.date_ack is not None
    outbox.publish(
        session,
        PesFlowAcknowledged(
            flow_id=str(flow.id),
            siren=flow.siren,
            id_coll=flow.id_coll,
            nom_fic=flow.nom_fic,
            cod_col=flow.cod_col,
            cod_bud=flow.cod_bud,
            id_post=flow.id_post,
            date_ack=flow.date_ack,
            acknowledged_at=as_utc(flow.acknowledged_at),
            documents=_refs(settings, documents),
        ),
        subject=str(flow.id),
        tenant=flow.siren,
    )


def publish_refused(
    session: AsyncSession,
    flow: PesFlow,
    documents: Sequence[PesDocument],
    settings: ActesPesSettings,
) -> None:
    assert flow.refused_at is not None
    outbox.publish(
        session,
        PesFlowRefused(
            flow_id=str(flow.id),
            siren=flow.siren,
            id_coll=flow.id_coll,
            nom_fic=flow.nom_fic,
            errors=tuple(PesAckError(**error) for error in flow.acquit_errors),
            refused_at=as_utc(flow.refused_at),
            documents=_refs(settings, documents),
        ),
        subject=str(flow.id),
        tenant=flow.siren,
    )


def publish_retour(session: AsyncSession, retour: PesRetour, settings: ActesPesSettings) -> None:
    outbox.publish(
        session,
        PesRetourReceived(
            retour_id=str(retour.id),
            siren=retour.siren,
            id_coll=retour.id_coll,
            nom_fic=retour.nom_fic,
            received_at=as_utc(retour.received_at),
            documents=(
                DocumentRef(
                    role="pes_retour",
                    uri=retour_uri(settings, retour.id),
                    sha256=retour.sha256,
                    size=retour.size,
                    media_type=MEDIA_TYPE_XML,
                    filename=retour.filename,
                ),
            ),
        ),
        subject=str(retour.id),
        tenant=retour.siren,
    )


# -- What callers see ----------------------------------------------------------------------

ROLE_PATHS = {PesDocumentRole.PES_ALLER.value: "flow", PesDocumentRole.PES_ACQUIT.value: "acquit"}


def document_uri(settings: ActesPesSettings, flow_id: uuid.UUID, role: str) -> str:
    return f"{settings.public_url.rstrip('/')}/v1/pes/flows/{flow_id}/{ROLE_PATHS[role]}"


def retour_uri(settings: ActesPesSettings, retour_id: uuid.UUID) -> str:
    return f"{settings.public_url.rstrip('/')}/v1/pes/retours/{retour_id}/content"


def document_ref(settings: ActesPesSettings, document: PesDocument) -> DocumentRef:
    return DocumentRef(
        role=document.role,
        uri=document_uri(settings, document.flow_id, document.role),
        sha256=document.sha256,
        size=document.size,
        media_type=document.media_type,
        filename=document.filename,
    )


def flow_public(
    settings: ActesPesSettings, flow: PesFlow, documents: Sequence[PesDocument]
) -> PesFlowPublic:
    return PesFlowPublic(
        id=flow.id,
        siren=flow.siren,
        id_coll=flow.id_coll,
        nom_fic=flow.nom_fic,
        typ_fic=flow.typ_fic,
        cod_col=flow.cod_col,
        cod_bud=flow.cod_bud,
        id_post=flow.id_post,
        libelle_col_bud=flow.libelle_col_bud,
        dte_str=flow.dte_str,
        sha256=flow.sha256,
        size=flow.size,
        signed=flow.signed,
        signer_trusted=flow.signer_trusted,
        signatures=[PesSignaturePublic.model_validate(s) for s in flow.signatures],
        state=PesFlowState(flow.state),
        helios_id=flow.helios_id,
        last_error=flow.last_error,
        date_ack=flow.date_ack,
        acquit_errors=[PesAckErrorPublic.model_validate(e) for e in flow.acquit_errors],
        acquit_overdue=flow.state == PesFlowState.TRANSMITTED.value
        and as_utc(flow.updated_at)
        < now_utc() - timedelta(seconds=settings.pes_acquit_overdue_seconds),
        created_at=as_utc(flow.created_at),
        updated_at=as_utc(flow.updated_at),
        transmitted_at=as_utc_or_none(flow.transmitted_at),
        acknowledged_at=as_utc_or_none(flow.acknowledged_at),
        refused_at=as_utc_or_none(flow.refused_at),
        documents=[
            PesDocumentPublic(
                role=document.role,
                filename=document.filename,
                media_type=document.media_type,
                sha256=document.sha256,
                size=document.size,
                uri=document_uri(settings, flow.id, document.role),
            )
            for document in documents
        ],
    )


def retour_public(settings: ActesPesSettings, retour: PesRetour) -> PesRetourPublic:
    return PesRetourPublic(
        id=retour.id,
        siren=retour.siren,
        id_coll=retour.id_coll,
        nom_fic=retour.nom_fic,
        dte_str=retour.dte_str,
        filename=retour.filename,
        sha256=retour.sha256,
        size=retour.size,
        received_at=as_utc(retour.received_at),
        uri=retour_uri(settings, retour.id),
    )
