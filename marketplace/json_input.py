"""JSON from outside, held to what every database here can store.

PostgreSQL's text and jsonb cannot hold U+0000; a NUL anywhere in a request (a
string, a key) would fail deep in a write as a server error. It is refused at the
door instead, on every surface, with that surface's own error.
"""
from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

NUL_MESSAGE = "the request holds a NUL character (U+0000), which cannot be stored"


def contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if contains_nul(data):
            raise ParseError(NUL_MESSAGE)
        return data
