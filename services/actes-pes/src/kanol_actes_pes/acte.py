"""The acte's domain: its nature, its matière, its unique id and its lifecycle.

Pure functions and values, no I/O: the service and the transmitter call them, the tests
exercise them directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import IntEnum, StrEnum

NUMERO_INTERNE_PATTERN = re.compile(r"^[A-Z0-9_]{1,15}$")
# Up to five levels; each level below the first is 1 to 99. The message's XSD requires
# CodeMatiere1 and CodeMatiere2, so a code names at least two levels.
MATIERE_PATTERN = re.compile(r"^[1-9](\.[1-9][0-9]?){1,4}$")
DEPARTEMENT_PATTERN = re.compile(r"^[09][0-9][0-9AB]$")
SIREN_PATTERN = re.compile(r"^[0-9]{9}$")
OBJET_MAX_LENGTH = 500


class Nature(IntEnum):
    """The nature of an acte, as @CTES codes it (CodeNatureActe)."""

    DELIBERATION = 1
    ARRETE_REGLEMENTAIRE = 2
    ARRETE_INDIVIDUEL = 3
    CONTRAT_CONVENTION = 4
    DOCUMENT_BUDGETAIRE = 5
    AUTRE = 6

    @property
    def code(self) -> str:
        """The two-letter abbreviation (TypeAbrege) that ends the acte's unique id."""
        return _NATURE_CODES[self]

    @property
    def type_piece_principale(self) -> str:
        """The piece type code (CodeTypePJ) of the acte's main document for this nature."""
        return _MAIN_DOCUMENT_TYPES[self]


_NATURE_CODES = {
    Nature.DELIBERATION: "DE",
    Nature.ARRETE_REGLEMENTAIRE: "AR",
    Nature.ARRETE_INDIVIDUEL: "AI",
    Nature.CONTRAT_CONVENTION: "CC",
    Nature.DOCUMENT_BUDGETAIRE: "BF",
    Nature.AUTRE: "AU",
}

# As published in the prefectures' classifications (RetourClassification, TypePJNatureActe).
_MAIN_DOCUMENT_TYPES = {
    Nature.DELIBERATION: "99_DE",
    Nature.ARRETE_REGLEMENTAIRE: "99_AR",
    Nature.ARRETE_INDIVIDUEL: "99_AI",
    Nature.CONTRAT_CONVENTION: "99_DC",
    Nature.DOCUMENT_BUDGETAIRE: "99_BU",
    Nature.AUTRE: "99_AU",
}


class ActeState(StrEnum):
    POSTED = "posted"
    WAITING_FOR_TRANSMISSION = "waiting_for_transmission"
    TRANSMITTING = "transmitting"
    TRANSMITTED = "transmitted"
    TRANSMISSION_FAILED = "transmission_failed"
    ACKNOWLEDGED = "acknowledged"
    REFUSED = "refused"
    CANCELLATION_REQUESTED = "cancellation_requested"
    CANCELLED = "cancelled"


# Every move the lifecycle allows; anything else is a bug and raises.
ALLOWED_TRANSITIONS: dict[ActeState, frozenset[ActeState]] = {
    ActeState.POSTED: frozenset({ActeState.WAITING_FOR_TRANSMISSION}),
    # Cancelled before it left: nothing reached the prefecture, no 6-1 is needed.
    ActeState.WAITING_FOR_TRANSMISSION: frozenset({ActeState.TRANSMITTING, ActeState.CANCELLED}),
    ActeState.TRANSMITTING: frozenset(
        {
            ActeState.TRANSMITTED,
            ActeState.TRANSMISSION_FAILED,
            # The gateway's hourly volume is used up: the acte queues again, nothing failed.
            ActeState.WAITING_FOR_TRANSMISSION,
        }
    ),
    ActeState.TRANSMISSION_FAILED: frozenset(
        {ActeState.WAITING_FOR_TRANSMISSION, ActeState.CANCELLED}
    ),
    ActeState.TRANSMITTED: frozenset({ActeState.ACKNOWLEDGED, ActeState.REFUSED}),
    # The authority cancels an acknowledged acte with a 6-1; the 6-2 settles it.
    ActeState.ACKNOWLEDGED: frozenset({ActeState.CANCELLATION_REQUESTED}),
    ActeState.REFUSED: frozenset(),
    # Back to acknowledged when the gateway refuses the 6-1 outright.
    ActeState.CANCELLATION_REQUESTED: frozenset({ActeState.CANCELLED, ActeState.ACKNOWLEDGED}),
    ActeState.CANCELLED: frozenset(),
}

# States from which the authority may cancel, and whether it takes a 6-1 to the prefecture.
CANCELLABLE_LOCALLY = frozenset({ActeState.WAITING_FOR_TRANSMISSION, ActeState.TRANSMISSION_FAILED})
CANCELLABLE_AT_PREFECTURE = frozenset({ActeState.ACKNOWLEDGED})
TYPE_PIECE_PATTERN = re.compile(r"^[0-9]{2}_[A-Z0-9]{2}$")
MAX_ANNEXES = 20


class IllegalTransition(Exception):
    """A state change the acte's lifecycle does not allow."""

    def __init__(self, current: ActeState, target: ActeState) -> None:
        super().__init__(f"An acte cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


def ensure_transition(current: ActeState, target: ActeState) -> None:
    if target not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(current, target)


@dataclass(frozen=True)
class Matiere:
    """A matière code of the classification, one number per level (``7.1.3`` -> 7, 1, 3)."""

    levels: tuple[int, ...]

    @classmethod
    def parse(cls, code: str) -> Matiere:
        if not MATIERE_PATTERN.fullmatch(code):
            raise ValueError(f"{code!r} is not a matière code such as 1.1 or 7.1.3")
        return cls(tuple(int(level) for level in code.split(".")))

    def __str__(self) -> str:
        return ".".join(str(level) for level in self.levels)


def identifiant_acte(
    departement: str, siren: str, date_decision: date, numero_interne: str, nature: Nature
) -> str:
    """The acte's unique id at the prefecture, e.g. ``035-213502388-20240312-2024_45-DE``."""
    if not DEPARTEMENT_PATTERN.fullmatch(departement):
        raise ValueError(f"{departement!r} is not an ACTES département code")
    if not SIREN_PATTERN.fullmatch(siren):
        raise ValueError(f"{siren!r} is not a SIREN")
    if not NUMERO_INTERNE_PATTERN.fullmatch(numero_interne):
        raise ValueError(f"{numero_interne!r} is not a numéro interne")
    return f"{departement}-{siren}-{date_decision:%Y%m%d}-{numero_interne}-{nature.code}"
