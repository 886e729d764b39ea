"""Errors of the node-facing surface, in the /v1 problem shape."""
from marketplace.errors import ApiError


class EnrollmentRefused(ApiError):
    status = 403
    code = "enrollment_refused"


class NodeAuthenticationFailed(ApiError):
    status = 401
    code = "node_unauthorized"


class NodeRequestInvalid(ApiError):
    status = 422
    code = "validation_error"
