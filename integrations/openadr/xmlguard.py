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

import re

from lxml import etree
from openleadr.messaging import XML_SCHEMA

MAX_MESSAGE_BYTES = (
    1 << 20
)  # 1 MiB: far above any real OpenADR payload (a day of 1-minute intervals ~ 300 kB)

_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_DECL_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


class RefusedXML(ValueError):
    """A message was refused before or while parsing; the message says why."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_pis=True,
    )


def check(content: bytes | str, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """Refuse what no OpenADR message contains; return the content as bytes."""
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    if len(data) > limit:
        raise RefusedXML(f"message of {len(data)} bytes is larger than the {limit} bytes allowed")
    if not data.strip():
        raise RefusedXML("empty message")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefusedXML(f"message is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    declared = _DECL_ENCODING.match(data)
    if declared and declared.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
        raise RefusedXML(f"message declares encoding {declared.group(1).decode()!r}; OpenADR uses UTF-8")
    if _DTD.search(data):
        raise RefusedXML("message carries a DTD or an entity declaration, which OpenADR messages never do")
    return data


def parse(content: bytes | str, limit: int = MAX_MESSAGE_BYTES) -> etree._Element:
    """``check``, then parse without entities, DTD or network and validate against the OpenADR 2.0b schema.
    Raises ``RefusedXML`` (with the reason) for anything refused."""
    data = check(content, limit)
    try:
        tree = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise RefusedXML(f"not well-formed XML: {exc}") from None
    if not XML_SCHEMA.validate(tree):
        error = XML_SCHEMA.error_log.last_error
        raise RefusedXML(f"does not validate against the OpenADR 2.0b schema: {error}")
    return tree
