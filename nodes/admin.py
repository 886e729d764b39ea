"""Nodes and enrolment tokens in the staff console: approve, suspend, issue tokens."""
from django.contrib import admin, messages

from marketplace.admin_columns import name_column, time_column
from nodes.models import EnrollmentToken, Node
from nodes.services import enrollment_token_create, enrollment_token_revoke, node_set_approval, runnode_command

# never shown: what the node authenticates with, and the socket's internal address (a field
# named in readonly_fields is shown even when excluded, so they are left out of both)
NEVER_SHOWN = ("token_hash", "channel_name")


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ("public_id", "name", "miner_name", "approval", "online", "gpus", "capacity", "heartbeat")
    list_select_related = ("miner",)
    list_filter = ("approval", "gpu_type")
    search_fields = ("public_id", "name", "miner__name")
    exclude = NEVER_SHOWN
    readonly_fields = [f.name for f in Node._meta.fields if f.name not in ("approval", "name", *NEVER_SHOWN)]
    actions = ["approve", "suspend"]

    miner_name = name_column("miner", "miner")
    heartbeat = time_column("last_heartbeat_at", "last heartbeat")

    @admin.display(description="GPUs", ordering="gpu_type")
    def gpus(self, node):
        return f"{node.gpu_count} × {node.gpu_type}" if node.gpu_count else (node.gpu_type or "CPU only")

    @admin.display(boolean=True)
    def online(self, node):
        return node.is_online

    def has_add_permission(self, request):
        return False  # nodes enrol themselves with a token

    @admin.action(description="Approve the selected nodes")
    def approve(self, request, queryset):
        for node in queryset:
            node_set_approval(node=node, approval=Node.Approval.APPROVED)

    @admin.action(description="Suspend the selected nodes (no new jobs)")
    def suspend(self, request, queryset):
        for node in queryset:
            node_set_approval(node=node, approval=Node.Approval.SUSPENDED)


@admin.register(EnrollmentToken)
class EnrollmentTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "miner", "created_at", "expires_at", "used_at", "revoked_at")
    fields = ("miner",)
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        return ("miner",) if obj is not None else ()

    def save_model(self, request, obj, form, change):
        if change:
            return
        issued = enrollment_token_create(miner=form.cleaned_data["miner"])
        obj.pk = issued.token.pk
        self.message_user(
            request,
            "Enrolment token (shown once). On the node run: "
            + runnode_command(marketplace_url=request.build_absolute_uri("/"), secret=issued.secret),
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            enrollment_token_revoke(token=token)
