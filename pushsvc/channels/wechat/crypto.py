"""The Official Account server's signatures and the message encryption of its "safe mode".

- `signature(token, timestamp, nonce, *more)`: SHA-1 over the values sorted and joined. The
  platform signs every call to our server URL with (token, timestamp, nonce) as `signature`, and
  in safe mode signs the encrypted message with (token, timestamp, nonce, encrypt) as `msg_signature`.
- `MessageCrypto`: AES-256-CBC with the key in EncodingAESKey (43 characters of base64 without
  its `=`), the key's first 16 bytes as IV, PKCS#7 padding to 32 bytes. The plaintext is
  16 random bytes, the message's length (4 bytes, network order), the message, and the appid
  it is for, which a decrypting side checks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AES_KEY_CHARS = 43
_BLOCK = 32  # the platform pads to 32 bytes, not AES's 16
_RANDOM = 16


class BadMessage(Exception):
    """Not an encrypted message of ours: undecodable, badly padded, or for another appid."""


def signature(token: str, *values: str) -> str:
    return hashlib.sha1("".join(sorted((token, *values))).encode("utf-8")).hexdigest()


def signature_valid(expected: str, token: str, *values: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii", "replace"), signature(token, *values).encode("ascii"))


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte key in an EncodingAESKey; ValueError for anything else."""
    if len(encoding_aes_key) != AES_KEY_CHARS:
        raise ValueError(f"must be {AES_KEY_CHARS} characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error:
        raise ValueError("must be base64 (letters, digits, + and /)") from None
    if len(key) != 32:
        raise ValueError("must decode to 32 bytes")
    return key


def _pad(data: bytes) -> bytes:
    n = _BLOCK - len(data) % _BLOCK
    return data + bytes([n]) * n


def _unpad(data: bytes) -> bytes:
    n = data[-1] if data else 0
    if not 1 <= n <= _BLOCK or len(data) < n or data[-n:] != bytes([n]) * n:
        raise BadMessage("bad padding")
    return data[:-n]


class MessageCrypto:
    """`MessageCrypto(encoding_aes_key, appid)`: encrypt and decrypt the platform's messages."""

    def __init__(self, encoding_aes_key: str, appid: str) -> None:
        self._key = aes_key(encoding_aes_key)
        self._appid = appid.encode("utf-8")

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def encrypt(self, message: str) -> str:
        raw = message.encode("utf-8")
        plain = os.urandom(_RANDOM) + struct.pack(">I", len(raw)) + raw + self._appid
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(_pad(plain)) + encryptor.finalize()).decode("ascii")

    def decrypt(self, encrypted: str) -> str:
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise BadMessage("not base64") from None
        if not data or len(data) % 16:
            raise BadMessage("not whole AES blocks")
        decryptor = self._cipher().decryptor()
        plain = _unpad(decryptor.update(data) + decryptor.finalize())
        if len(plain) < _RANDOM + 4:
            raise BadMessage("too short")
        (length,) = struct.unpack(">I", plain[_RANDOM : _RANDOM + 4])
        body, appid = plain[_RANDOM + 4 : _RANDOM + 4 + length], plain[_RANDOM + 4 + length :]
        if len(body) != length or not hmac.compare_digest(appid, self._appid):
            raise BadMessage("not for this account")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadMessage("not UTF-8") from None
