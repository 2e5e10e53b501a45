"""Subscribers shared by the policy and the transport tests: one SIM per row of DESIGN §2."""

from __future__ import annotations

from typing import Any

LOCKED_IMEI = "353879234252633"  # TAC+SNR 35387923425263, Luhn digit 3
SAME_IMEISV = b"3538792342526301"  # the same device reported as a 16-digit IMEISV
SAME_SPARE_0 = b"353879234252630"  # the same device as the network sends it (spare 0)
SAME_TBCD = bytes.fromhex("5383973224253620")  # 3538792342526302 in TBCD (swapped nibbles)
OTHER_DEVICE = b"490154203237518"
ZEROS_15 = b"000000000000000"
ZEROS_16 = b"0000000000000000"
GARBAGE = b"35387923425263X"

SIMS: list[dict[str, Any]] = [
    {"kind": "group", "groupId": "chap", "chap": {"username": "dev", "password": "s3cret"}},
    {"kind": "group", "groupId": "first", "lockOnFirstConnect": True},
    {"simId": "1", "imsi": "440100000000001"},
    {
        "simId": "2",
        "imsi": "440100000000002",
        "imeiLock": {"imei": LOCKED_IMEI, "allowUnreported": True},
    },
    {
        "simId": "3",
        "imsi": "440100000000003",
        "imeiLock": {"imei": LOCKED_IMEI, "allowUnreported": False},
    },
    {"simId": "4", "imsi": "440100000000004", "status": "ready"},
    {"simId": "5", "imsi": "440100000000005", "status": "standby"},
    {"simId": "6", "imsi": "440100000000006", "status": "inactive"},
    {"simId": "7", "imsi": "440100000000007", "status": "suspended"},
    {"simId": "8", "imsi": "440100000000008", "status": "terminated"},
    {"simId": "9", "imsi": "440100000000009", "groupId": "chap"},
    {"simId": "10", "imsi": "440100000000010", "groupId": "first"},
    {
        "simId": "11",
        "imsi": "440100000000011",
        "lockOnFirstConnect": True,
        "imeiLock": {"imei": LOCKED_IMEI, "allowUnreported": False},
    },
    {
        "simId": "12",
        "imsi": "440100000000012",
        "subscription": "plan01s",
        "imeiLock": {"imei": LOCKED_IMEI, "allowUnreported": True},
        "virtualSubscribers": [
            {"imsi": "999990000000001", "status": "active"},
            {"imsi": "999990000000002", "status": "terminated"},
        ],
    },
    {
        "simId": "13",
        "imsi": "440100000000013",
        "subscription": "plan01s",
        "imeiLock": {"imei": LOCKED_IMEI, "allowUnreported": False},
        "virtualSubscribers": [{"imsi": "999990000000003", "status": "active"}],
    },
]

NO_LOCK, ALLOW_UNREPORTED, STRICT = b"440100000000001", b"440100000000002", b"440100000000003"
