"""The gateway's one error family, in Infernet's ``{"error", "params"}`` shape."""
from __future__ import annotations

from django.http import JsonResponse


class InfernetError(Exception):
    def __init__(self, error: str, status: int = 400, **params) -> None:
        super().__init__(error)
        self.error, self.status, self.params = error, status, params

    def as_body(self) -> dict:
        return {"error": self.error, **({"params": self.params} if self.params else {})}

    def response(self) -> JsonResponse:
        response = JsonResponse(self.as_body(), status=self.status)
        if self.status == 429 and "retry_after" in self.params:
            response["Retry-After"] = str(self.params["retry_after"])
        return response
