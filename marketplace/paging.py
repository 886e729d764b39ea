"""Keyset pages for every list the API serves: newest first, by primary key, stable while rows arrive.

A cursor is the last key of a page, opaque to clients; a cursor or limit the API did
not give out is a 400 ``invalid_query`` in the problem shape.
"""
from __future__ import annotations

import base64

from marketplace.errors import ApiError

MAX_LIMIT = 100


class InvalidQuery(ApiError):
    status = 400
    code = "invalid_query"


def encode_cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(str(pk).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise InvalidQuery("cursor is not one this API gave out") from None


def page_limit(request, default: int = 20) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)
