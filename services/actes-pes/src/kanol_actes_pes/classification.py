"""The prefecture's classification: which matière codes and piece types an acte may use.

Each prefecture publishes its own, versioned by date, as a ``RetourClassification``
(message 7-2), sent in answer to a ``DemandeClassification`` (7-1); "unchanged" is a 7-3.
actes-pes keeps the latest per département in its database and checks every acte against
it before anything is stored; a département never heard of uses the seed shipped in
``schemas/actes/classification-seed.xml`` until its prefecture answers.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from datetime import date
from importlib import resources

from lxml import etree

from kanol_actes_pes.prefecture import actes_xml
from kanol_actes_pes.prefecture.actes_xml import qname

SEED_FILE = "classification-seed.xml"
# A classification read from the database is reused this long by a process: a 7-2 applied
# by another replica reaches this one within that delay.
CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class Classification:
    """One version of a prefecture's classification."""

    date_classification: date
    # Every code of two levels or more, with its label: ``"7.1.3" -> "Tarifs..."``.
    matieres: dict[str, str]
    # CodeNatureActe -> the CodeTypePJ its documents may carry, in the published order.
    types_piece: dict[int, tuple[str, ...]]

    def has_matiere(self, code: str) -> bool:
        return code in self.matieres

    def types_for(self, nature: int) -> tuple[str, ...]:
        return self.types_piece.get(nature, ())


def read(data: bytes) -> Classification:
    """Parse and validate a ``RetourClassification``; :class:`ActesXmlError` otherwise."""
    root = actes_xml.parse(data)
    if actes_xml.local_name(root) != "RetourClassification":
        raise actes_xml.ActesXmlError(
            f"a {actes_xml.local_name(root)} where a RetourClassification was expected"
        )
    return from_root(root)


def from_root(root: etree._Element) -> Classification:
    day = date.fromisoformat((root.findtext(qname("DateClassification")) or "").strip())
    types: dict[int, tuple[str, ...]] = {}
    for nature in root.iterfind(f"{qname('NaturesActes')}/{qname('NatureActe')}"):
        code = int(nature.get(qname("CodeNatureActe")) or "0")
        types[code] = tuple(
            piece.get(qname("CodeTypePJ")) or ""
            for piece in nature.iterfind(qname("TypePJNatureActe"))
        )
    matieres: dict[str, str] = {}
    for first in root.iterfind(f"{qname('Matieres')}/{qname('Matiere1')}"):
        _collect(first, (), 1, matieres)
    return Classification(day, matieres, types)


def _collect(
    element: etree._Element, prefix: tuple[str, ...], level: int, into: dict[str, str]
) -> None:
    code = (*prefix, element.get(qname("CodeMatiere")) or "")
    if level >= 2:
        into[".".join(code)] = element.get(qname("Libelle")) or ""
    for child in element.iterfind(qname(f"Matiere{level + 1}")):
        _collect(child, code, level + 1, into)


@functools.cache
def seed_bytes() -> bytes:
    entry = resources.files("kanol_actes_pes.schemas.actes").joinpath(SEED_FILE)
    return entry.read_bytes()


@functools.cache
def seed() -> Classification:
    return read(seed_bytes())


@dataclass
class ClassificationCache:
    """The current classification per département, read through from the database."""

    ttl: float = CACHE_SECONDS
    _entries: dict[str, tuple[float, Classification]] = field(default_factory=dict)

    def get(self, departement: str) -> Classification | None:
        entry = self._entries.get(departement)
        if entry is None or time.monotonic() - entry[0] > self.ttl:
            return None
        return entry[1]

    def put(self, departement: str, classification: Classification) -> None:
        self._entries[departement] = (time.monotonic(), classification)

    def forget(self, departement: str) -> None:
        self._entries.pop(departement, None)
