"""The agent's one error family, rendered as Infernet's ``{"error", "params"}``."""
from __future__ import annotations

from typing import Any


class AgentError(Exception):
    """A request the agent refuses; ``status`` is the HTTP status it is answered with."""

    status = 400

    def __init__(self, error: str, *, http_status: int | None = None, **params: Any) -> None:
        super().__init__(error)
        self.error = error
        if http_status is not None:
            self.status = http_status
        self.params = params

    def as_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error}
        if self.params:
            body["params"] = self.params
        return body


class BadRequest(AgentError):
    status = 400


class Forbidden(AgentError):
    status = 403


class NotFound(AgentError):
    status = 404


class RateLimited(AgentError):
    status = 429


class AtCapacity(AgentError):
    """The node holds as many pending jobs as it is configured to; try later."""

    status = 503


class ContainerFailure(Exception):
    """A container could not produce an output; becomes the job's ``ContainerError``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
