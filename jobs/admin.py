"""Jobs in the staff console: read-only, with their events and attempts; staff may cancel a
job and refund its charge (both through the services a customer's cancel and a deposit use),
from the list for several jobs or from one job's own page."""
from django.contrib import admin, messages
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from jobs.exceptions import JobStateConflict
from jobs.models import ACTIVE, BillingStatus, Job, JobAttempt, JobEvent
from jobs.services.lifecycle import job_cancel
from jobs.services.money import job_refund, job_refundable
from marketplace.admin_columns import name_column, time_column
from marketplace.templatetags.market import readable_wei


class JobEventInline(admin.TabularInline):
    model = JobEvent
    fields = ("created_at", "old_status", "new_status", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    fields = ("number", "node", "status", "node_job_id", "error", "started_at", "ended_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("public_id", "customer_name", "model", "status", "charged", "node_name", "created")
    list_select_related = ("customer", "node")
    list_filter = ("status", "billing_status", "is_private", "priority", "error_code")
    search_fields = ("public_id", "customer__name", "model")
    inlines = [JobEventInline, JobAttemptInline]
    actions = ["cancel_jobs", "refund_jobs"]

    customer_name = name_column("customer", "customer")
    node_name = name_column("node", "node")
    created = time_column("created_at", "created")

    @admin.display(description="Charged", ordering="charged_price_wei")
    def charged(self, job):
        return readable_wei(job.charged_price_wei) if job.billing_status == BillingStatus.SETTLED else "–"

    @admin.action(description="Cancel the selected jobs (one that runs is charged for the time it ran)")
    def cancel_jobs(self, request, queryset):
        cancelled = 0
        for job in queryset.filter(status__is_in=ACTIVE).select_related("node"):
            try:
                job_cancel(job=job, by=f"staff ({request.user.get_username()})")
            except JobStateConflict:
                continue  # it ended meanwhile
            cancelled += 1
        self.message_user(request, f"Cancelled {cancelled} job(s); finished ones were left as they were.",
                          messages.SUCCESS if cancelled else messages.WARNING)

    @admin.action(description="Refund the selected jobs' charges to their customers")
    def refund_jobs(self, request, queryset):
        refunded, total = 0, 0
        for job in queryset.filter(billing_status=BillingStatus.SETTLED).select_related("customer"):
            amount = job_refund(job=job, created_by=request.user)
            if amount:
                refunded, total = refunded + 1, total + amount
        self.message_user(request, f"Refunded {refunded} job(s), {readable_wei(total)} in all ({total} wei); "
                                   "jobs refunded before or charged nothing were left as they were.",
                          messages.SUCCESS if refunded else messages.WARNING)

    # --- one job's own page: a button for each, shown when it applies (change_form_object_tools)

    def get_urls(self):
        def view(function, name):
            return path(f"<path:object_id>/{name}/", self.admin_site.admin_view(function), name=f"jobs_job_{name}")
        return [view(self.cancel_one, "cancel"), view(self.refund_one, "refund"), *super().get_urls()]

    def _one(self, request, object_id):
        """The job a button names, for a POST by staff who may change jobs; else an answer to give."""
        if request.method != "POST":
            return None, HttpResponseNotAllowed(["POST"])
        job = get_object_or_404(Job.objects.select_related("node", "customer"), pk=object_id)
        if not self.has_change_permission(request, job):
            return None, HttpResponseRedirect(reverse("admin:index"))
        return job, None

    def _back(self, job):
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))

    def cancel_one(self, request, object_id):
        job, answer = self._one(request, object_id)
        if answer is not None:
            return answer
        try:
            if job.status not in ACTIVE:
                raise JobStateConflict(f"{job.public_id} already ended ({job.status}): nothing to cancel")
            job_cancel(job=job, by=f"staff ({request.user.get_username()})")
        except JobStateConflict as exc:
            self.message_user(request, str(exc), messages.WARNING)
        else:
            self.message_user(request, f"Cancelled {job.public_id}.", messages.SUCCESS)
        return self._back(job)

    def refund_one(self, request, object_id):
        job, answer = self._one(request, object_id)
        if answer is not None:
            return answer
        amount = job_refund(job=job, created_by=request.user)
        if amount:
            self.message_user(request, f"Refunded {readable_wei(amount)} ({amount} wei) to {job.customer}.",
                              messages.SUCCESS)
        else:
            self.message_user(request, f"{job.public_id} was refunded before or charged nothing: nothing was paid.",
                              messages.WARNING)
        return self._back(job)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        extra = {
            "can_cancel": job is not None and job.status in ACTIVE,
            "can_refund": job is not None and job_refundable(job),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Job._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
