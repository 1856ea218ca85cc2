"""Parsing XML that arrives from outside (a utility's server, a VTN, anyone on the path) without trusting it.

Protocol payloads (OpenADR 2.0b, IEEE 2030.5) never carry a DTD, so any ``<!DOCTYPE`` or ``<!ENTITY`` is refused
before a parser sees the bytes (an internal entity has crashed lxml 6.1 / libxml2 2.14 outright). What remains is
parsed with no entity resolution, no DTD, no network, comments and processing instructions dropped, and
libxml2's own size and depth limits (no ``huge_tree``). Every refusal raises ``RefusedXML`` saying why.
"""

from __future__ import annotations

import re

from lxml import etree

_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_DECL_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


class RefusedXML(ValueError):
    """A payload refused before or while parsing; the message says why."""


def parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_pis=True,
        remove_comments=True,
    )


def check(content: bytes | str, limit: int, *, what: str = "document", kind: str = "XML payloads") -> bytes:
    """Refuse oversized, empty, non-UTF-8 and DTD-carrying payloads; return the content as bytes.

    ``what`` names the payload in messages ("message", "document"), ``kind`` the protocol's payloads."""
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    if len(data) > limit:
        raise RefusedXML(f"{what} of {len(data)} bytes is larger than the {limit} bytes allowed")
    if not data.strip():
        raise RefusedXML(f"empty {what}")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefusedXML(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    declared = _DECL_ENCODING.match(data)
    if declared and declared.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
        raise RefusedXML(f"{what} declares encoding {declared.group(1).decode()!r}; only UTF-8 is accepted")
    if _DTD.search(data):
        raise RefusedXML(f"{what} carries a DTD or an entity declaration, which {kind} never do")
    return data


def parse(
    content: bytes | str, limit: int, *, what: str = "document", kind: str = "XML payloads"
) -> etree._Element:
    """``check``, then parse with the safe parser."""
    data = check(content, limit, what=what, kind=kind)
    try:
        return etree.fromstring(data, parser())
    except etree.XMLSyntaxError as exc:
        raise RefusedXML(f"not well-formed XML: {exc}") from None
