"""Retention: how long each kind of archive is kept, and its elimination by approval.

An appraisal rule per kind of document (an acte by nature, a PES flow, a PES
acknowledgement, an ARActe, a transfer by default) says how many years an archive is kept,
from which date (the decision or the deposit), and what happens then: Keep or Destroy. The
rules live in the ``retention_rule`` table (seeded with the defaults below), are changed
through the admin API, and every change is written in the logbook.

An archive's kind comes from its own columns (what was deposited, the acte's nature); the
kinds of its documents (ARActe, PES_ACQUIT) add their own rules: the archive becomes due
only when all of them have run out, and is destroyed only if all of them say Destroy.

When an archive is due, a sweep (a periodic task, or ``python -m kanol_archive
propose-eliminations``) raises one elimination proposal per organisation for its archivist.
Approved, the archives' objects leave the store (unless another archive still holds the
same content) while their metadata, fingerprints, manifest and ATR stay, with who approved
and when; refused, they are kept and the decision is recorded. Both go to the logbook.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy import JSON, Column, DateTime, Index, and_, or_
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_archive import logbook
from kanol_archive.logbook import Operation
from kanol_archive.models import DONE, Archive, ArchiveObject, PendingTransfer
from kanol_archive.seda.rules import (
    ACTE_NATURE_CODES,
    DESTROY,
    KEEP,
    PES_FLOW_KIND,
    TRANSFER_KIND,
    DepositRules,
    acte_kind,
)
from kanol_common import holds, outbox
from kanol_common.db import Database, UtcDateTime
from kanol_common.errors import Conflict, NotFound
from kanol_common.events.archive import ArchiveEliminated, EliminationProposed
from kanol_common.logging import get_logger
from kanol_common.storage import ObjectStore

log = get_logger(__name__)

START_DECISION: Final = "decision"
START_DEPOSIT: Final = "deposit"

# Kinds of documents inside an archive, by the object's role.
AR_ACTE_KIND: Final = "acte.ar_acte"
PES_ACQUIT_KIND: Final = "pes.acquit"
ROLE_KINDS: Final = {"ar_acte": AR_ACTE_KIND, "pes_acquit": PES_ACQUIT_KIND}


class RetentionState:
    PROPOSED: Final = "proposed"
    KEPT: Final = "kept"
    DESTROYED: Final = "destroyed"


class ProposalState:
    PROPOSED: Final = "proposed"
    APPROVED: Final = "approved"
    REFUSED: Final = "refused"


class RetentionRuleBase(SQLModel):
    appraisal_rule: str = Field(max_length=64, description="Rule identifier, as SEDA carries it")
    duration_years: int = Field(ge=0, le=1000)
    start_date: str = Field(default=START_DEPOSIT, max_length=16, description="decision or deposit")
    final_action: str = Field(max_length=16, description="Keep or Destroy")
    access_rule: str = Field(default="ACC-00001", max_length=64)
    access_years: int = Field(default=0, ge=0, le=1000)


class RetentionRule(RetentionRuleBase, table=True):
    __tablename__ = "retention_rule"

    kind: str = Field(primary_key=True, max_length=64)
    updated_at: datetime = Field(sa_type=DateTime(timezone=True))
    updated_by: str | None = Field(default=None, max_length=255)


class RetentionRulePublic(RetentionRuleBase):
    kind: str
    updated_at: UtcDateTime
    updated_by: str | None = None


class ArchiveRetention(SQLModel, table=True):
    """What became of an archive whose rules ran out: proposed, kept or destroyed."""

    __tablename__ = "archive_retention"
    __table_args__ = (Index("ix_archive_retention_siren_state", "siren", "state"),)

    archive_id: uuid.UUID = Field(primary_key=True, foreign_key="archive.id")
    siren: str = Field(max_length=9)
    state: str = Field(max_length=16)
    proposal_id: uuid.UUID = Field(foreign_key="elimination_proposal.id", index=True)
    due_on: date
    destroyed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Whether the destroyed archive's objects left the store, and which did (those another
    # archive still holds stay).
    purged: bool = False
    removed: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class EliminationProposalBase(SQLModel):
    siren: str = Field(max_length=9)
    state: str = Field(max_length=16, description="proposed, approved or refused")
    proposed_at: datetime = Field(sa_type=DateTime(timezone=True))
    decided_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    decided_by: str | None = Field(default=None, max_length=255)
    reason: str | None = Field(default=None, description="The archivist's comment")


class EliminationProposal(EliminationProposalBase, table=True):
    __tablename__ = "elimination_proposal"
    __table_args__ = (Index("ix_elimination_proposal_siren", "siren", "proposed_at"),)

    id: uuid.UUID = Field(primary_key=True)


class ProposedArchive(SQLModel):
    archive_id: uuid.UUID
    title: str
    kind: str
    due_on: date
    state: str
    destroyed_at: UtcDateTime | None = None


class EliminationProposalPublic(EliminationProposalBase):
    id: uuid.UUID
    proposed_at: UtcDateTime
    decided_at: UtcDateTime | None = None
    archives: list[ProposedArchive]


# The defaults, seeded by the migration; the same as the deposit's manifest rules.
DEFAULT_RULES: Final[tuple[tuple[str, RetentionRuleBase], ...]] = (
    ("acte.DE", RetentionRuleBase(appraisal_rule="APP-ACTES-DE", duration_years=10,
                                  start_date=START_DECISION, final_action=KEEP)),
    ("acte.AR", RetentionRuleBase(appraisal_rule="APP-ACTES-AR", duration_years=10,
                                  start_date=START_DECISION, final_action=KEEP)),
    ("acte.AI", RetentionRuleBase(appraisal_rule="APP-ACTES-AI", duration_years=10,
                                  start_date=START_DECISION, final_action=KEEP,
                                  access_rule="ACC-00003", access_years=50)),
    ("acte.CC", RetentionRuleBase(appraisal_rule="APP-ACTES-CC", duration_years=10,
                                  start_date=START_DECISION, final_action=DESTROY)),
    ("acte.BF", RetentionRuleBase(appraisal_rule="APP-ACTES-BF", duration_years=10,
                                  start_date=START_DECISION, final_action=KEEP)),
    ("acte.AU", RetentionRuleBase(appraisal_rule="APP-ACTES-AU", duration_years=10,
                                  start_date=START_DECISION, final_action=DESTROY)),
    (AR_ACTE_KIND, RetentionRuleBase(appraisal_rule="APP-ARACTE", duration_years=10,
                                     start_date=START_DEPOSIT, final_action=DESTROY)),
    (PES_FLOW_KIND, RetentionRuleBase(appraisal_rule="APP-PES", duration_years=10,
                                      start_date=START_DEPOSIT, final_action=DESTROY)),
    (PES_ACQUIT_KIND, RetentionRuleBase(appraisal_rule="APP-PES-ACQUIT", duration_years=10,
                                        start_date=START_DEPOSIT, final_action=DESTROY)),
    (TRANSFER_KIND, RetentionRuleBase(appraisal_rule="APP-TRANSFER", duration_years=10,
                                      start_date=START_DEPOSIT, final_action=KEEP)),
)  # fmt: skip


class RuleNotFound(NotFound):
    type_slug = "retention-rule-not-found"
    title = "Retention rule not found"


class ProposalNotFound(NotFound):
    type_slug = "elimination-proposal-not-found"
    title = "Elimination proposal not found"


class ProposalAlreadyDecided(Conflict):
    type_slug = "elimination-already-decided"
    title = "Elimination proposal already decided"


# -- rules ------------------------------------------------------------------------------


class RetentionRules:
    """The rule table as the deposit path's ``seda.rules.RuleSource``.

    ``rules_for`` answers from memory (it is called inside a deposit): ``load`` fills it at
    start, a rule change through this process's API updates it at once, and the periodic
    sweep reloads it, so another replica's change reaches this one within a sweep period.
    """

    def __init__(self) -> None:
        self._rules: dict[str, RetentionRuleBase] = dict(DEFAULT_RULES)

    async def load(self, session: AsyncSession) -> None:
        rows = (await session.exec(select(RetentionRule))).all()
        if rows:
            self._rules = {row.kind: RetentionRuleBase.model_validate(row) for row in rows}

    def remember(self, kind: str, rule: RetentionRuleBase) -> None:
        self._rules[kind] = rule

    def rules_for(self, kind: str) -> DepositRules:
        rule = self._rules.get(kind) or self._rules.get(TRANSFER_KIND) or DEFAULT_RULES[-1][1]
        return DepositRules(
            kind=kind,
            appraisal_rule=rule.appraisal_rule,
            appraisal_years=rule.duration_years,
            final_action=rule.final_action,
            access_rule=rule.access_rule,
            access_years=rule.access_years,
        )


async def list_rules(session: AsyncSession) -> list[RetentionRule]:
    result = await session.exec(select(RetentionRule).order_by(col(RetentionRule.kind)))
    return list(result.all())


async def change_rule(
    session: AsyncSession, kind: str, rule: RetentionRuleBase, *, actor: str
) -> RetentionRule:
    """Create or replace the rule of ``kind`` and log the change with before and after.

    The caller commits. A changed duration applies to every archive of that kind from the
    next sweep on, as the rule's identifier in the manifests refers to this referential.
    """
    existing = await session.get(RetentionRule, kind)
    before = None if existing is None else RetentionRuleBase.model_validate(existing).model_dump()
    row = existing or RetentionRule(kind=kind, updated_at=datetime.now(UTC), **rule.model_dump())
    for name, value in rule.model_dump().items():
        setattr(row, name, value)
    row.updated_at = datetime.now(UTC)
    row.updated_by = actor
    session.add(row)

    await logbook.append(
        session,
        operation=Operation.RULE_CHANGED,
        siren=None,
        actor=actor,
        details={"kind": kind, "before": before, "after": rule.model_dump()},
    )
    log.info("retention.rule_changed", kind=kind, actor=actor, **rule.model_dump())
    return row


# -- which archives are due --------------------------------------------------------------


def kind_of(archive: Archive) -> str:
    """The archive's own kind, from what was deposited."""
    if archive.source_kind == "pes_flow":
        return PES_FLOW_KIND
    if archive.source_kind == "transfer" or archive.nature is None:
        return TRANSFER_KIND
    return acte_kind(archive.nature)


def due_on(archive: Archive, rule: RetentionRuleBase) -> date:
    start = archive.deposited_at.date()
    if rule.start_date == START_DECISION and archive.date_decision is not None:
        start = archive.date_decision
    return _add_years(start, rule.duration_years)


@dataclass(frozen=True)
class Verdict:
    """An archive's rules taken together: when they all run out, and what they say then."""

    kind: str
    due_on: date
    final_action: str


def verdict(
    archive: Archive, roles: Iterable[str], rules: dict[str, RetentionRuleBase]
) -> Verdict | None:
    """``None`` when the archive's own kind has no rule (it is then kept)."""
    kind = kind_of(archive)
    own = rules.get(kind) or rules.get(TRANSFER_KIND)
    if own is None:
        return None
    applying = [own] + [rules[ROLE_KINDS[r]] for r in set(roles) if ROLE_KINDS.get(r) in rules]
    final_action = DESTROY if all(r.final_action == DESTROY for r in applying) else KEEP
    return Verdict(kind, max(due_on(archive, r) for r in applying), final_action)


async def propose_eliminations(
    session: AsyncSession, *, today: date | None = None, limit: int = 10_000
) -> list[EliminationProposal]:
    """Raise one proposal per organisation for its archives due for destruction.

    Archives already proposed, kept by a refusal or destroyed are left out. The caller
    commits. At most ``limit`` archives per call; the next call takes the rest.
    """
    today = today or datetime.now(UTC).date()
    rules = {row.kind: RetentionRuleBase.model_validate(row) for row in await list_rules(session)}
    destroyable = [kind for kind, rule in rules.items() if rule.final_action == DESTROY]
    if not destroyable:
        return []

    candidates = await _unsettled_archives(session, destroyable, limit)
    roles = await _roles_of(session, [archive.id for archive in candidates])
    due: dict[str, list[tuple[Archive, Verdict]]] = {}
    for archive in candidates:
        found = verdict(archive, roles.get(archive.id, ()), rules)
        if found is None or found.final_action != DESTROY or found.due_on > today:
            continue
        due.setdefault(archive.siren, []).append((archive, found))

    return [await _propose(session, siren, items) for siren, items in sorted(due.items())]


async def _unsettled_archives(
    session: AsyncSession, destroyable_kinds: Sequence[str], limit: int
) -> list[Archive]:
    """Archives of a destroyable kind without a retention outcome yet, oldest first."""
    conditions = [kind_condition(kind) for kind in destroyable_kinds]
    settled = select(ArchiveRetention.archive_id)
    query = (
        select(Archive)
        .where(or_(*[c for c in conditions if c is not None]))
        .where(col(Archive.id).not_in(settled))
        .order_by(col(Archive.deposited_at))
        .limit(limit)
    )
    return list((await session.exec(query)).all())


def kind_condition(kind: str) -> Any:
    """A condition on ``Archive`` for the archives of ``kind``; ``None`` for a document
    kind (ARActe, PES_ACQUIT) or an unknown one."""
    if kind == PES_FLOW_KIND:
        return col(Archive.source_kind) == "pes_flow"
    if kind == TRANSFER_KIND:
        return or_(col(Archive.source_kind) == "transfer", col(Archive.nature).is_(None))
    for nature, code in ACTE_NATURE_CODES.items():
        if kind == f"acte.{code}":
            return and_(
                or_(col(Archive.source_kind).is_(None), col(Archive.source_kind) == "acte"),
                col(Archive.nature) == nature,
            )
    return None


async def _roles_of(
    session: AsyncSession, archive_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    roles: dict[uuid.UUID, list[str]] = {}
    for start in range(0, len(archive_ids), 500):
        batch = archive_ids[start : start + 500]
        result = await session.exec(
            select(ArchiveObject.archive_id, ArchiveObject.role).where(
                col(ArchiveObject.archive_id).in_(batch)
            )
        )
        for archive_id, role in result.all():
            roles.setdefault(archive_id, []).append(role)
    return roles


async def _propose(
    session: AsyncSession, siren: str, items: Sequence[tuple[Archive, Verdict]]
) -> EliminationProposal:
    proposal = EliminationProposal(
        id=uuid.uuid4(), siren=siren, state=ProposalState.PROPOSED, proposed_at=datetime.now(UTC)
    )
    session.add(proposal)
    await session.flush()
    session.add_all(
        ArchiveRetention(
            archive_id=archive.id,
            siren=siren,
            state=RetentionState.PROPOSED,
            proposal_id=proposal.id,
            due_on=found.due_on,
        )
        for archive, found in items
    )
    await logbook.append(
        session,
        operation=Operation.ELIMINATION_PROPOSED,
        siren=siren,
        actor="archive",
        details={
            "proposal_id": str(proposal.id),
            "archives": [str(archive.id) for archive, _ in items],
        },
    )
    outbox.publish(
        session,
        EliminationProposed(
            proposal_id=str(proposal.id),
            siren=siren,
            archive_ids=tuple(str(archive.id) for archive, _ in items),
            proposed_at=proposal.proposed_at,
        ),
        subject=str(proposal.id),
        tenant=siren,
    )
    log.info("elimination.proposed", proposal_id=str(proposal.id), tenant=siren, count=len(items))
    return proposal


# -- the archivist's decision -------------------------------------------------------------


async def proposals_of(session: AsyncSession, siren: str) -> list[EliminationProposal]:
    result = await session.exec(
        select(EliminationProposal)
        .where(EliminationProposal.siren == siren)
        .order_by(col(EliminationProposal.proposed_at).desc())
    )
    return list(result.all())


async def proposal_detail(
    session: AsyncSession, proposal_id: uuid.UUID, siren: str
) -> EliminationProposalPublic:
    proposal = await _proposal_of(session, proposal_id, siren)
    result = await session.exec(
        select(ArchiveRetention, Archive)
        .join(Archive, col(Archive.id) == col(ArchiveRetention.archive_id))
        .where(ArchiveRetention.proposal_id == proposal.id)
        .order_by(col(Archive.deposited_at))
    )
    archives = [
        ProposedArchive(
            archive_id=archive.id,
            title=archive.title,
            kind=kind_of(archive),
            due_on=retention.due_on,
            state=retention.state,
            destroyed_at=retention.destroyed_at,
        )
        for retention, archive in result.all()
    ]
    return EliminationProposalPublic(
        **EliminationProposalBase.model_validate(proposal).model_dump(),
        id=proposal.id,
        archives=archives,
    )


async def refuse(
    session: AsyncSession, proposal_id: uuid.UUID, siren: str, *, actor: str, reason: str | None
) -> EliminationProposal:
    """The archivist keeps the archives: recorded, logged, never proposed again."""
    proposal = await _undecided(session, proposal_id, siren)
    _decide(proposal, ProposalState.REFUSED, actor, reason)
    for retention in await _retentions_of(session, proposal.id):
        retention.state = RetentionState.KEPT
        session.add(retention)

    await logbook.append(
        session,
        operation=Operation.ELIMINATION_REFUSED,
        siren=siren,
        actor=actor,
        details={"proposal_id": str(proposal.id), "reason": reason},
    )
    log.info("elimination.refused", proposal_id=str(proposal.id), tenant=siren, actor=actor)
    return proposal


async def approve(
    session: AsyncSession, proposal_id: uuid.UUID, siren: str, *, actor: str, reason: str | None
) -> list[uuid.UUID]:
    """Mark the proposal's archives destroyed and log it; the caller commits, then calls
    :func:`remove_destroyed_objects` so that no object leaves the store for a decision
    that did not commit. Returns the archives destroyed."""
    proposal = await _undecided(session, proposal_id, siren)
    _decide(proposal, ProposalState.APPROVED, actor, reason)
    now = datetime.now(UTC)

    destroyed = []
    for retention in await _retentions_of(session, proposal.id):
        retention.state = RetentionState.DESTROYED
        retention.destroyed_at = now
        session.add(retention)
        destroyed.append(retention.archive_id)
        outbox.publish(
            session,
            ArchiveEliminated(
                archive_id=str(retention.archive_id),
                siren=siren,
                proposal_id=str(proposal.id),
                approved_by=actor,
                eliminated_at=now,
            ),
            subject=str(retention.archive_id),
            tenant=siren,
        )
        objects = await _objects_of(session, retention.archive_id)
        await logbook.append(
            session,
            operation=Operation.ARCHIVE_DESTROYED,
            siren=siren,
            archive_id=str(retention.archive_id),
            actor=actor,
            details={
                "proposal_id": str(proposal.id),
                "objects": [{"sha512": o.sha512, "filename": o.filename} for o in objects],
            },
        )

    await logbook.append(
        session,
        operation=Operation.ELIMINATION_APPROVED,
        siren=siren,
        actor=actor,
        details={"proposal_id": str(proposal.id), "reason": reason, "archives": len(destroyed)},
    )
    log.info("elimination.approved", proposal_id=str(proposal.id), tenant=siren, actor=actor)
    return destroyed


async def remove_destroyed_objects(session: AsyncSession, store: ObjectStore) -> int:
    """Delete from the store the content of destroyed archives no other archive holds.

    Idempotent: run after each approval and by each sweep, it also finishes the work of
    an approval whose process stopped between its commit and the deletions. The caller
    commits (it records what was removed).

    Content a deposit holds at this moment (see :mod:`kanol_common.holds`) stays: that
    deposit is about to reference it, or leaves an orphan for ``collect-orphans``. SQLite
    has no such hold: there a deposit of the very same bytes committing in the same moment
    could lose them, and the next audit would report them missing.
    """
    result = await session.exec(
        select(ArchiveRetention).where(
            ArchiveRetention.state == RetentionState.DESTROYED,
            col(ArchiveRetention.purged).is_(False),
        )
    )
    removed_count = 0
    for retention in result.all():
        keys = [o.storage_key for o in await _objects_of(session, retention.archive_id)]
        removed = await holds.remove_unused(session, store, keys, in_use)
        retention.removed = removed
        retention.purged = True
        session.add(retention)
        removed_count += len(removed)
    return removed_count


async def destroyed_archive(session: AsyncSession, archive_id: uuid.UUID) -> datetime | None:
    """When the archive was destroyed, or ``None`` when it was not."""
    retention = await session.get(ArchiveRetention, archive_id)
    if retention is None or retention.state != RetentionState.DESTROYED:
        return None
    return retention.destroyed_at


def not_destroyed() -> Any:
    """A condition on ``Archive`` that leaves out destroyed archives (searches, audits)."""
    return col(Archive.id).not_in(
        select(ArchiveRetention.archive_id).where(
            ArchiveRetention.state == RetentionState.DESTROYED
        )
    )


async def in_use(session: AsyncSession, contents: Iterable[str]) -> set[str]:
    """Which of these contents something committed still needs: an object of an archive
    not destroyed, any archive's manifest or ATR (kept after a destruction), or a
    transfer's package still waiting or its reply."""
    wanted = list(dict.fromkeys(contents))
    if not wanted:
        return set()
    archive_objects = (
        select(ArchiveObject.storage_key)
        .join(Archive, col(Archive.id) == col(ArchiveObject.archive_id))
        .where(col(ArchiveObject.storage_key).in_(wanted), not_destroyed())
    )
    manifests = select(Archive.manifest_sha256).where(col(Archive.manifest_sha256).in_(wanted))
    replies = select(Archive.reply_sha256).where(col(Archive.reply_sha256).in_(wanted))
    packages = select(PendingTransfer.package_sha256).where(
        col(PendingTransfer.package_sha256).in_(wanted), PendingTransfer.state != DONE
    )
    transfer_replies = select(PendingTransfer.reply_sha256).where(
        col(PendingTransfer.reply_sha256).in_(wanted)
    )
    needed: set[str] = set()
    for query in (archive_objects, manifests, replies, packages, transfer_replies):
        needed.update(key for key in (await session.exec(query.distinct())).all() if key)
    return needed


async def _objects_of(session: AsyncSession, archive_id: uuid.UUID) -> list[ArchiveObject]:
    result = await session.exec(
        select(ArchiveObject)
        .where(ArchiveObject.archive_id == archive_id)
        .order_by(col(ArchiveObject.position))
    )
    return list(result.all())


async def _retentions_of(session: AsyncSession, proposal_id: uuid.UUID) -> list[ArchiveRetention]:
    result = await session.exec(
        select(ArchiveRetention).where(ArchiveRetention.proposal_id == proposal_id)
    )
    return list(result.all())


async def _proposal_of(
    session: AsyncSession, proposal_id: uuid.UUID, siren: str
) -> EliminationProposal:
    proposal = await session.get(EliminationProposal, proposal_id)
    # Another organisation's proposal answers exactly like a missing one.
    if proposal is None or proposal.siren != siren:
        raise ProposalNotFound(f"No elimination proposal {proposal_id}.")
    return proposal


async def _undecided(
    session: AsyncSession, proposal_id: uuid.UUID, siren: str
) -> EliminationProposal:
    proposal = await _proposal_of(session, proposal_id, siren)
    if proposal.state != ProposalState.PROPOSED:
        raise ProposalAlreadyDecided(f"The proposal was already {proposal.state}.")
    return proposal


def _decide(proposal: EliminationProposal, state: str, actor: str, reason: str | None) -> None:
    proposal.state = state
    proposal.decided_at = datetime.now(UTC)
    proposal.decided_by = actor
    proposal.reason = reason


def _add_years(start: date, years: int) -> date:
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February into a common year
        return start.replace(year=start.year + years, day=28)


# -- the periodic sweep -------------------------------------------------------------------


async def sweep(
    database: Database, store: ObjectStore, rules: RetentionRules | None = None
) -> list[EliminationProposal]:
    """One pass: reload the rules, raise the proposals now due, finish pending removals."""
    async with database.session() as session:
        if rules is not None:
            await rules.load(session)
        proposals = await propose_eliminations(session)
        await session.commit()
        await remove_destroyed_objects(session, store)
        await session.commit()
    return proposals


async def keep_sweeping(
    database: Database, store: ObjectStore, rules: RetentionRules, *, period_seconds: float
) -> None:
    """The background task: a sweep at start, then every ``period_seconds`` (a service
    restarted more often than the period still sweeps)."""
    while True:
        try:
            await sweep(database, store, rules)
        except Exception:  # the next period tries again
            log.warning("retention.sweep_failed", exc_info=True)
        await asyncio.sleep(period_seconds)
