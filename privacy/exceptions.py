"""The private-inference surface's errors, in the /v1 problem shape with the B3IQ codes."""
from marketplace.errors import ApiError


class InvalidEncryptedRequest(ApiError):
    status = 400
    code = "invalid_encrypted_request"


class UnknownKeyId(ApiError):
    status = 400
    code = "unknown_key_id"


class ExpiredRequest(ApiError):
    status = 400
    code = "expired_request"


class NoHealthyCandidates(ApiError):
    status = 503
    code = "no_healthy_candidates"


class PrivateJobConflict(ApiError):
    status = 409
    code = "job_id_conflict"


class PrivateJobNotFound(ApiError):
    status = 404
    code = "job_not_found"
