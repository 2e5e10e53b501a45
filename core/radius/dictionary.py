"""The attribute dictionary, loaded once at start-up and compiled into what the codec uses.

Owns: reading ``dictionaries/`` (FreeRADIUS format) with pyrad's parser, and resolving the
attributes simgate reads or writes to ``(vendor, type)`` handles, so that no code looks an
attribute up by name or literal number per packet (FreeRADIUS autoload, layeh codegen).

Invariants: a ``Dictionary`` is immutable after ``load``; every handle in ``REQUIRED`` exists, or
loading fails naming it.

Must not: import asyncio, logging or metrics. This is the only module that imports pyrad.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pyrad.dictionary import Dictionary as PyradDictionary
from pyrad.dictionary import ParseError

#: Where the project's dictionaries live; ``load()`` reads ``dictionary`` there.
DEFAULT_DIR: Final = Path(__file__).resolve().parents[2] / "dictionaries"

VENDOR_3GPP: Final = 10415

#: Attribute name -> the field of ``Handles`` it fills. Missing any of them stops start-up.
REQUIRED: Final = {
    "User-Name": "user_name",
    "User-Password": "user_password",
    "CHAP-Password": "chap_password",
    "NAS-IP-Address": "nas_ip_address",
    "Framed-IP-Address": "framed_ip_address",
    "Reply-Message": "reply_message",
    "Class": "class_",
    "Vendor-Specific": "vendor_specific",
    "NAS-Identifier": "nas_identifier",
    "Proxy-State": "proxy_state",
    "Acct-Status-Type": "acct_status_type",
    "Acct-Session-Id": "acct_session_id",
    "CHAP-Challenge": "chap_challenge",
    "EAP-Message": "eap_message",
    "Message-Authenticator": "message_authenticator",
    "Error-Cause": "error_cause",
    "3GPP-IMSI": "imsi_3gpp",
    "3GPP-IMEISV": "imeisv_3gpp",
}


class DictionaryError(Exception):
    """A dictionary file cannot be used; the message names file and line, or the attribute."""


@dataclass(frozen=True, slots=True)
class AttrDef:
    name: str
    vendor: int
    type: int
    datatype: str


@dataclass(frozen=True, slots=True)
class Handles:
    """The attribute numbers simgate uses, resolved from the dictionary at load time.

    Standard attributes are their type octet; 3GPP ones are their vendor type under vendor 10415.
    """

    user_name: int
    user_password: int
    chap_password: int
    nas_ip_address: int
    framed_ip_address: int
    reply_message: int
    class_: int
    vendor_specific: int
    nas_identifier: int
    proxy_state: int
    acct_status_type: int
    acct_session_id: int
    chap_challenge: int
    eap_message: int
    message_authenticator: int
    error_cause: int
    imsi_3gpp: int
    imeisv_3gpp: int


@dataclass(frozen=True, slots=True)
class Dictionary:
    """The compiled dictionary: every definition by ``(vendor, type)`` and by name."""

    path: Path
    by_code: dict[tuple[int, int], AttrDef]
    by_name: dict[str, AttrDef]
    handles: Handles


def load(directory: Path = DEFAULT_DIR) -> Dictionary:
    """Load ``directory/dictionary`` (and what it includes) and compile it.

    Raises:
        DictionaryError: a file is missing or does not parse (``file:line: message``), or an
            attribute simgate needs is not defined.
    """
    root = directory / "dictionary"
    if not root.is_file():
        raise DictionaryError(f"{root}: dictionary file not found")
    try:
        parsed = PyradDictionary(str(root))
    except ParseError as error:
        where = f"{error.file}:{error.line}" if error.line > -1 else (error.file or str(root))
        raise DictionaryError(f"{where}: {error.msg}") from None
    except OSError as error:
        raise DictionaryError(f"{error.filename or root}: {error.strerror}") from None
    return _compile(root, parsed)


def _compile(root: Path, parsed: Any) -> Dictionary:
    by_code: dict[tuple[int, int], AttrDef] = {}
    by_name: dict[str, AttrDef] = {}
    for name, attribute in parsed.attributes.items():
        vendor = parsed.vendors.GetForward(attribute.vendor) if attribute.vendor else 0
        definition = AttrDef(str(name), int(vendor), int(attribute.code), str(attribute.type))
        by_code[(definition.vendor, definition.type)] = definition
        by_name[definition.name] = definition
    fields: dict[str, int] = {}
    for name, field in REQUIRED.items():
        found = by_name.get(name)
        if found is None:
            raise DictionaryError(f"{root}: attribute {name} is not defined (simgate needs it)")
        fields[field] = found.type
    if by_name["3GPP-IMSI"].vendor != VENDOR_3GPP or by_name["3GPP-IMEISV"].vendor != VENDOR_3GPP:
        raise DictionaryError(f"{root}: 3GPP-IMSI and 3GPP-IMEISV must be vendor {VENDOR_3GPP}")
    return Dictionary(root, by_code, by_name, Handles(**fields))
