"""The problems actes-pes answers with, each with a stable type a caller can act on."""

from __future__ import annotations

from kanol_common.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidContent,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)


class UploadMalformed(BadRequest):
    type_slug = "acte-upload-malformed"
    title = "The upload is not a well-formed multipart/form-data request"


class MetadataInvalid(BadRequest):
    type_slug = "acte-metadata-invalid"
    title = "The acte's metadata cannot be read"


class NatureInvalid(InvalidContent):
    type_slug = "acte-nature-invalid"
    title = "Unknown nature of acte"


class NumeroInterneInvalid(InvalidContent):
    type_slug = "acte-numero-interne-invalid"
    title = "Invalid numéro interne"


class NumeroInterneTaken(Conflict):
    type_slug = "acte-numero-interne-taken"
    title = "Numéro interne already used this year"


class DateDecisionInvalid(InvalidContent):
    type_slug = "acte-date-decision-invalid"
    title = "Invalid date of decision"


class MatiereInvalid(InvalidContent):
    type_slug = "acte-matiere-invalid"
    title = "Invalid matière code"


class ObjetInvalid(InvalidContent):
    type_slug = "acte-objet-invalid"
    title = "Invalid objet"


class DepartementInvalid(InvalidContent):
    type_slug = "acte-departement-invalid"
    title = "Invalid département code"


class OtherOrganisation(Forbidden):
    type_slug = "acte-other-organisation"
    title = "The acte belongs to another organisation"


class DocumentMissing(BadRequest):
    type_slug = "acte-document-missing"
    title = "The acte's document is missing"


class DocumentNotPdf(UnsupportedMediaType):
    type_slug = "acte-document-not-pdf"
    title = "The acte's document is not a PDF"


class DocumentCorrupted(InvalidContent):
    type_slug = "acte-document-corrupted"
    title = "The acte's PDF cannot be read"


class DocumentTooLarge(PayloadTooLarge):
    type_slug = "acte-document-too-large"
    title = "The acte's document is too large"


class ActeNotFound(NotFound):
    type_slug = "acte-not-found"
    title = "No such acte"


class DocumentNotFound(NotFound):
    type_slug = "acte-document-not-found"
    title = "No such document"


class MatiereUnknown(InvalidContent):
    type_slug = "acte-matiere-unknown"
    title = "Matière code not in the prefecture's current classification"


class TypePieceInvalid(InvalidContent):
    type_slug = "acte-type-piece-invalid"
    title = "Piece type code not allowed for this nature of acte"


class AnnexesMismatch(InvalidContent):
    type_slug = "acte-annexes-mismatch"
    title = "The annexes sent do not match the annexes described"


class ActeNotCancellable(Conflict):
    type_slug = "acte-not-cancellable"
    title = "The acte cannot be cancelled in its current state"


class MessageNotFound(NotFound):
    type_slug = "acte-message-not-found"
    title = "No such message"


class AnswerNotAllowed(Conflict):
    type_slug = "acte-answer-not-allowed"
    title = "This message cannot take this answer"


class AnswerInvalid(InvalidContent):
    type_slug = "acte-answer-invalid"
    title = "The answer cannot be read"


class SiretInvalid(InvalidContent):
    type_slug = "acte-siret-invalid"
    title = "Invalid SIRET"
