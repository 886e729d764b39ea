"""Template filters for money and time as people read them."""
from __future__ import annotations

from decimal import Decimal

from django import template
from django.utils.html import format_html

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
def memory_mib(mib) -> str:
    """Memory in MiB as people read it: "812 MiB", "79.6 GiB"."""
    return f"{mib} MiB" if mib < 1024 else f"{mib / 1024:.1f} GiB"


@register.filter
def pretty_json(value) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


WEI_PER_GWEI = Decimal(10) ** 9
SIGNIFICANT = 4


def _significant(value: Decimal) -> str:
    rounded = value.quantize(Decimal(1).scaleb(value.adjusted() - SIGNIFICANT + 1))
    text = f"{rounded:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def readable_wei(wei) -> str:
    """An amount as people read it: ether to four significant digits, gwei below a thousandth
    of an ether, wei below a gwei (the exact wei goes in a title beside it: ``wei`` below)."""
    amount = int(wei)
    if amount == 0:
        return "0 ETH"
    if abs(amount) >= 10**15:
        return f"{_significant(Decimal(amount) / WEI_PER_ETHER)} ETH"
    if abs(amount) >= 10**9:
        return f"{_significant(Decimal(amount) / WEI_PER_GWEI)} gwei"
    return f"{amount} wei"


@register.simple_tag
def wei(amount):
    """``{% wei amount %}``: the readable amount, with the exact wei on hover."""
    try:
        return format_html('<span title="{} wei">{}</span>', int(amount), readable_wei(amount))
    except (TypeError, ValueError):
        return "–"
