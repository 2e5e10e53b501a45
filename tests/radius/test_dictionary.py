"""core.radius.dictionary: the shipped dictionaries compile to handles; broken ones name the fault.

Broken dictionaries are copies of ``dictionaries/`` in ``tmp_path`` with one line changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.radius.dictionary import DEFAULT_DIR, VENDOR_3GPP, Dictionary, DictionaryError, load


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    return load()


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped dictionaries."""
    target = tmp_path / "dictionaries"
    shutil.copytree(DEFAULT_DIR, target)
    return target


def replace_line(path: Path, startswith: str, replacement: str | None) -> int:
    """Replace (None: delete) the one line starting with ``startswith``; return its number."""
    lines = path.read_text().splitlines(keepends=True)
    matches = [i for i, line in enumerate(lines) if line.startswith(startswith)]
    assert len(matches) == 1, (path, startswith, matches)
    index = matches[0]
    if replacement is None:
        del lines[index]
    else:
        lines[index] = replacement + "\n"
    path.write_text("".join(lines))
    return index + 1


@pytest.mark.parametrize(
    ("field", "number"),
    [
        ("user_name", 1),
        ("user_password", 2),
        ("chap_password", 3),
        ("nas_ip_address", 4),
        ("framed_ip_address", 8),
        ("reply_message", 18),
        ("class_", 25),
        ("vendor_specific", 26),
        ("nas_identifier", 32),
        ("proxy_state", 33),
        ("acct_status_type", 40),
        ("acct_session_id", 44),
        ("chap_challenge", 60),
        ("eap_message", 79),
        ("message_authenticator", 80),
        ("error_cause", 101),
        ("imsi_3gpp", 1),
        ("imeisv_3gpp", 20),
    ],
)
def test_handles_have_the_rfc_numbers(dictionary: Dictionary, field: str, number: int) -> None:
    assert getattr(dictionary.handles, field) == number


@pytest.mark.parametrize(
    ("name", "vendor", "number", "datatype"),
    [
        ("User-Name", 0, 1, "string"),
        ("Message-Authenticator", 0, 80, "octets"),
        ("3GPP-IMSI", VENDOR_3GPP, 1, "string"),
        ("3GPP-IMEISV", VENDOR_3GPP, 20, "octets"),
        ("3GPP-RAT-Type", VENDOR_3GPP, 21, "octets"),
    ],
)
def test_definitions_by_name_and_by_code_agree(
    dictionary: Dictionary, name: str, vendor: int, number: int, datatype: str
) -> None:
    definition = dictionary.by_name[name]

    assert (definition.vendor, definition.type, definition.datatype) == (vendor, number, datatype)
    assert dictionary.by_code[(vendor, number)] is definition


def test_3gpp_imsi_and_standard_user_name_do_not_collide(dictionary: Dictionary) -> None:
    assert dictionary.by_code[(0, 1)].name == "User-Name"
    assert dictionary.by_code[(VENDOR_3GPP, 1)].name == "3GPP-IMSI"


def test_load_records_the_root_file(dictionary: Dictionary) -> None:
    assert dictionary.path == DEFAULT_DIR / "dictionary"


def test_broken_line_names_file_and_line(copy: Path) -> None:
    line = replace_line(
        copy / "dictionary.3gpp", "ATTRIBUTE\t3GPP-IMEISV", "ATTRIBUTE\t3GPP-IMEISV\ttwenty\toctets"
    )

    with pytest.raises(DictionaryError) as caught:
        load(copy)

    assert f"dictionary.3gpp:{line}:" in str(caught.value)
    assert "twenty" in str(caught.value)


def test_broken_line_in_the_root_file_names_it(copy: Path) -> None:
    line = replace_line(copy / "dictionary", "$INCLUDE dictionary.rfc2866", "ATTRIBUTE Foo")

    with pytest.raises(DictionaryError, match=rf"dictionary:{line}: "):
        load(copy)


def test_missing_required_attribute_is_named(copy: Path) -> None:
    replace_line(copy / "dictionary.3gpp", "ATTRIBUTE\t3GPP-IMEISV", None)

    with pytest.raises(DictionaryError, match="3GPP-IMEISV is not defined"):
        load(copy)


def test_missing_standard_attribute_is_named(copy: Path) -> None:
    replace_line(copy / "dictionary.rfc3579", "ATTRIBUTE\tMessage-Authenticator", None)

    with pytest.raises(DictionaryError, match="Message-Authenticator is not defined"):
        load(copy)


def test_3gpp_attributes_under_another_vendor_are_refused(copy: Path) -> None:
    replace_line(copy / "dictionary.3gpp", "VENDOR\t", "VENDOR\t\t3GPP\t\t\t\t10416")

    with pytest.raises(DictionaryError, match="vendor 10415"):
        load(copy)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    with pytest.raises(DictionaryError, match="dictionary file not found") as caught:
        load(missing)

    assert str(missing) in str(caught.value)


def test_missing_included_file_is_named(copy: Path) -> None:
    (copy / "dictionary.rfc3579").unlink()

    with pytest.raises(DictionaryError, match=r"dictionary\.rfc3579"):
        load(copy)
