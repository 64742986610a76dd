"""The SEDA 2.1 and 2.2 schemas, loaded once, and the safe reading of SEDA messages.

The schemas need XSD 1.1, which libxml2 does not speak: they are compiled by xmlschema
(``XMLSchema11``) from the copies in ``kanol_archive/schemas/seda`` (see its ORIGIN.md),
with the W3C ``xml.xsd`` and ``xlink.xsd`` mapped to local files so that nothing is
fetched from the network. Untrusted XML is parsed by lxml first, with entities, DTDs and
the network off, then validated as a tree.
"""

from __future__ import annotations

import enum
import functools
import threading
from itertools import islice
from pathlib import Path
from typing import Final

import anyio
import xmlschema
from lxml import etree

from kanol_common.xml import safe_parser

SCHEMAS_DIR: Final = Path(__file__).resolve().parent.parent / "schemas" / "seda"
XML_NS: Final = "http://www.w3.org/XML/1998/namespace"
XLINK_NS: Final = "http://www.w3.org/1999/xlink"
# A manifest describes files, it does not hold them: a few hundred kilobytes for a large
# transfer. Anything far larger is refused before the parser sees it.
MAX_MANIFEST_BYTES: Final = 20 * 1024 * 1024
MAX_REPORTED_ERRORS: Final = 20


class SedaVersion(enum.StrEnum):
    V2_1 = "2.1"
    V2_2 = "2.2"

    @property
    def namespace(self) -> str:
        return f"fr:gouv:culture:archivesdefrance:seda:v{self.value}"

    @property
    def folder(self) -> Path:
        return SCHEMAS_DIR / f"v{self.value.replace('.', '_')}"

    @classmethod
    def of_namespace(cls, namespace: str | None) -> SedaVersion | None:
        return next((version for version in cls if version.namespace == namespace), None)


class SedaXmlError(ValueError):
    """A SEDA message that cannot be read or does not match its schema."""

    def __init__(self, message: str, errors: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors or (message,)


# xmlschema's schema objects are not documented as thread-safe while they build their
# lazy parts; validation runs in worker threads, so the first build is guarded.
_build_lock = threading.Lock()


@functools.cache
def _compiled(version: SedaVersion) -> xmlschema.XMLSchema11:
    folder = version.folder
    return xmlschema.XMLSchema11(
        str(folder / f"seda-vitam-{version.value}-main.xsd"),
        # Strict building refuses one ontology type that XSD 1.1 validators of other
        # languages accept; lax building records it and validates instances normally.
        validation="lax",
        locations=[(XML_NS, str(folder / "xml.xsd")), (XLINK_NS, str(folder / "xlink.xsd"))],
        allow="local",
        defuse="always",
    )


def schema(version: SedaVersion) -> xmlschema.XMLSchema11:
    """The compiled schema of ``version``, built on first use and kept for the process."""
    with _build_lock:
        return _compiled(version)


async def load_schemas() -> None:
    """Compile every version's schema in a worker thread, once for the process."""
    for version in SedaVersion:
        await anyio.to_thread.run_sync(schema, version)


def validation_errors(root: etree._Element, version: SedaVersion) -> tuple[str, ...]:
    """The schema's complaints about ``root``, at most :data:`MAX_REPORTED_ERRORS`."""
    errors = schema(version).iter_errors(etree.ElementTree(root), use_location_hints=False)
    return tuple(
        f"{error.path or '/'}: {error.reason or error.message}"
        for error in islice(errors, MAX_REPORTED_ERRORS)
    )


def validate(root: etree._Element, version: SedaVersion) -> None:
    """Raise :class:`SedaXmlError` with the schema's errors unless ``root`` is valid."""
    errors = validation_errors(root, version)
    if errors:
        raise SedaXmlError(f"not valid against the SEDA {version} schema", errors)


def parse(data: bytes) -> tuple[etree._Element, SedaVersion]:
    """Parse an untrusted SEDA message safely; the root and its SEDA version.

    Does not validate: the caller decides whether a schema error ends the reading.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise SedaXmlError(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        tree = etree.ElementTree(etree.fromstring(data, safe_parser()))
    except etree.XMLSyntaxError as exc:
        raise SedaXmlError(f"the manifest is not well-formed XML: {exc}") from exc

    if tree.docinfo.internalDTD is not None:
        # SEDA messages never carry a DTD; one here can only be an entity trick.
        raise SedaXmlError("a document type declaration (DTD) is not accepted")
    root = tree.getroot()
    version = SedaVersion.of_namespace(etree.QName(root).namespace)
    if version is None:
        raise SedaXmlError(f"the root element {root.tag} is not in the SEDA 2.1 or 2.2 namespace")
    return root, version


def serialize(root: etree._Element, version: SedaVersion) -> bytes:
    """UTF-8 bytes of a message this service built, after checking it against its schema."""
    validate(root, version)
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    assert isinstance(data, bytes)  # with an encoding, lxml always returns bytes
    return data
