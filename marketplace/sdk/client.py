"""``MarketplaceClient``: the customer API (jobs, live events, billing) from Python.

Every error the marketplace answers becomes a ``MarketplaceError`` carrying its
status, code and detail. Calls that are safe to repeat are retried on a lost
connection, a 5xx or a 429 (after ``Retry-After``); a submit is made safe to repeat
by an ``Idempotency-Key`` the client makes once and sends with every try, so a
retried submit never makes (or pays for) a second job.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import requests

DEFAULT_URL = "http://127.0.0.1:8000"
FINAL = frozenset({"completed", "failed", "cancelled", "expired"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class MarketplaceError(Exception):
    """The marketplace refused a call, or could not be reached (status None)."""

    def __init__(self, detail: str, *, status: int | None = None, code: str = "", title: str = "") -> None:
        super().__init__(detail)
        self.detail, self.status, self.code, self.title = detail, status, code, title

    def __str__(self) -> str:
        if self.status is None:
            return self.detail
        return f"{self.title or 'error'} (HTTP {self.status}, {self.code}): {self.detail}"


@dataclass(frozen=True)
class Download:
    filename: str
    content_type: str
    content: bytes


def _error_from(response: requests.Response) -> MarketplaceError:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        return MarketplaceError(str(error.get("detail", "")), status=response.status_code,
                                code=str(error.get("code", "")), title=str(error.get("title", "")))
    return MarketplaceError(f"unexpected answer: {response.text[:200]}", status=response.status_code,
                            code="unexpected_response")


class MarketplaceClient:
    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 30,
                 retries: int = 3, backoff_seconds: float = 0.5, session: requests.Session | None = None) -> None:
        self.url = (url or os.environ.get("MARKETPLACE_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("MARKETPLACE_API_KEY") or ""
        if not self.api_key:
            raise MarketplaceError("no API key: pass api_key or set MARKETPLACE_API_KEY", code="no_api_key")
        self.timeout, self.retries, self.backoff_seconds = timeout, retries, backoff_seconds
        self.session = session or requests.Session()

    # --- plumbing -----------------------------------------------------------------

    def _headers(self, extra: dict | None = None) -> dict:
        return {"Authorization": f"Bearer {self.api_key}", **(extra or {})}

    def _request(self, method: str, path: str, *, json_body=None, params=None, headers=None,
                 stream: bool = False) -> requests.Response:
        """One call, retried where repeating it is harmless (every call here is, submit by its key)."""
        last: MarketplaceError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            try:
                response = self.session.request(
                    method, self.url + path, json=json_body, params=params, headers=self._headers(headers),
                    timeout=(self.timeout, None) if stream else self.timeout, stream=stream,
                )
            except requests.RequestException as exc:
                last = MarketplaceError(f"cannot reach the marketplace at {self.url}: {exc}", code="unreachable")
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                last = _error_from(response)
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    time.sleep(min(int(retry_after), 60))
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response
        raise last

    def _get(self, path: str, **params) -> dict:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    # --- jobs -----------------------------------------------------------------------

    def submit(self, *, model: str | None = None, containers: list[str] | None = None, input=None,
               priority: str = "normal", timeout_seconds: int | None = None, requirements: dict | None = None,
               max_price_wei: int | None = None, output_format: str | None = None,
               idempotency_key: str | None = None) -> dict:
        """Submit a job; ``job_id``, ``estimated_cost`` (ether, a number), ``estimated_cost_wei`` (exact), ``estimated_time_seconds``, ``policy_version``."""
        body: dict = {"input": input, "priority": priority}
        if model:
            body["model"] = model
        if containers:
            body["containers"] = containers
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        if requirements:
            body["requirements"] = requirements
        if max_price_wei is not None:
            body["max_price_wei"] = str(max_price_wei)
        if output_format:
            body["output_config"] = {"format": output_format}
        key = idempotency_key or str(uuid.uuid4())
        return self._request("POST", "/v1/jobs", json_body=body, headers={"Idempotency-Key": key}).json()

    def job(self, job_id: str) -> dict:
        return self._get(f"/v1/jobs/{job_id}")

    def jobs(self, *, status: str | None = None, limit: int = 20, cursor: str | None = None) -> dict:
        return self._get("/v1/jobs", status=status, limit=limit, cursor=cursor)

    def history(self, *, start: str | None = None, end: str | None = None, limit: int = 100) -> Iterator[dict]:
        """Every job created between two dates (YYYY-MM-DD), newest first, page after page."""
        cursor = None
        while True:
            page = self._get("/v1/jobs/history", **{"from": start, "to": end, "limit": limit, "cursor": cursor})
            yield from page["jobs"]
            if not page["has_more"]:
                return
            cursor = page["next_cursor"]

    def cancel(self, job_id: str) -> dict:
        return self._request("DELETE", f"/v1/jobs/{job_id}").json()

    def download(self, job_id: str) -> Download:
        response = self._request("GET", f"/v1/jobs/{job_id}/download")
        disposition = response.headers.get("Content-Disposition", "")
        filename = disposition.split("filename=")[-1].strip('"') if "filename=" in disposition else f"{job_id}.json"
        return Download(filename=filename, content_type=response.headers.get("Content-Type", ""),
                        content=response.content)

    def events(self, job_id: str) -> Iterator[dict]:
        """The job's live events (status, progress, output), until its final status."""
        with self._request("GET", f"/v1/jobs/{job_id}/events", stream=True) as response:
            for line in response.iter_lines(decode_unicode=True):
                if line and line.startswith("data: "):
                    event = json.loads(line[6:])
                    yield event
                    if event.get("type") == "status" and event.get("status") in FINAL:
                        return

    def wait(self, job_id: str) -> dict:
        """Follow the job's events to its end; then its full record."""
        for _ in self.events(job_id):
            pass
        return self.job(job_id)

    # --- money ----------------------------------------------------------------------

    def account(self) -> dict:
        return self._get("/v1/billing/account")

    def usage(self, *, start: str | None = None, end: str | None = None) -> dict:
        return self._get("/v1/billing/usage", **{"from": start, "to": end})

    def bill(self, job_id: str) -> dict:
        return self._get(f"/v1/billing/jobs/{job_id}")

    def receipt(self, receipt_hash: str) -> dict:
        return self._get(f"/v1/receipts/{receipt_hash}")

    # --- private inference ------------------------------------------------------------

    def private(self, **options):
        """The end-to-end encrypted surface: a ``privacy.client.PrivateInferenceClient`` on this key."""
        from privacy.client import PrivateInferenceClient

        return PrivateInferenceClient(self.url, self.api_key, session=self.session, **options)
