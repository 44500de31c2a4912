"""Offline credentials: signed passes, trust and status lists, EU DCC, allow-list ids.

The heavy pieces (cryptography, cbor2) load on first use, so importing this package
(e.g. by the CLI registry for `checkgate --help`) stays cheap.
"""

from __future__ import annotations

from checkgate.lazy import lazy_exports

_EXPORTS = {
    "Verifier": "edge.credentials.verifier",
    "TrustList": "edge.credentials.trust",
    "StatusList": "edge.credentials.status",
    "AllowList": "edge.credentials.allowlist",
    "DccTrustStore": "edge.credentials.dcc",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
