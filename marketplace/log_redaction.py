"""Keep API keys out of the logs: the Infernet gateway carries them in its paths.

Django logs every 4xx and 5xx with the request path (``django.request``), and a
crash's traceback may quote it too; this filter rewrites ``/infernet/<key>/`` in
every record before any handler writes it.
"""
from __future__ import annotations

import logging
import re

_KEY_IN_PATH = re.compile(r"/infernet/[^/\s?\"']+")
REDACTED = "/infernet/<api-key>"


def redact(text: str) -> str:
    return _KEY_IN_PATH.sub(REDACTED, text)


class RedactApiKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/infernet/" in message:
            record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and "/infernet/" in record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
