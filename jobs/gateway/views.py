"""Infernet's node REST API v1.4, served by the marketplace for one API key.

Jobs submitted here are marketplace jobs like any other: the same dispatch,
billing, quotas and rate limits. Every answer, errors included, is JSON in
Infernet's shapes, since the published client reads the body before the status.
"""
from __future__ import annotations

import logging
from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from jobs.gateway.access import gateway_principal, rate_limited
from jobs.gateway.errors import InfernetError
from jobs.gateway.results import job_result
from jobs.gateway.submit import infernet_checked, job_request_submit, parse_body, parse_job_request
from jobs.models import ACTIVE, Job
from marketplace.authentication import CustomerPrincipal
from marketplace.errors import DATABASE_UNAVAILABLE
from nodes.agent import AGENT_VERSION
from nodes.agent.guards import flag_value
from nodes.selectors import containers_offered

log = logging.getLogger(__name__)


def gateway_view(*methods: str):
    """JSON errors in Infernet's shape, the key in the path checked, the method checked."""

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapped(request, api_key: str, *args, **kwargs):
            try:
                if request.method not in methods:
                    raise InfernetError("Method not allowed", status=405, method=request.method)
                principal = gateway_principal(api_key)
                return view(request, principal, *args, **kwargs)
            except InfernetError as error:
                return error.response()
            except DATABASE_UNAVAILABLE:
                log.error("the database is unavailable on %s %s", request.method, request.path)
                return InfernetError("Service unavailable", status=503).response()
            except Exception:  # Infernet's clients read JSON before the status: never an HTML page
                log.exception("unhandled error on %s %s", request.method, request.path)
                return InfernetError("Internal server error", status=500).response()

        return wrapped

    return decorator


def _body(request):
    try:
        raw = request.body
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raise InfernetError("Request body too large", status=413, limit=limit) from None
    return parse_body(raw)


def _flag(request, name: str) -> bool | None:
    return infernet_checked(flag_value, name, request.GET.get(name))


@gateway_view("GET")
def health(request, principal):
    return JsonResponse({"status": "healthy"})


@gateway_view("GET")
def info(request, principal: CustomerPrincipal):
    from jobs.subscriptions.selectors import subscriptions_active_count

    pending = Job.objects.filter(api_key=principal.api_key, status__is_in=ACTIVE).count()
    return JsonResponse({
        "version": AGENT_VERSION,
        "containers": [
            {"id": container, "external": True, "image": "", "description": f"served by {len(nodes)} node(s)"}
            for container, nodes in sorted(containers_offered().items())
        ],
        "pending": {"offchain": pending, "onchain": subscriptions_active_count(customer=principal.customer)},
        # delegated subscriptions are accepted and run; their results go to a delivery adapter
        "chain": {"enabled": True, "address": ""},
    })


@gateway_view("GET")
def resources(request, principal):
    offered = containers_offered()
    model_id = request.GET.get("model_id")
    if model_id is not None:
        if not model_id.strip():
            raise InfernetError("model_id must not be empty")
        return JsonResponse({
            container: {"supported": True}
            if any(node.model_map.get(model_id) == container for node in nodes)
            else {"supported": False, "error": f"model {model_id} is not served by container {container}"}
            for container, nodes in sorted(offered.items())
        })
    return JsonResponse({
        container: {
            "service_id": container,
            "compute_capability": [{
                "id": "ml",
                "type": "marketplace",
                "task": [],
                "models": [{"owner": "", "name": m}
                           for m in sorted({m for n in nodes for m, c in n.model_map.items() if c == container})],
                "cached_models": [],
                "inference_engine": "marketplace",
                "inference_engine_version": AGENT_VERSION,
            }],
            "hardware_capabilities": nodes[0].hardware.get("capabilities", []),
        }
        for container, nodes in sorted(offered.items())
    })


@gateway_view("GET", "POST")
def jobs(request, principal: CustomerPrincipal):
    if request.method == "POST":
        return JsonResponse(job_request_submit(principal, _body(request)))
    ids = [i for i in request.GET.getlist("id") if "\x00" not in i]  # a NUL names no job
    if not ids:
        pending = _flag(request, "pending")
        mine = Job.objects.filter(api_key=principal.api_key).order_by("-id")
        if pending is True:
            mine = mine.filter(status__is_in=ACTIVE)
        elif pending is False:
            mine = mine.exclude(status__is_in=ACTIVE)
        return JsonResponse(list(mine.values_list("public_id", flat=True)[:1000]), safe=False)
    intermediate = bool(_flag(request, "intermediate"))
    found = {job.public_id: job for job in Job.objects.filter(customer=principal.customer, public_id__in=ids)}
    return JsonResponse([job_result(found[i], intermediate) for i in ids if i in found], safe=False)


@gateway_view("POST")
def jobs_batch(request, principal: CustomerPrincipal):
    body = _body(request)
    if not isinstance(body, list):
        raise InfernetError("Expected a list")
    answers = []
    refused = None
    for index, item in enumerate(body):
        # each item is a request against the key's rate limit, counted before it is looked at
        # (the request itself counted the first); once one is over, the rest are refused uncounted
        if refused is None and index:
            refused = rate_limited(principal.api_key)
        if refused is not None:
            answers.append(refused.as_body())
            continue
        try:
            answers.append(job_request_submit(principal, item))
        except InfernetError as error:  # one bad item never fails the batch
            answers.append(error.as_body())
    return JsonResponse(answers, safe=False)


@gateway_view("PUT")
def status(request, principal):
    raise InfernetError("Unauthorized", status=403)  # legacy containers report to their own node only


@gateway_view("GET", "POST", "PUT", "DELETE", "PATCH")
def not_found(request, principal, rest: str = ""):
    raise InfernetError("Not found", status=404, path="/" + rest)


__all__ = ["health", "info", "jobs", "jobs_batch", "not_found", "parse_job_request", "resources", "status"]
