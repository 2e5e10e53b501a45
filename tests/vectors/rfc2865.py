"""RADIUS packets as hex: the RFC 2865 §7 examples and 3GPP (TS 29.061) Access-Requests.

Every constant is the packet exactly as on the wire, 16 octets per line as the RFC prints them;
``packet()`` turns one into bytes. The shared secret of all of them is ``SECRET``.
"""

from __future__ import annotations

from typing import Final

SECRET: Final = b"xyzzy5461"


def packet(hex_text: str) -> bytes:
    """Return the bytes of a hex constant (whitespace and line breaks are ignored)."""
    return bytes.fromhex(hex_text)


# https://www.rfc-editor.org/rfc/rfc2865#section-7.1
# "User Telnet to Specified Host": the NAS at 192.168.1.16 sends an Access-Request for user
# "nemo", password "arctangent", on NAS-Port 3.
RFC2865_7_1_ACCESS_REQUEST: Final = """
01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d
93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8
01 10 05 06 00 00 00 03
"""
# The RADIUS server answers Service-Type Login (1), Login-Service Telnet (0) and
# Login-IP-Host 192.168.1.3.
RFC2865_7_1_ACCESS_ACCEPT: Final = """
02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00
0e 06 c0 a8 01 03
"""
# The User-Password value above: "arctangent" padded with six NULs, hidden (RFC 2865 §5.2).
RFC2865_7_1_HIDDEN_PASSWORD: Final = "0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee"

# https://www.rfc-editor.org/rfc/rfc2865#section-7.2
# "Framed User Authenticating with CHAP": user "flopsy", CHAP-Ident 22 (0x16), the challenge is
# the Request Authenticator; NAS 192.168.1.16, NAS-Port 20, Service-Type Framed (2),
# Framed-Protocol PPP (1). The RFC does not give the cleartext password.
RFC2865_7_2_ACCESS_REQUEST: Final = """
01 01 00 47 2a ee 86 f0 8d 0d 55 96 9c a5 97 8e
0d 33 67 a2 01 08 66 6c 6f 70 73 79 03 13 16 e9
75 57 c3 16 18 58 95 f2 93 ff 63 44 07 72 75 04
06 c0 a8 01 10 05 06 00 00 00 14 06 06 00 00 00
02 07 06 00 00 00 01
"""
# Service-Type Framed (2), Framed-Protocol PPP (1), Framed-IP-Address 255.255.255.254,
# Framed-Routing Listen (2), Framed-Compression Van Jacobson TCP/IP (1), Framed-MTU 1500.
RFC2865_7_2_ACCESS_ACCEPT: Final = """
02 01 00 38 15 ef bc 7d ab 26 cf a3 dc 34 d9 c0
3c 86 01 a4 06 06 00 00 00 02 07 06 00 00 00 01
08 06 ff ff ff fe 0a 06 00 00 00 02 0d 06 00 00
00 01 0c 06 00 00 05 dc
"""

# 3GPP TS 29.061 §16.4.7 Access-Requests as a P-GW sends them (built with core.radius.wire and
# signed with SECRET, then frozen). Authenticator a1b2...90, Message-Authenticator first, then
# User-Name "001010123456789", NAS-IP-Address 192.168.1.16, Service-Type Framed (2),
# Framed-Protocol GPRS-PDP-Context (7), Called-Station-Id "iot.example" (the APN),
# Calling-Station-Id "819012345678" (the MSISDN), 3GPP-IMSI "001010123456789",
# 3GPP-IMEISV (see each), 3GPP-RAT-Type EUTRAN (6).
THREEGPP_IMSI: Final = b"001010123456789"
THREEGPP_IMEISV: Final = b"3592110897654301"

# Identifier 42; 3GPP-IMEISV as 16 ASCII digits "3592110897654301" (the TS 29.061 encoding).
THREEGPP_ACCESS_REQUEST_ASCII: Final = """
01 2a 00 9c a1 b2 c3 d4 e5 f6 07 18 29 3a 4b 5c
6d 7e 8f 90 50 12 52 6b 50 47 bb 46 00 d7 d5 01
c2 2a f5 e3 7a be 01 11 30 30 31 30 31 30 31 32
33 34 35 36 37 38 39 04 06 c0 a8 01 10 06 06 00
00 00 02 07 06 00 00 00 07 1e 0d 69 6f 74 2e 65
78 61 6d 70 6c 65 1f 0e 38 31 39 30 31 32 33 34
35 36 37 38 1a 17 00 00 28 af 01 11 30 30 31 30
31 30 31 32 33 34 35 36 37 38 39 1a 18 00 00 28
af 14 12 33 35 39 32 31 31 30 38 39 37 36 35 34
33 30 31 1a 09 00 00 28 af 15 03 06
"""
# Identifier 43; 3GPP-IMEISV as the 8 TBCD octets of GTP's ME Identity, as some gateways pass
# it on (REFERENCE §3.5): 53 29 11 80 79 56 34 10 = "3592110897654301" with swapped nibbles.
THREEGPP_IMEISV_TBCD: Final = "53 29 11 80 79 56 34 10"
THREEGPP_ACCESS_REQUEST_TBCD: Final = """
01 2b 00 94 a1 b2 c3 d4 e5 f6 07 18 29 3a 4b 5c
6d 7e 8f 90 50 12 26 40 b0 14 dd 75 03 49 fa d1
dd ef 8c c9 cf 32 01 11 30 30 31 30 31 30 31 32
33 34 35 36 37 38 39 04 06 c0 a8 01 10 06 06 00
00 00 02 07 06 00 00 00 07 1e 0d 69 6f 74 2e 65
78 61 6d 70 6c 65 1f 0e 38 31 39 30 31 32 33 34
35 36 37 38 1a 17 00 00 28 af 01 11 30 30 31 30
31 30 31 32 33 34 35 36 37 38 39 1a 10 00 00 28
af 14 0a 53 29 11 80 79 56 34 10 1a 09 00 00 28
af 15 03 06
"""
