"""The customer dashboard (/dashboard/): balance, jobs (live), a job's page, submitting, keys, usage."""
from __future__ import annotations

import csv
import json
from datetime import timedelta
from http import HTTPStatus
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.exceptions import InsufficientFunds
from billing.ledger import account_for_customer
from jobs.exceptions import JobNotFound
from jobs.catalogue import catalogue
from jobs.models import ACTIVE, BillingStatus, Job, JobStatus, Priority
from jobs.selectors import job_get_for_customer, jobs_of_customer, jobs_page, usage_by_day
from jobs.services.lifecycle import job_cancel
from jobs.services.submit import JobSpec, job_quote, job_submit
from marketplace.authentication import CustomerPrincipal
from marketplace.errors import ApiError
from marketplace.models import ApiKey
from marketplace.paging import InvalidQuery
from marketplace.services import api_key_create, api_key_revoke
from marketplace.templatetags.market import readable_wei
from marketplace.web.access import customer_required
from marketplace.web.charts import daily_wei_chart
from marketplace.web.forms import ApiKeyCreateForm, JobFilterForm, JobSubmitForm
from nodes.selectors import model_runs_online

CHART_DAYS = 30
JOBS_PER_PAGE = 25
# a job made on the dashboard may run this long
FORM_TIMEOUT_SECONDS = 3600


@require_GET
@customer_required
def dashboard(request, customer):
    account = account_for_customer(customer)
    today = timezone.now().date()
    start = timezone.now() - timedelta(days=CHART_DAYS)
    spent = {day["date"]: int(day["charged_wei"]) for day in usage_by_day(customer=customer, start=start, end=None)}
    form = JobFilterForm(request.GET)
    filters = {name: value for name, value in form.cleaned_data.items() if value} if form.is_valid() else {}
    jobs = jobs_of_customer(customer=customer, **filters)
    cursor = request.GET.get("cursor") or None
    try:
        page, total, older = jobs_page(queryset=jobs, limit=JOBS_PER_PAGE, cursor=cursor)
    except InvalidQuery:  # a cursor we never gave out: the first page
        cursor = None
        page, total, older = jobs_page(queryset=jobs, limit=JOBS_PER_PAGE, cursor=None)
    return render(request, "web/dashboard.html", {
        "customer": customer,
        "account": account,
        "jobs": page,
        "jobs_total": total,
        "filter_form": form,
        "filtered": bool(filters),
        # new jobs appear live on the newest, unfiltered page only: elsewhere they would not belong
        "live_rows": not filters and cursor is None,
        "older_url": f"?{urlencode({**filters, 'cursor': older})}" if older else None,
        "newest_url": f"?{urlencode(filters)}" if cursor else None,
        "chart": daily_wei_chart(title="Spend per day", days=CHART_DAYS, totals=spent, today=today),
        # until a first job has completed
        "getting_started": not Job.objects.filter(customer=customer, status=JobStatus.COMPLETED).exists(),
        "has_key": ApiKey.objects.filter(customer=customer, revoked_at__isnull=True).exists(),
        "funding_help": settings.FUNDING_HELP,
        "base_url": request.build_absolute_uri("/"),
    })


def _customer_job(customer, job_id: str) -> Job:
    try:
        return job_get_for_customer(customer=customer, job_id=job_id)
    except JobNotFound:
        raise Http404("no such job") from None


_BILLING_NOTES = {
    BillingStatus.NONE: "nothing reserved",
    BillingStatus.RESERVED: "reserved until it ends",
    BillingStatus.SETTLED: "settled",
    BillingStatus.RELEASED: "released: nothing charged",
}


def _failure(job: Job) -> str:
    """Why a job did not complete, said once on its page (the event and the attempt that say
    the same are not repeated)."""
    if job.status in (JobStatus.FAILED, JobStatus.EXPIRED):
        return job.error or job.status_reason
    return ""


@require_GET
@customer_required
def job_page(request, customer, job_id: str):
    job = _customer_job(customer, job_id)
    return render(request, "web/job.html", {
        "customer": customer,
        "job": job,
        "active": job.status in ACTIVE,
        "failure": _failure(job),
        "billing_note": _BILLING_NOTES.get(job.billing_status, job.billing_status),
        "events": job.events.all(),
        "attempts": job.attempts.select_related("node"),
    })


@require_POST
@customer_required
def job_cancel_view(request, customer, job_id: str):
    job = _customer_job(customer, job_id)
    try:
        job_cancel(job=job)
    except ApiError as error:
        messages.error(request, error.detail)  # it finished meanwhile: the page says how
    return redirect("dashboard-job", job_id=job.public_id)


@require_POST
@customer_required
def job_rerun(request, customer, job_id: str):
    """The same job again, as a new job: same model or containers, input, requirements, limits."""
    job = _customer_job(customer, job_id)
    if job.is_private:
        # sealed to one node's key by the customer's client: only that client can send it again
        messages.error(request, "A private job is run again from your private-inference client.")
        return redirect("dashboard-job", job_id=job.public_id)
    spec = JobSpec(
        model=job.model, containers=list(job.containers), input=job.input, output_config=job.output_config,
        gpu_type=job.gpu_type, gpu_count=job.gpu_count, min_vram_gb=job.min_vram_gb, priority=job.priority,
        timeout_seconds=job.timeout_seconds, max_price_wei=job.max_price_wei,
    )
    try:
        submission = job_submit(principal=CustomerPrincipal(customer=customer, api_key=None), spec=spec)
    except ApiError as error:
        messages.error(request, f"It could not run again: {error.detail}")
        return redirect("dashboard-job", job_id=job.public_id)
    return redirect("dashboard-job", job_id=submission.job.public_id)


@require_GET
@customer_required
def job_result_download(request, customer, job_id: str):
    job = _customer_job(customer, job_id)
    if job.is_private or job.result is None:
        raise Http404("this job has no result to download")
    response = HttpResponse(json.dumps(job.result, indent=2, ensure_ascii=False) + "\n",
                            content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{job.public_id}-result.json"'
    return response


@require_http_methods(["GET", "POST"])
@customer_required
def job_new(request, customer):
    """The playground: pick a model (its description and an example input come with it), see
    the quote, run it, and watch it on the job's page."""
    models = catalogue()
    chosen = request.GET.get("model") if any(e.model == request.GET.get("model") for e in models) else None
    chosen = chosen or (models[0].model if models else None)
    example = next((e.example_text for e in models if e.model == chosen), "")
    form = JobSubmitForm(request.POST or None, models=models,
                         initial={"model": chosen, "input": example})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        spec = _form_spec(model=data["model"], job_input=data["input"], priority=data["priority"],
                          max_price_wei=form.max_price_wei())
        try:
            submission = job_submit(principal=CustomerPrincipal(customer=customer, api_key=None), spec=spec)
        except ApiError as error:
            form.add_error(None, error.detail)  # the API's own words: funds, quota, price
            if isinstance(error, InsufficientFunds):
                form.add_error(None, settings.FUNDING_HELP)  # and the next step
        else:
            return redirect("dashboard-job", job_id=submission.job.public_id)
    return render(request, "web/job_new.html", {"customer": customer, "form": form, "models": models})


def _problem(status: int, code: str, detail: str) -> JsonResponse:
    """An error in the API's shape, for the dashboard's own JSON."""
    return JsonResponse({"error": {"status": status, "title": HTTPStatus(status).phrase, "detail": detail,
                                   "code": code}}, status=status)


def _form_spec(*, model: str, job_input, priority: str, max_price_wei: int | None = None) -> JobSpec:
    return JobSpec(
        model=model, containers=[], input=job_input,
        output_config={"destination": "local", "format": "json"}, gpu_type="", gpu_count=0, min_vram_gb=0,
        priority=priority, timeout_seconds=FORM_TIMEOUT_SECONDS, max_price_wei=max_price_wei,
    )


@require_GET
@customer_required
def models_page(request, customer):
    return render(request, "web/models.html", {"customer": customer, "models": catalogue()})


@require_GET
@customer_required
def model_quote(request, customer, model: str):
    """The quote a job of this model gets now, before it is submitted (the playground's)."""
    priority = request.GET.get("priority", Priority.NORMAL)
    if priority not in Priority.values:
        return _problem(400, "invalid_query", f"priority must be one of {', '.join(Priority.values)}")
    if not model_runs_online(model=model):
        return _problem(404, "model_not_found", f"no online node runs {model!r} now")
    quote = job_quote(_form_spec(model=model, job_input="", priority=priority)).quote
    return JsonResponse({
        "model": model, "priority": priority,
        "price_wei": str(quote.price_wei), "price": readable_wei(quote.price_wei),
        "expected_seconds": quote.expected_seconds,
        "worst_case_wei": str(quote.worst_case_wei), "worst_case": readable_wei(quote.worst_case_wei),
    })


ISSUED_KEY = "dashboard-issued-api-key"


@require_http_methods(["GET", "POST"])
@customer_required
def api_keys(request, customer):
    form = ApiKeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        made = api_key_create(customer=customer, name=form.cleaned_data["name"] or "made on the dashboard")
        # post, redirect, get: a reload does not make another key. The secret rides the
        # server-side session to the next page only, which takes it out: shown once, then
        # stored nowhere but as its hash
        request.session[ISSUED_KEY] = made.secret
        return redirect("dashboard-keys")
    issued = request.session.pop(ISSUED_KEY, None)
    keys = ApiKey.objects.filter(customer=customer).order_by("-created_at")
    return render(request, "web/api_keys.html", {"customer": customer, "form": form, "keys": keys,
                                                 "issued_secret": issued,
                                                 "base_url": request.build_absolute_uri("/")})


@require_POST
@customer_required
def api_key_revoke_view(request, customer, key_id: int):
    api_key = ApiKey.objects.filter(pk=key_id, customer=customer).first()
    if api_key is None:
        raise Http404("no such key")
    api_key_revoke(api_key=api_key)
    return redirect("dashboard-keys")


USAGE_COLUMNS = ("job_id", "created_at", "completed_at", "model", "private", "status", "billing_status",
                 "policy_version", "quoted_wei", "charged_wei")


@require_GET
@customer_required
def usage_csv(request, customer):
    """Every job with its money, one row a job: for a spreadsheet or an accountant."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="usage-{customer.public_id}.csv"'
    writer = csv.writer(response)
    writer.writerow(USAGE_COLUMNS)
    jobs = Job.objects.filter(customer=customer).order_by("created_at")
    for job in jobs.iterator():
        writer.writerow([
            job.public_id, job.created_at.isoformat(), job.completed_at.isoformat() if job.completed_at else "",
            job.model or ",".join(job.containers), "yes" if job.is_private else "no", job.status,
            job.billing_status, job.policy_version, job.quoted_price_wei, job.charged_price_wei,
        ])
    return response
