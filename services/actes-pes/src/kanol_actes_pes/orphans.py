"""actes-pes's orphan collection (:mod:`kanol_common.orphans`): the documents of actes and
PES flows, the received classifications and PES returns are what it still needs; nothing
else in its store is referenced, since actes-pes never removes a document."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_actes_pes.models import ActeDocument, StoredClassification
from kanol_actes_pes.pes.models import PesDocument, PesFlow, PesRetour

_REFERENCES: tuple[Any, ...] = (
    ActeDocument.sha256,
    StoredClassification.sha256,
    PesFlow.sha256,
    PesDocument.sha256,
    PesRetour.sha256,
)


async def in_use(session: AsyncSession, contents: Iterable[str]) -> set[str]:
    """Which of these contents a document, a classification or a PES return refers to."""
    wanted = list(dict.fromkeys(contents))
    if not wanted:
        return set()
    needed: set[str] = set()
    for column in _REFERENCES:
        query = select(column).where(col(column).in_(wanted)).distinct()
        needed.update((await session.exec(query)).all())
    return needed
