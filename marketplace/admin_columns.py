"""Compact list columns for the staff console, so that a list's columns fit a 1280 px screen:
a time as ``2026-12-01 20:52`` (the seconds and the zone on hover), a related row by its name."""
from __future__ import annotations

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html


def short_time(value) -> str:
    if value is None:
        return "–"
    local = timezone.localtime(value)
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(),
                       local.strftime("%Y-%m-%d %H:%M:%S %Z"), local.strftime("%Y-%m-%d %H:%M"))


def time_column(field: str, description: str):
    """A list column showing the model's datetime ``field`` in short, sortable by it."""
    @admin.display(description=description, ordering=field)
    def column(self, obj):
        return short_time(getattr(obj, field))
    return column


def name_column(field: str, description: str):
    """A list column showing the related row in ``field`` by its name alone, sortable by it."""
    @admin.display(description=description, ordering=f"{field}__name")
    def column(self, obj):
        related = getattr(obj, field)
        return related.name if related is not None else "–"
    return column
