# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Opaque pagination tokens shared by the product handlers.

Tokens encode the offset and a fingerprint of the query, so a token reused with different filters
is refused like the real services do, instead of silently returning a shifted page.
"""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Sequence, TypeVar

T = TypeVar('T')


class BadToken(ValueError):
    """The token was not issued for this query."""


def fingerprint(query: Any) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_token(offset: int, query: Any) -> str:
    raw = json.dumps({'o': offset, 'q': fingerprint(query)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip('=')


def read_token(token: str, query: Any) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + '=' * (-len(token) % 4)))
        offset = int(data['o'])
    except (ValueError, KeyError, TypeError) as exc:
        raise BadToken(f'invalid token {token!r}') from exc
    if data.get('q') != fingerprint(query) or offset < 0:
        raise BadToken(f'token {token!r} was issued for a different query')
    return offset


def page(items: Sequence[T], token: str | None, size: int, query: Any) -> tuple[list[T], str | None]:
    """One page of ``items`` from ``token`` (None: the start) and the token of the next page, if any."""
    offset = read_token(token, query) if token else 0
    chunk = list(items[offset:offset + size])
    nxt = make_token(offset + size, query) if offset + size < len(items) else None
    return chunk, nxt
