from marketplace.errors import ApiError


class PricingError(ApiError):
    status = 422
    code = "pricing_error"
