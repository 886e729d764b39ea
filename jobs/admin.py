"""Jobs in the staff console: read-only, with their events and attempts; staff may cancel a
job and refund its charge (both through the services a customer's cancel and a deposit use)."""
from django.contrib import admin, messages

from jobs.exceptions import JobStateConflict
from jobs.models import ACTIVE, BillingStatus, Job, JobAttempt, JobEvent
from jobs.services.lifecycle import job_cancel
from jobs.services.money import job_refund
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
    list_display = ("public_id", "customer", "model", "status", "charged", "node", "created_at")
    list_filter = ("status", "billing_status", "is_private", "priority", "error_code")
    search_fields = ("public_id", "customer__name", "model")
    inlines = [JobEventInline, JobAttemptInline]
    actions = ["cancel_jobs", "refund_jobs"]

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

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Job._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
