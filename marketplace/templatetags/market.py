"""Template filters for money and time as people read them."""
from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()

WEI_PER_ETHER = Decimal(10) ** 18


@register.filter
def ether(wei) -> str:
    """Wei as ether, exact to the wei but without trailing zeros: 1500000000000000 → "0.0015"."""
    try:
        value = Decimal(int(wei)) / WEI_PER_ETHER
    except (TypeError, ValueError):
        return ""
    text = f"{value:.18f}".rstrip("0").rstrip(".")
    return text or "0"


@register.filter
def percent(fraction) -> str:
    return "–" if fraction is None else f"{fraction * 100:.0f}%"


@register.filter
def pretty_json(value) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
