"""Times as every API answer writes them: ISO 8601 in UTC with a ``Z``."""
from __future__ import annotations


def iso_time(value):
    return value.isoformat().replace("+00:00", "Z") if value else None
