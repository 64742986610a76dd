"""OpenAPI examples of the actes API: request bodies and responses, as a caller sees them."""

from __future__ import annotations

from typing import Any

_ACTE_ID = "6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"
_IDENTIFIANT = "035-213502388-20241203-2024_45-DE"
_URI = f"https://actes.kanol.example/v1/actes/{_ACTE_ID}/documents"

METADATA_EXAMPLE = {
    "numero_interne": "2024_45",
    "nature": 1,
    "matiere": "7.1.3",
    "objet": "Tarifs de la cantine scolaire 2025",
    "date_decision": "2024-12-03",
    "type_piece": "99_DE",
    "annexes": [{"type_piece": "21_RP"}],
}


def _document(
    role: str, filename: str, type_piece: str | None, position: int | None
) -> dict[str, Any]:
    return {
        "role": role,
        "filename": filename,
        "media_type": "application/pdf",
        "sha256": "9f2b5c0e7d4a1b3c6e8f0a2d4c6b8e0f1a3c5e7d9b1f3a5c7e9d1b3f5a7c9e1d",
        "size": 48213,
        "uri": f"{_URI}/{role}",
        "type_piece": type_piece,
        "position": position,
    }


ACTE_EXAMPLE: dict[str, Any] = {
    "id": _ACTE_ID,
    "siren": "213502388",
    "identifiant_acte": _IDENTIFIANT,
    "numero_interne": "2024_45",
    "nature": 1,
    "nature_code": "DE",
    "matiere": "7.1.3",
    "objet": "Tarifs de la cantine scolaire 2025",
    "date_decision": "2024-12-03",
    "state": "acknowledged",
    "created_at": "2024-12-03T10:15:02Z",
    "updated_at": "2024-12-03T10:15:04Z",
    "transmitted_at": "2024-12-03T10:15:03Z",
    "acknowledged_at": "2024-12-03T10:15:04Z",
    "refused_at": None,
    "date_reception": "2024-12-03",
    "nature_anomalie": None,
    "detail_anomalie": None,
    "last_error": None,
    "documents": [
        _document("acte", f"99_DE-{_IDENTIFIANT}-1-1_1.pdf", "99_DE", 1),
        _document("annexe_1", f"21_RP-{_IDENTIFIANT}-1-1_2.pdf", "21_RP", 2),
        _document("acte_tamponne", f"99_DE-{_IDENTIFIANT}-1-1_1-tamponne.pdf", "99_DE", None),
    ],
    "type_piece": "99_DE",
    "classification_date": "2019-03-01",
    "acknowledgement_overdue_at": None,
    "transmission_stuck_at": None,
    "waiting_for_capacity": False,
    "next_attempt_at": None,
    "cancellation_requested_at": None,
    "cancelled_at": None,
}


def _problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    body = {
        "type": f"https://kanol.fr/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return {
        "description": title,
        "content": {"application/problem+json": {"example": body}},
    }


def _ok(description: str, example: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": example}}}


UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["metadata", "acte"],
                    "properties": {
                        "metadata": {
                            "type": "string",
                            "description": "JSON: numero_interne, nature (1-6), matiere,"
                            " objet, date_decision (YYYY-MM-DD), optionally siren,"
                            " departement, type_piece of the acte, and annexes: one"
                            " {type_piece} per file 'annexes', in order",
                        },
                        "acte": {
                            "type": "string",
                            "format": "binary",
                            "description": "The acte's PDF (application/pdf)",
                        },
                        "annexes": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "The annexes' PDFs, in order",
                        },
                    },
                },
                "example": {"metadata": METADATA_EXAMPLE, "acte": "(PDF bytes)"},
            }
        },
    }
}

POST_ACTE_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: _ok(
        "The acte, waiting for transmission", ACTE_EXAMPLE | {"state": "waiting_for_transmission"}
    ),
    409: _problem(
        409,
        "acte-numero-interne-taken",
        "Numéro interne already used this year",
        "numero_interne 2024_45 is already used by an acte of 2024 of this organisation",
    ),
    422: _problem(
        422,
        "acte-matiere-unknown",
        "Matière code not in the prefecture's current classification",
        "matiere 9.9 is not in the prefecture's classification of 2019-03-01",
        classification_date="2019-03-01",
        valid_matieres=["1.1", "1.2", "7.1.3"],
    ),
}

LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _ok("A page of actes", {"items": [ACTE_EXAMPLE], "next_cursor": "eyJtIjoiMjAyNC0x"}),
    400: _problem(
        400,
        "invalid-cursor",
        "Invalid pagination cursor",
        "The cursor was not handed out by this API",
    ),
}

MESSAGE_EXAMPLE = {
    "id": "0b7c1e2d-3f4a-4b5c-9d6e-7f8091a2b3c4",
    "number": 1,
    "direction": "in",
    "code": "3-1",
    "kind": "demande_pieces_complementaires",
    "state": "received",
    "date_courrier": "2024-12-10",
    "date_depot": None,
    "texte": "Merci de transmettre le rapport de présentation.",
    "in_reply_to": None,
    "created_at": "2024-12-10T09:00:00Z",
    "sent_at": None,
    "acknowledged_at": None,
    "last_error": None,
    "documents": [
        {
            **_document("message_1", f"{_IDENTIFIANT}-3-1_7.xml", None, None),
            "media_type": "application/xml",
        }
    ],
}

MESSAGES_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _ok("The acte's messages", {"acte_id": _ACTE_ID, "items": [MESSAGE_EXAMPLE]}),
    404: _problem(404, "acte-not-found", "No such acte", f"No acte {_ACTE_ID}"),
}

CANCEL_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"reason": {"type": "string", "nullable": True}},
                },
                "example": {"reason": "Délibération retirée par le conseil"},
            }
        },
    }
}

CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: _ok(
        "Cancellation requested (6-1 queued) or done (not yet sent)",
        ACTE_EXAMPLE
        | {"state": "cancellation_requested", "cancellation_requested_at": "2024-12-11T08:00:00Z"},
    ),
    409: _problem(
        409,
        "acte-not-cancellable",
        "The acte cannot be cancelled in its current state",
        "The acte is refused: only an acte waiting for transmission or acknowledged by the"
        " prefecture can be cancelled",
        state="refused",
    ),
}

ANSWER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["metadata", "documents"],
                    "properties": {
                        "metadata": {
                            "type": "string",
                            "description": "JSON: code (2-2, 3-3, 3-4, 4-3, 4-4) and documents:"
                            " one {type_piece} per file 'documents'",
                        },
                        "documents": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                    },
                },
                "example": {
                    "metadata": {"code": "3-4", "documents": [{"type_piece": "21_RP"}]},
                    "documents": ["(PDF bytes)"],
                },
            }
        },
    }
}

ANSWER_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: _ok(
        "The answer, waiting to be sent",
        MESSAGE_EXAMPLE
        | {
            "number": 2,
            "direction": "out",
            "code": "3-4",
            "kind": "pieces_complementaires",
            "state": "pending",
            "texte": None,
            "in_reply_to": MESSAGE_EXAMPLE["id"],
        },
    ),
    409: _problem(
        409,
        "acte-answer-not-allowed",
        "This message cannot take this answer",
        "A courrier_simple (2-1) takes the answers ['2-2'], not 3-4",
        allowed=["2-2"],
    ),
}

CLASSIFICATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _ok(
        "The current classification",
        {
            "departement": "035",
            "date_classification": "2019-03-01",
            "matieres": {"1.1": "Marchés publics", "7.1.3": "Tarifs des services publics"},
            "types_piece": {"1": ["99_DE", "21_RP"], "3": ["99_AI", "41_NC"]},
        },
    ),
}

REFRESH_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: _ok("The 7-1 was taken by the gateway", {"departement": "035", "held": "2019-03-01"}),
    503: _problem(
        503,
        "prefecture-unavailable",
        "The prefecture's gateway is unavailable",
        "The prefecture's gateway did not take the 7-1: gateway unreachable",
    ),
}

GET_ACTE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _ok("The acte", ACTE_EXAMPLE),
    404: MESSAGES_RESPONSES[404],
}

HISTORY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _ok(
        "The acte's history",
        {
            "acte_id": _ACTE_ID,
            "items": [
                {
                    "state": "posted",
                    "previous_state": None,
                    "reason": "posted by mairie-logiciel",
                    "changed_at": "2024-12-03T10:15:02Z",
                },
                {
                    "state": "transmitted",
                    "previous_state": "transmitting",
                    "reason": "the prefecture's gateway took it",
                    "changed_at": "2024-12-03T10:15:03Z",
                },
                {
                    "state": "acknowledged",
                    "previous_state": "transmitted",
                    "reason": f"accusé de réception {_IDENTIFIANT}-1-2_12.xml",
                    "changed_at": "2024-12-03T10:15:04Z",
                },
            ],
        },
    ),
    404: MESSAGES_RESPONSES[404],
}

_AR_ACTE = (
    "<?xml version='1.0' encoding='ISO-8859-1'?>\n"
    '<actes:ARActe xmlns:actes="http://www.interieur.gouv.fr/ACTES#v1.1-20040216"'
    f' actes:IDActe="{_IDENTIFIANT}" actes:DateReception="2024-12-03">...</actes:ARActe>'
)

DOCUMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The document's bytes (PDF, XML or the tar.gz sent)",
        "content": {
            "application/pdf": {"example": "%PDF-1.7 ..."},
            "application/xml": {"example": _AR_ACTE},
            "application/gzip": {},
        },
    },
    404: _problem(
        404,
        "acte-document-not-found",
        "No such document",
        f"The acte {_ACTE_ID} has no document 'ar_acte'",
    ),
}

CLASSIFICATION_DOCUMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The RetourClassification, ISO-8859-1",
        "content": {
            "application/xml": {
                "example": "<?xml version='1.0' encoding='ISO-8859-1'?>\n"
                "<actes:RetourClassification ...><actes:DateClassification>2019-03-01"
                "</actes:DateClassification>...</actes:RetourClassification>"
            }
        },
    },
}
