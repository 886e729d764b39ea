"""The customer dashboard (/dashboard/): balance, jobs (live), a job's page, submitting, keys, usage."""
from __future__ import annotations

import csv
from datetime import timedelta

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.ledger import account_for_customer
from jobs.exceptions import JobNotFound
from jobs.models import Job
from jobs.selectors import job_get_for_customer, jobs_recent_for_customer, usage_by_day
from jobs.services.submit import JobSpec, job_submit
from marketplace.authentication import CustomerPrincipal
from marketplace.errors import ApiError
from marketplace.models import ApiKey
from marketplace.services import api_key_create, api_key_revoke
from marketplace.web.access import customer_required
from marketplace.web.charts import daily_wei_chart
from marketplace.web.forms import ApiKeyCreateForm, JobSubmitForm

CHART_DAYS = 30


@require_GET
@customer_required
def dashboard(request, customer):
    account = account_for_customer(customer)
    today = timezone.now().date()
    start = timezone.now() - timedelta(days=CHART_DAYS)
    spent = {day["date"]: int(day["charged_wei"]) for day in usage_by_day(customer=customer, start=start, end=None)}
    return render(request, "web/dashboard.html", {
        "customer": customer,
        "account": account,
        "jobs": jobs_recent_for_customer(customer=customer),
        "chart": daily_wei_chart(title="Spend per day", days=CHART_DAYS, totals=spent, today=today),
    })


@require_GET
@customer_required
def job_page(request, customer, job_id: str):
    try:
        job = job_get_for_customer(customer=customer, job_id=job_id)
    except JobNotFound:
        raise Http404("no such job") from None
    return render(request, "web/job.html", {
        "customer": customer,
        "job": job,
        "events": job.events.all(),
        "attempts": job.attempts.select_related("node"),
    })


@require_http_methods(["GET", "POST"])
@customer_required
def job_new(request, customer):
    form = JobSubmitForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        spec = JobSpec(
            model=data["model"], containers=[], input=data["input"],
            output_config={"destination": "local", "format": "json"}, gpu_type="", gpu_count=0, min_vram_gb=0,
            priority=data["priority"], timeout_seconds=3600,
            max_price_wei=int(data["max_price_wei"]) if data["max_price_wei"] else None,
        )
        try:
            submission = job_submit(principal=CustomerPrincipal(customer=customer, api_key=None), spec=spec)
        except ApiError as error:
            form.add_error(None, error.detail)  # the API's own words: funds, quota, price
        else:
            return redirect("dashboard-job", job_id=submission.job.public_id)
    return render(request, "web/job_new.html", {"customer": customer, "form": form})


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
                                                 "issued_secret": issued})


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
