"""The problems the PES API answers with, each with a stable type a caller can act on.

Every refusal here happens before anything is stored or published.
"""

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


class PesUploadMalformed(BadRequest):
    type_slug = "pes-upload-malformed"
    title = "The upload is not a PES_Aller file in a readable request"


class PesNotXml(UnsupportedMediaType):
    type_slug = "pes-not-xml"
    title = "The flow is not sent as XML"


class PesTooLarge(PayloadTooLarge):
    type_slug = "pes-too-large"
    title = "The PES flow is too large"


class PesXmlMalformed(InvalidContent):
    type_slug = "pes-xml-malformed"
    title = "The PES flow is not well-formed XML"


class PesXmlForbidden(InvalidContent):
    """A DOCTYPE, an entity or a processing trick: nothing of it is ever expanded."""

    type_slug = "pes-xml-forbidden"
    title = "The PES flow uses an XML construct that is not allowed (DTD, entities)"


class PesEncodingInvalid(InvalidContent):
    type_slug = "pes-encoding-invalid"
    title = "The PES flow's encoding is not ISO-8859-1 or UTF-8, or its bytes do not match it"


class PesNotPesAller(InvalidContent):
    type_slug = "pes-not-pes-aller"
    title = "The document is not a PES_Aller flow"


class PesSchemaInvalid(InvalidContent):
    type_slug = "pes-schema-invalid"
    title = "The PES flow is invalid against the PES V2 schema"


class PesSignatureInvalid(InvalidContent):
    type_slug = "pes-signature-invalid"
    title = "A signature of the PES flow does not verify"


class PesSignerUntrusted(InvalidContent):
    type_slug = "pes-signer-untrusted"
    title = "The signer's certificate is not valid at signing time or not from a trusted authority"


class PesUnsignedRefused(InvalidContent):
    type_slug = "pes-unsigned-refused"
    title = "Unsigned PES flows are not accepted here"


class PesOtherOrganisation(Forbidden):
    type_slug = "pes-other-organisation"
    title = "The flow's IdColl is not an establishment of the caller's organisation"


class PesDuplicate(Conflict):
    type_slug = "pes-flow-duplicate"
    title = "This flow was already posted"


class PesFlowNotFound(NotFound):
    type_slug = "pes-flow-not-found"
    title = "No such PES flow"


class PesDocumentNotFound(NotFound):
    type_slug = "pes-document-not-found"
    title = "No such document for this PES flow"


class PesRetourNotFound(NotFound):
    type_slug = "pes-retour-not-found"
    title = "No such PES_Retour"
