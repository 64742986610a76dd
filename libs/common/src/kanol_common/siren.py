"""SIREN and SIRET numbers: the identifiers INSEE gives organisations and their establishments."""

from __future__ import annotations

# La Poste's SIREN predates the checksum rule and fails it; INSEE keeps it as issued.
_LA_POSTE_SIREN = "356000000"


def luhn_is_valid(digits: str) -> bool:
    """The Luhn checksum (ISO/IEC 7812-1) of a string of decimal digits."""
    if not digits.isascii() or not digits.isdigit():
        return False

    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def is_valid_siren(siren: str) -> bool:
    """Nine digits whose Luhn checksum holds, e.g. ``213502388``."""
    if len(siren) != 9:
        return False
    return siren == _LA_POSTE_SIREN or luhn_is_valid(siren)


def is_valid_siret(siret: str) -> bool:
    """A valid SIREN followed by a five-digit establishment number, checksummed as a whole."""
    if len(siret) != 14 or not is_valid_siren(siret[:9]):
        return False
    if siret.startswith(_LA_POSTE_SIREN):
        # La Poste's establishments use a digit sum divisible by five instead of Luhn.
        return siret.isdigit() and sum(int(char) for char in siret) % 5 == 0
    return luhn_is_valid(siret)
