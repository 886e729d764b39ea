"""Wei amounts live in ``marketplace.fields`` (nodes and jobs need them too); named here for
the migrations that were written against this path and for billing's own imports."""
from marketplace.fields import WeiField, wei_total

__all__ = ["WeiField", "wei_total"]
