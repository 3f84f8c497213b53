"""Identifiers people type wrong: USCC, mainland mobile numbers, e-mail addresses; and masks for logs.

Every check raises ValueError with an English message meant to be shown next to the field.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers

# GB 32100-2015: the code alphabet (no I, O, S, V, Z) and the weights of the first 17 positions.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_VALUE = {ch: i for i, ch in enumerate(USCC_ALPHABET)}

_MOBILE_TYPES = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
_SEPARATORS = re.compile(r"[\s-]+")
_NATIONAL_MOBILE = re.compile(r"1[3-9][0-9]{9}")

_EMAIL_MAX = 254  # RFC 5321 path limit
_LOCAL_MAX = 64
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters of a code."""
    if len(first17) != 17:
        raise ValueError("a Unified Social Credit Code has 17 characters before its check character")
    _check_alphabet(first17)
    total = sum(_USCC_VALUE[ch] * w for ch, w in zip(first17, _USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - total % 31) % 31]  # 31 stands for '0'


def check_uscc(raw: str) -> str:
    """Return the code upper-cased if it is a well-formed Unified Social Credit Code."""
    if not isinstance(raw, str):
        raise ValueError("a Unified Social Credit Code must be a string")
    code = raw.strip().upper()
    if len(code) != 18:
        raise ValueError(f"a Unified Social Credit Code must have 18 characters, not {len(code)}")
    _check_alphabet(code)
    if uscc_check_char(code[:17]) != code[17]:
        raise ValueError("the check character (the last one) does not match: a character is mistyped")
    return code


def _check_alphabet(code: str) -> None:
    for pos, ch in enumerate(code, start=1):
        if ch not in _USCC_VALUE:
            raise ValueError(
                f"character {pos} ({ch!r}) is not allowed in a Unified Social Credit Code "
                "(digits and capital letters except I, O, S, V, Z)"
            )


def normalise_phone(raw: str) -> str:
    """A mainland China mobile number in E.164 form, e.g. '+8613800138000'."""
    if not isinstance(raw, str):
        raise ValueError("a phone number must be a string")
    # NFKC turns full-width digits and '＋' (common with Chinese input methods) into ASCII.
    number = _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw))
    if number.startswith("+"):
        if not number.startswith("+86"):
            raise ValueError("only mainland China mobile numbers (+86) are accepted")
        number = number[3:]
    elif number.startswith("0086"):
        number = number[4:]
    elif number.startswith("86") and len(number) == 13:
        number = number[2:]
    if not _NATIONAL_MOBILE.fullmatch(number):
        raise ValueError("a mainland mobile number has 11 digits starting 13 to 19, e.g. 138 0013 8000")
    parsed = phonenumbers.parse("+86" + number)
    if not phonenumbers.is_valid_number(parsed) or phonenumbers.number_type(parsed) not in _MOBILE_TYPES:
        raise ValueError("this is not an allocated mainland mobile number range")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> str:
    """The address trimmed, with its domain lower-cased; syntax only, no DNS look-up."""
    if not isinstance(raw, str):
        raise ValueError("an e-mail address must be a string")
    address = raw.strip()
    if not address:
        raise ValueError("the e-mail address is empty")
    if len(address) > _EMAIL_MAX:
        raise ValueError(f"an e-mail address must not be longer than {_EMAIL_MAX} characters")
    if any(ch.isspace() for ch in address):
        raise ValueError("an e-mail address must not contain spaces")
    if address.count("@") != 1:
        raise ValueError("an e-mail address must contain exactly one @")
    local, domain = address.split("@")
    if not local or len(local) > _LOCAL_MAX or not _LOCAL_PART.fullmatch(local):
        raise ValueError(
            "the part before @ must be 1 to 64 ASCII letters, digits or symbols such as . _ + - "
            "(no leading, trailing or double dot)"
        )
    domain = unicodedata.normalize("NFC", domain).lower()
    _check_domain(domain)
    return f"{local}@{domain}"


def _check_domain(domain: str) -> None:
    labels = domain.split(".")
    if len(labels) < 2:
        raise ValueError("the domain after @ needs a dot, e.g. example.com")
    for label in labels:
        if not label:
            raise ValueError("the domain after @ has an empty part (two dots in a row, or a dot at an end)")
        try:
            # IDN labels (例子.中国) are checked in their ASCII (punycode) form.
            ascii_label = label if label.isascii() else label.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"the domain label {label!r} is not a valid internationalised name") from None
        if not _DNS_LABEL.fullmatch(ascii_label):
            raise ValueError(
                f"the domain label {label!r} must be 1 to 63 letters, digits or hyphens, "
                "not starting or ending with a hyphen"
            )
    if labels[-1].isdigit():
        raise ValueError("the domain after @ must end in a name, not a number")


def mask_phone(phone: str) -> str:
    """'+8613800138000' → '+86138****8000'; anything that is not a full number is hidden entirely."""
    prefix = "+86" if phone.startswith("+86") else ""
    digits = phone[len(prefix):]
    if len(digits) < 11:
        return prefix + "****"
    return f"{prefix}{digits[:3]}****{digits[-4:]}"


def mask_email(email: str) -> str:
    """'alice@example.com' → 'a***@example.com'."""
    local, at, domain = email.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"
