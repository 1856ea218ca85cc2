"""A guard in front of openleadr's XML parsing: what a VTN (or anyone on the path) sends is refused, without
crashing, when it is oversized, not UTF-8, or carries a DTD.

Why a guard is needed: openleadr parses with ``lxml.etree.XMLParser(schema=...)``, which resolves internal
entities; with lxml 6.1 / libxml2 2.14 a message whose DTD declares one internal entity that is used in the
document makes that parse crash the process (SIGSEGV), and a parse that survives can still expand entities.
OpenADR 2.0b payloads never have a DTD, so any ``<!DOCTYPE`` or ``<!ENTITY`` is refused before a parser sees
the bytes. The schema check then runs on a parser that resolves no entities, loads no DTD, reads nothing from
the network and keeps libxml2's size and depth limits (no ``huge_tree``).
"""

from __future__ import annotations

from lxml import etree
from openleadr.messaging import XML_SCHEMA

from hems import xmlsafe
from hems.xmlsafe import RefusedXML

__all__ = ["MAX_MESSAGE_BYTES", "RefusedXML", "check", "parse"]

MAX_MESSAGE_BYTES = (
    1 << 20
)  # 1 MiB: far above any real OpenADR payload (a day of 1-minute intervals ~ 300 kB)


def check(content: bytes | str, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """Refuse what no OpenADR message contains; return the content as bytes."""
    return xmlsafe.check(content, limit, what="message", kind="OpenADR messages")


def parse(content: bytes | str, limit: int = MAX_MESSAGE_BYTES) -> etree._Element:
    """``check``, then parse without entities, DTD or network and validate against the OpenADR 2.0b schema.
    Raises ``RefusedXML`` (with the reason) for anything refused."""
    tree = xmlsafe.parse(content, limit, what="message", kind="OpenADR messages")
    if not XML_SCHEMA.validate(tree):
        error = XML_SCHEMA.error_log.last_error
        raise RefusedXML(f"does not validate against the OpenADR 2.0b schema: {error}")
    return tree
