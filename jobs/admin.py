"""Jobs in the staff console: read-only, with their events and attempts."""
from django.contrib import admin

from jobs.models import Job, JobAttempt, JobEvent


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
    list_display = ("public_id", "customer", "model", "status", "is_private", "node", "created_at", "completed_at")
    list_filter = ("status", "is_private", "priority", "error_code")
    search_fields = ("public_id", "customer__name", "model")
    inlines = [JobEventInline, JobAttemptInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Job._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
