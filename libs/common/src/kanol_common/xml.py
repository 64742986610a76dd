"""Reading XML that comes from outside: lxml with every dangerous feature turned off."""

from __future__ import annotations

from lxml import etree


def safe_parser(*, keep_comments: bool = False) -> etree.XMLParser:
    """A parser that resolves no entity, loads no DTD, reaches no network, keeps the limits.

    lxml's size limits stay on (``huge_tree`` off), so an oversized text node or a deep
    nesting is an error, not a memory blow-up. Comments are dropped unless the caller checks
    signatures whose canonical form may include them (``keep_comments``).
    """
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=not keep_comments,
        remove_pis=True,
    )
