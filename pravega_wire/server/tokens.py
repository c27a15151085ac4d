"""Delegation tokens of the embedded cluster: the controller issues them, the segment stores
check them.

A token is an HS256 JWT (three base64url parts: header, body, signature) signed with the
controller's key; its body names the stream it grants (``scope``, ``stream``) and its expiry
(``exp``, unix seconds), as Pravega's ``JwtTokenProviderImpl`` reads it (docs/controller.md §4.6).
The body's JSON is written so that its base64 is the same in the standard and the URL-safe
alphabet: the Rust client decodes it with the standard one.

Nothing here needs gRPC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["TokenCheck", "issue_token", "verify_token"]

#: What :func:`verify_token` finds.
TokenCheck = Literal["ok", "expired", "invalid"]

_JWT_HEADER = {"alg": "HS256", "typ": "JWT"}

#: Characters escaped in a token body so that its base64 is the same in the standard and the
#: URL-safe alphabet (only ``>``, ``?`` and ``~`` can produce ``+``/``/`` or ``-``/``_`` from
#: ASCII JSON). The Rust client decodes the body with the *standard* alphabet.
_JSON_BASE64_SAFE = str.maketrans({">": "\\u003e", "?": "\\u003f", "~": "\\u007e"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    """Strict base64url decoding of an unpadded JWT part (``binascii.Error`` if malformed)."""
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)


def _token_body(claims: Mapping[str, Any]) -> bytes:
    """JSON of ``claims`` whose base64 is alphabet-neutral and needs no padding."""
    text = json.dumps(claims, separators=(",", ":"), ensure_ascii=True).translate(
        _JSON_BASE64_SAFE)
    return (text + " " * (-len(text) % 3)).encode("ascii")


def issue_token(key: bytes, scope: str, stream: str, ttl: float, now: float) -> str:
    """A delegation token for ``scope/stream``, signed with ``key``, issued at ``now`` (unix
    seconds) and valid for ``ttl`` seconds (at least one): an HS256 JWT whose body holds ``sub``,
    ``aud``, ``scope``, ``stream``, ``iat`` and ``exp``."""
    issued = int(now)
    claims = {"sub": f"{scope}/{stream}", "aud": "segmentstore", "scope": scope,
              "stream": stream, "iat": issued, "exp": issued + max(1, int(ttl))}
    signing_input = _b64url(_token_body(_JWT_HEADER)) + "." + _b64url(_token_body(claims))
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def verify_token(token: str, key: bytes, now: float | None = None, *,
                 segment: str | None = None) -> TokenCheck:
    """Check a delegation token issued (by :func:`issue_token`, e.g. for an
    :class:`~pravega_wire.server.controller.EmbeddedController`) with ``key``.

    Returns ``"ok"``, ``"expired"`` (well formed and correctly signed, but ``exp`` is not after
    ``now``, default the current time), or ``"invalid"`` (anything else: not three base64url
    parts, a bad signature, a body that is not a JSON object with an integer ``exp``). With
    ``segment``, a token also counts as invalid unless it was issued for that segment's stream
    (the segment's name starts with ``<scope>/<stream>/``; transaction, transient and table
    segments of the stream included).

    A segment store maps ``"invalid"`` to AuthTokenCheckFailed with TOKEN_CHECK_FAILED and
    ``"expired"`` to TOKEN_EXPIRED; it should accept ``""`` only when auth is off.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return "invalid"
    header, body, signature = parts
    try:
        expected = hmac.new(key, f"{header}.{body}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64url_decode(signature)):
            return "invalid"
        claims = json.loads(_b64url_decode(body))
        header_claims = json.loads(_b64url_decode(header))
    except (UnicodeError, binascii.Error, ValueError):
        return "invalid"
    if not isinstance(claims, dict) or not isinstance(header_claims, dict):
        return "invalid"
    expiry = claims.get("exp")
    if header_claims.get("alg") != "HS256" or type(expiry) is not int:
        return "invalid"
    if segment is not None:
        scope, stream = claims.get("scope"), claims.get("stream")
        if (not isinstance(scope, str) or not isinstance(stream, str)
                or not segment.startswith(f"{scope}/{stream}/")):
            return "invalid"
    return "ok" if expiry > (time.time() if now is None else now) else "expired"
