"""JSON request bodies on the REST API: bounded before they are parsed, storable after.

The checks are ``wire.bounded_json``'s, shared by every surface (the gateway, the node
socket, the agent); a refusal here carries the status the problem shape answers with.
"""
from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from wire.bounded_json import TOO_LARGE, UNSTORABLE, JsonRejected, loads_bounded


class JsonBodyRefused(ParseError):
    """A body the API will not parse or cannot store; ``status`` is what it answers."""

    def __init__(self, rejected: JsonRejected) -> None:
        super().__init__(str(rejected))
        self.reason = rejected.code
        self.status = {TOO_LARGE: 413, UNSTORABLE: 422}.get(rejected.code, 400)


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        # one byte past the limit is enough to know: a chunked body has no length to check first
        raw = stream.read(limit + 1)
        try:
            return loads_bounded(raw, max_bytes=limit)
        except JsonRejected as exc:
            raise JsonBodyRefused(exc) from None
