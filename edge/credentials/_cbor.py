"""Strict CBOR decoding shared by the payload parsers.

cbor2.loads ignores bytes after the first item; a payload with a tail is a payload
someone edited, so it is refused here along with anything over the size cap.
"""

from __future__ import annotations

import io

import cbor2


class CborRejected(ValueError):
    pass


def strict_loads(data: bytes, max_len: int = 16384):
    if not isinstance(data, bytes | bytearray):
        raise CborRejected("not bytes")
    if len(data) > max_len:
        raise CborRejected(f"{len(data)} bytes exceeds the cap of {max_len}")
    fp = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(fp).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError, MemoryError,
            EOFError, LookupError) as err:
        raise CborRejected(f"invalid CBOR: {type(err).__name__}") from None
    if fp.tell() != len(data):
        raise CborRejected("trailing bytes after the CBOR item")
    return value
