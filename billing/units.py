"""Amounts as the AITBC client API shows them: ether as a JSON number, with the exact wei beside it.

Everything the marketplace stores and moves is integer wei. The reference's
``estimated_cost`` is a number in ether (``0.05``); a float cannot hold every wei
amount exactly, so each such number travels with its exact integer as a decimal
string (``estimated_cost_wei``).
"""
from __future__ import annotations

from decimal import Decimal

WEI_PER_ETHER = 10**18


def ether(wei: int) -> float:
    """``wei`` in ether, the nearest float (exact for amounts a float can hold)."""
    return float(Decimal(int(wei)) / WEI_PER_ETHER)


def estimated_cost_fields(wei: int) -> dict:
    return {"estimated_cost": ether(wei), "estimated_cost_wei": str(int(wei))}
