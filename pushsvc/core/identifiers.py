"""Identifiers people type wrong: USCC, mainland mobile numbers, e-mail addresses; and masks for logs.

Every check raises ValueError with an English message meant to be shown next to the field.
"""

from __future__ import annotations

import re
import unicodedata

import email_validator
import phonenumbers
from email_validator import EmailNotValidError, ValidatedEmail, validate_email

# GB 32100-2015: the code alphabet (no I, O, S, V, Z) and the weights of the first 17 positions.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_VALUE = {ch: i for i, ch in enumerate(USCC_ALPHABET)}

_MOBILE_TYPES = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
_SEPARATORS = re.compile(r"[\s-]+")
_NATIONAL_MOBILE = re.compile(r"1[3-9][0-9]{9}")

# Syntax only: no DNS (the core does no I/O); ASCII local parts, unquoted (what our SMTP envelope
# takes: no SMTPUTF8); at most 64 characters before the @ (`strict`).
_SYNTAX_ONLY: dict[str, bool] = {"check_deliverability": False, "allow_smtputf8": False, "strict": True}
# Special-use domains (.invalid, .test, .localhost) are good syntax, and simulators and staging
# systems use them (delivered@simulator.pushsvc.invalid); whether a domain takes mail is not
# ours to judge. email-validator documents emptying this list as the way to allow them.
email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()

_LOCAL_RULE = ("the part before @ must be 1 to 64 ASCII letters, digits or symbols such as . _ + - "
               "(no leading, trailing or double dot)")
_LABEL_RULE = ("each part of the domain after @ must be 1 to 63 letters, digits or hyphens, "
               "not starting or ending with a hyphen")
# (words in email-validator's message, ours), first match wins; anything else breaks _LABEL_RULE.
_DOMAIN_REASONS = (
    ("too long", "an e-mail address must not be longer than 254 characters"),
    ("so many characters", _LABEL_RULE),  # "periods cannot be separated by so many characters"
    ("should have a period", "the domain after @ needs a dot, e.g. example.com"),
    ("period", "the domain after @ has an empty part (two dots in a row, or a dot at an end)"),
    ("top-level domain", "the domain after @ must end in a name, not a number"),
    ("IDNA", "the domain after @ is not a valid internationalised name"),
)


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
    """The address trimmed, its domain lower-cased (an IDN domain keeps the form it was given in:
    Unicode, or ASCII punycode); syntax only, checked by email-validator with no DNS look-up."""
    valid, domain = _validated(raw)
    # An address stored before keeps its spelling: punycode stays punycode.
    return f"{valid.local_part}@{valid.ascii_domain if domain.isascii() else valid.domain}"


def ascii_email(raw: str) -> str:
    """The address as an SMTP envelope and an ASCII header carry it: an IDN domain in punycode."""
    valid, _ = _validated(raw)
    return f"{valid.local_part}@{valid.ascii_domain}"  # the local part is ASCII (no SMTPUTF8)


def _validated(raw: str) -> tuple[ValidatedEmail, str]:
    """email-validator's reading of the address, and its domain as given; ValueError in our words."""
    if not isinstance(raw, str):
        raise ValueError("an e-mail address must be a string")
    address = raw.strip()
    if not address:
        raise ValueError("the e-mail address is empty")
    # The messages people see most, in our words and before the library's more general ones.
    if any(ch.isspace() for ch in address):
        raise ValueError("an e-mail address must not contain spaces")
    if address.count("@") != 1:
        raise ValueError("an e-mail address must contain exactly one @")
    local, _, domain = address.partition("@")
    try:
        return validate_email(address, **_SYNTAX_ONLY), domain
    except EmailNotValidError as exc:
        raise ValueError(_reason(local, str(exc))) from None


def _reason(local: str, said: str) -> str:
    """Our message for what email-validator refused (`said`): the local part's rule if the local
    part alone is refused, else the domain's rule that `said` names."""
    try:
        validate_email(f"{local}@example.com", **_SYNTAX_ONLY)
    except EmailNotValidError:
        return _LOCAL_RULE
    return next((ours for words, ours in _DOMAIN_REASONS if words in said), _LABEL_RULE)


def mask_name(name: str) -> str:
    """张三丰 → 张*丰, 张三 → 张*: enough for the person to recognise, not for others to learn."""
    name = name.strip()
    if len(name) <= 2:
        return name[:1] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


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
