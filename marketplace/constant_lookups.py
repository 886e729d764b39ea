"""Filters on a constant of the code, written into the SQL: ``status__is=JobStatus.QUEUED``,
``status__is_in=(...)``.

Why: a statement a connection runs often is prepared, and after a few runs PostgreSQL
plans it once for any value of its parameters (a generic plan). For ``status = $1`` that
plan cannot know that "queued" is a handful of rows among a history of millions of
"completed" ones, and chose to scan the table: with 100,000 finished jobs, "is a job
waiting?" took 12 ms instead of a few microseconds (``bench/dispatch.py --history``).
With the value in the SQL text, every plan knows it, and the partial indexes whose
predicate names it (``jobs.models.Job.Meta.indexes``) are used whatever the history.

Only constants of the code belong here (statuses, kinds), never a value a caller sent:
a value that is not a short plain word is refused.
"""
from __future__ import annotations

import re

from django.db.models import CharField, Lookup

_PLAIN_WORD = re.compile(r"[A-Za-z0-9_]{1,40}")


def _literal(value) -> str:
    text = str(value)
    if not _PLAIN_WORD.fullmatch(text):
        raise ValueError(f"{text!r} is not a constant that may be written into SQL")
    return f"'{text}'"


class _Constant(Lookup):
    prepare_rhs = False  # the value goes into the text, not through the field's adaptation


@CharField.register_lookup
class Is(_Constant):
    lookup_name = "is"

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} = {_literal(self.rhs)}", params


@CharField.register_lookup
class IsIn(_Constant):
    lookup_name = "is_in"

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        values = sorted(self.rhs)
        if not values:
            raise ValueError("is_in needs at least one value")
        return f"{lhs} IN ({', '.join(_literal(v) for v in values)})", params


def sql_in(values) -> str:
    """``IN ('a', 'b')`` for hand-written statements (``marketplace.rows``), the same way."""
    return f"IN ({', '.join(_literal(v) for v in sorted(values))})"


def sql_equals(value) -> str:
    return f"= {_literal(value)}"
