"""Types of the C extension core/radius/_speedups.c (see core/radius/native.py).

Each function mirrors its pure-Python twin: ``parse`` is ``wire.parse_python``,
``verify_message_authenticator`` and ``sign_reply`` are ``auth.*_python`` and ``Secret`` is
``auth.PythonSecret``. Octets may come in any buffer (bytes, bytearray, memoryview); ``parse``
hands everything but bytes to the Python walk.
"""

from collections.abc import Callable, Iterable
from typing import final

from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

from core.radius.codes import Drop, MalformedPacket
from core.radius.wire import Packet

def configure(
    *,
    packet: type[Packet],
    malformed: type[MalformedPacket],
    fallback: Callable[[bytes, int | None], Packet],
    known_codes: Iterable[int],
    too_short: Drop,
    bad_length: Drop,
    truncated: Drop,
    unknown_code: Drop,
    bad_attribute: Drop,
    ma_duplicate: Drop,
) -> None: ...
def parse(data: bytes, indexed_vendor: int | None = None) -> Packet: ...
def md5(data: Buffer, /) -> bytes: ...

@final
class Secret:
    def __init__(self, value: Buffer) -> None: ...
    @property
    def value(self) -> bytes: ...
    def hmac_md5(self, message: Buffer, /) -> bytes: ...

def verify_message_authenticator(
    data: Buffer, length: int, ma_offset: int, secret: Secret
) -> bool: ...
def sign_reply(
    code: int,
    identifier: int,
    request_authenticator: Buffer,
    attributes: Buffer,
    secret: Secret,
    *,
    message_authenticator: bool = True,
) -> bytes: ...
