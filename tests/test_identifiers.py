"""USCC, mobile numbers, e-mail addresses and their log masks."""

from __future__ import annotations

import pytest

from pushsvc.core.identifiers import (
    USCC_ALPHABET,
    ascii_email,
    check_uscc,
    mask_email,
    mask_phone,
    normalise_email,
    normalise_phone,
    uscc_check_char,
)

VALID_USCC = "91350100M000100Y43"


# ----------------------------------------------------------------------------- USCC


def test_the_standard_example_is_valid() -> None:
    assert check_uscc(VALID_USCC) == VALID_USCC
    assert uscc_check_char(VALID_USCC[:17]) == "3"


def test_uscc_is_trimmed_and_upper_cased() -> None:
    assert check_uscc("  91350100m000100y43 ") == VALID_USCC


@pytest.mark.parametrize("wrong", [c for c in USCC_ALPHABET if c != "3"])
def test_every_other_check_character_is_refused(wrong: str) -> None:
    with pytest.raises(ValueError, match="check character"):
        check_uscc(VALID_USCC[:17] + wrong)


def test_a_mistyped_body_character_is_caught_by_the_check() -> None:
    with pytest.raises(ValueError, match="check character"):
        check_uscc("91350100M000101Y43")


@pytest.mark.parametrize("letter", ["I", "O", "S", "V", "Z", "-", "中"])
def test_letters_outside_the_alphabet_are_refused(letter: str) -> None:
    with pytest.raises(ValueError, match=f"character 9 \\('{letter}'\\)"):
        check_uscc("91350100" + letter + "000100Y43")


@pytest.mark.parametrize("raw", ["", "91350100M000100Y4", "91350100M000100Y433"])
def test_wrong_lengths_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="18 characters"):
        check_uscc(raw)


def test_check_character_31_is_zero() -> None:
    # Find a body whose weighted sum is a multiple of 31: the standard writes that check as '0'.
    for n in range(10_000):
        body = f"91440101MA{n:07d}"
        if uscc_check_char(body) == "0":
            assert check_uscc(body + "0") == body + "0"
            return
    pytest.fail("no body with check character 0 found")


def test_generated_codes_round_trip() -> None:
    for n in range(200):
        body = f"91440106{USCC_ALPHABET[n % 31]}{n:08d}"
        assert check_uscc(body + uscc_check_char(body))


def test_uscc_check_char_wants_17_valid_characters() -> None:
    with pytest.raises(ValueError, match="17 characters"):
        uscc_check_char("9135010")
    with pytest.raises(ValueError, match="not allowed"):
        uscc_check_char("91350100O000100Y4")


def test_uscc_must_be_a_string() -> None:
    with pytest.raises(ValueError):
        check_uscc(913501)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "+8613800138000",
        "8613800138000",
        "008613800138000",
        "+86 138 0013 8000",
        "138-0013-8000",
        " 0086 138-0013-8000 ",
        "+86-138 0013 8000",
        "＋８６ １３８ ００１３ ８０００",  # full-width, as Chinese input methods type it
    ],
)
def test_mobile_numbers_in_every_form_normalise_to_e164(raw: str) -> None:
    assert normalise_phone(raw) == "+8613800138000"


@pytest.mark.parametrize("raw", ["15912345678", "18612345678", "17712345678", "19912345678"])
def test_other_allocated_ranges_are_accepted(raw: str) -> None:
    assert normalise_phone(raw) == "+86" + raw


@pytest.mark.parametrize(
    "raw, message",
    [
        ("", "11 digits"),
        ("1380013800", "11 digits"),  # 10 digits
        ("138001380001", "11 digits"),  # 12 digits
        ("12800138000", "11 digits"),  # 12x is not a mobile prefix
        ("23800138000", "11 digits"),
        ("020 8888 8888", "11 digits"),  # a Guangzhou landline
        ("1380013800a", "11 digits"),
        ("+852 9123 4567", r"\+86"),  # Hong Kong
        ("+1 415 555 0100", r"\+86"),
        ("8613800138", "11 digits"),
        ("14012345678", "allocated"),  # 140 is not an allocated range
    ],
)
def test_bad_numbers_are_refused_with_a_reason(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalise_phone(raw)


def test_phone_must_be_a_string() -> None:
    with pytest.raises(ValueError):
        normalise_phone(13800138000)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- e-mail


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("a@example.com", "a@example.com"),
        ("  Alice.Wong@Example.COM\n", "Alice.Wong@example.com"),  # local part keeps its case
        ("first.last+tag@mail.gz.gov.cn", "first.last+tag@mail.gz.gov.cn"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("a@例子.中国", "a@例子.中国"),
        ("a@xn--fsqu00a.xn--fiqs8s", "a@xn--fsqu00a.xn--fiqs8s"),
        ("a@EXAMPLE.Co.Uk", "a@example.co.uk"),
        ("a@ＥＸＡＭＰＬＥ。com", "a@example.com"),  # full-width letters and the ideographic full stop
        ("delivered@simulator.pushsvc.invalid", "delivered@simulator.pushsvc.invalid"),  # special-use names too
        ("qa@staging.test", "qa@staging.test"),
    ],
)
def test_good_addresses(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a.example.com", "one @"),
        ("a@b@example.com", "one @"),
        ("a b@example.com", "spaces"),
        ("a@exa mple.com", "spaces"),
        ("a@localhost", "dot"),
        ("@example.com", "before @"),
        (".a@example.com", "before @"),
        ("a..b@example.com", "before @"),
        ("a.@example.com", "before @"),
        ("a<b>@example.com", "before @"),
        ("a@example..com", "empty part"),
        ("a@example.com.", "empty part"),
        ("a@-example.com", "hyphen"),
        ("a@exa_mple.com", "hyphen"),
        ("a@example.123", "number"),
        ("a@" + "x" * 64 + ".com", "63"),
        ("a" * 65 + "@example.com", "before @"),
        ("a@" + "abcdefghij." * 25 + "com", "254"),
        ("用户@example.com", "ASCII"),  # no SMTPUTF8 in our envelopes
        ('"a b"@example.com', "spaces"),
        ('"ab"@example.com', "before @"),  # no quoted local parts
        ("a@[192.0.2.1]", "letters, digits or hyphens"),
        ("a@xn--abc.com", "internationalised"),
    ],
)
def test_bad_addresses(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalise_email(raw)


def test_the_ascii_form_puts_an_idn_domain_in_punycode() -> None:
    assert ascii_email(" a@例子.中国 ") == "a@xn--fsqu00a.xn--fiqs8s"
    assert ascii_email("a@Bücher.DE") == "a@xn--bcher-kva.de"
    assert ascii_email("Alice@Example.com") == "Alice@example.com"
    with pytest.raises(ValueError, match="one @"):
        ascii_email("alice")


# ----------------------------------------------------------------------------- masks


def test_masks_hide_the_middle() -> None:
    assert mask_phone("+8613800138000") == "+86138****8000"
    assert mask_email("alice@example.com") == "a***@example.com"


def test_masks_never_echo_what_they_cannot_parse() -> None:
    assert mask_phone("12345") == "****"
    assert mask_phone("") == "****"
    assert mask_email("not-an-address") == "***"
    assert mask_email("@example.com") == "***@example.com"
