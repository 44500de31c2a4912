"""Payload bytes -> text, without ever altering the payload silently.

zxing-cpp decodes the text itself (it honours ECI designators); this guess is for the
bytes pyzbar returns in binary mode. QR byte mode has no declared charset unless an
ECI is present, and real codes are UTF-8, Shift_JIS (Japanese phones) or Latin-1.
"""

from __future__ import annotations

# Shift_JIS is tried before Latin-1 because Latin-1 accepts any byte string and would
# turn Japanese payloads into mojibake; a UTF-8 payload is valid UTF-8 and wins first.
_CANDIDATES = ("utf-8", "shift_jis")


def bytes_to_text(raw: bytes) -> str:
    """The most likely text of a QR byte payload (UTF-8, then Shift_JIS, then Latin-1)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark is not part of the text
    for encoding in _CANDIDATES:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")  # total: every byte maps to one character
