"""Amounts of wei, exact in every database: NUMERIC(78,0) on PostgreSQL, text on SQLite.

SQLite has no exact type past 64-bit integers (NUMERIC turns 10**21 into a float),
so there the digits are kept as text and sums are made in Python (``wei_total``).
"""
from __future__ import annotations

from decimal import Decimal

from django.db import connections, models
from django.db.models import Sum


class WeiField(models.DecimalField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 78)
        kwargs.setdefault("decimal_places", 0)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("max_digits", None)
        kwargs.pop("decimal_places", None)
        return name, path, args, kwargs

    def get_internal_type(self):
        # not "DecimalField": SQLite's decimal converter goes through a 15-digit float
        return "WeiField"

    def db_type(self, connection):
        return "text" if connection.vendor == "sqlite" else f"numeric({self.max_digits}, 0)"

    def get_db_prep_value(self, value, connection, prepared=False):
        value = self.get_prep_value(value) if not prepared else value
        if value is None or hasattr(value, "resolve_expression"):
            return value
        integer = int(Decimal(value))
        return str(integer) if connection.vendor == "sqlite" else Decimal(integer)

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return Decimal(str(value)) if not isinstance(value, Decimal) else value


def wei_total(queryset, field: str) -> int:
    """The exact sum of a wei column over ``queryset``."""
    if connections[queryset.db].vendor == "sqlite":
        return sum(int(value) for value in queryset.values_list(field, flat=True) if value is not None)
    return int(queryset.aggregate(total=Sum(field))["total"] or 0)
