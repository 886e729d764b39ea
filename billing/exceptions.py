"""The money domain's errors, rendered once in the /v1 problem shape."""
from marketplace.errors import ApiError


class PricingError(ApiError):
    status = 422
    code = "pricing_error"


class InsufficientFunds(ApiError):
    status = 402
    code = "insufficient_balance"


class SpendCapExceeded(ApiError):
    status = 402
    code = "spend_cap_exceeded"


class KeyBudgetExceeded(ApiError):
    status = 402
    code = "key_budget_exceeded"


class PriceAboveMaximum(ApiError):
    status = 402
    code = "price_above_max"


class AlreadyPosted(Exception):
    """A ledger posting with this key exists: the movement happened once already."""


class ConcurrentJobLimit(ApiError):
    """The customer, or the API key, has as many jobs with an open bill as it may."""

    status = 429
    code = "concurrent_job_limit"


class WithdrawalRefused(ApiError):
    status = 422
    code = "withdrawal_refused"


class WithdrawalDecided(ApiError):
    status = 409
    code = "withdrawal_decided"
