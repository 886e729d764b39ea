"""The jobs domain's errors, rendered once in the /v1 problem shape."""
from marketplace.errors import ApiError
from marketplace.paging import InvalidQuery  # noqa: F401  (a query the jobs API cannot answer)


class JobNotFound(ApiError):
    status = 404
    code = "job_not_found"


class JobStateConflict(ApiError):
    status = 409
    code = "job_state_conflict"


class IdempotencyConflict(ApiError):
    status = 409
    code = "idempotency_key_reused"


class UnknownModel(ApiError):
    status = 422
    code = "unknown_model"


class QuotaExceeded(ApiError):
    status = 429
    code = "concurrent_job_limit"
