"""Which appraisal and access rules a kind of document gets when it is deposited.

SEDA carries a rule's identifier, its start date and the final action; the duration lives
in the archive's rule referential. These defaults follow the usual practice for local
authorities' records: délibérations, arrêtés and budgets are kept for ever once their
administrative use ends; contracts and accounting flows are destroyed after ten years.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

KEEP: Final = "Keep"
DESTROY: Final = "Destroy"


@dataclass(frozen=True)
class DepositRules:
    """The rules a deposit of one kind of document receives."""

    kind: str
    appraisal_rule: str
    appraisal_years: int
    final_action: str
    access_rule: str
    access_years: int


class RuleSource(Protocol):
    def rules_for(self, kind: str) -> DepositRules: ...


def acte_kind(nature: int) -> str:
    return f"acte.{ACTE_NATURE_CODES.get(nature, 'AU')}"


PES_FLOW_KIND: Final = "pes.flow"
TRANSFER_KIND: Final = "transfer"

# ACTES nature codes and their two-letter abbreviations (DE, AR, AI, CC, BF, AU).
ACTE_NATURE_CODES: Final = {1: "DE", 2: "AR", 3: "AI", 4: "CC", 5: "BF", 6: "AU"}
ACTE_NATURE_LABELS: Final = {
    1: "Délibération",
    2: "Arrêté réglementaire",
    3: "Arrêté individuel",
    4: "Contrat et convention",
    5: "Document budgétaire et financier",
    6: "Autre",
}

_DEFAULTS: Final = {
    rules.kind: rules
    for rules in (
        DepositRules("acte.DE", "APP-ACTES-DE", 10, KEEP, "ACC-00001", 0),
        DepositRules("acte.AR", "APP-ACTES-AR", 10, KEEP, "ACC-00001", 0),
        # Individual decisions name people: communicable after 50 years (private life).
        DepositRules("acte.AI", "APP-ACTES-AI", 10, KEEP, "ACC-00003", 50),
        DepositRules("acte.CC", "APP-ACTES-CC", 10, DESTROY, "ACC-00001", 0),
        DepositRules("acte.BF", "APP-ACTES-BF", 10, KEEP, "ACC-00001", 0),
        DepositRules("acte.AU", "APP-ACTES-AU", 10, DESTROY, "ACC-00001", 0),
        DepositRules(PES_FLOW_KIND, "APP-PES", 10, DESTROY, "ACC-00001", 0),
        DepositRules(TRANSFER_KIND, "APP-TRANSFER", 10, KEEP, "ACC-00001", 0),
    )
}


class DefaultRules:
    """The rules above, until the archive's own referential answers for them."""

    def rules_for(self, kind: str) -> DepositRules:
        return _DEFAULTS.get(kind, _DEFAULTS[TRANSFER_KIND])
