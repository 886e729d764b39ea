"""Staff console for accounts: rate limits and quotas per customer, API keys, sign-in locks."""
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.utils import timezone

from marketplace.models import ApiKey, Customer, Miner
from marketplace.services import api_key_create, api_key_revoke, api_keys_forget_cached
from marketplace.web.login_throttle import login_locks_lift

User = get_user_model()
admin.site.unregister(User)
# the console names the marketplace, not the framework
admin.site.site_header = "Inference marketplace: staff console"
admin.site.site_title = "Marketplace staff"
admin.site.index_title = "Customers, miners, nodes, jobs and money"


@admin.register(User)
class PersonAdmin(UserAdmin):
    actions = ["lift_sign_in_locks"]

    @admin.action(description="Lift sign-in locks (failed attempts start again, from every address)")
    def lift_sign_in_locks(self, request, queryset):
        names = [user.get_username() for user in queryset]
        for name in names:
            login_locks_lift(name)
        self.message_user(request, f"Sign-in locks lifted for {', '.join(names)}.", messages.SUCCESS)


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ("prefix", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("name", "public_id", "rate_limit_per_minute", "rate_limit_per_hour", "max_concurrent_jobs", "created_at")
    search_fields = ("name", "public_id")
    readonly_fields = ("public_id", "created_at")
    fieldsets = (
        (None, {"fields": ("name", "public_id", "user", "created_at")}),
        ("Limits (empty = the marketplace default, or none)", {
            "fields": ("rate_limit_per_minute", "rate_limit_per_hour", "max_concurrent_jobs", "monthly_spend_cap_wei"),
        }),
    )
    inlines = [ApiKeyInline]
    actions = ["issue_api_key"]

    # a key's cached lookup carries its customer's limits: staff edits count from the next request
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        api_keys_forget_cached(api_keys=obj.api_keys.all())

    def delete_model(self, request, obj):
        api_keys_forget_cached(api_keys=list(obj.api_keys.all()))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        api_keys_forget_cached(api_keys=list(ApiKey.objects.filter(customer__in=queryset)))
        super().delete_queryset(request, queryset)

    @admin.action(description="Issue a new API key (shown once)")
    def issue_api_key(self, request, queryset):
        for customer in queryset:
            issued = api_key_create(customer=customer, name=f"issued by {request.user} in the admin")
            self.message_user(
                request, f"New API key for {customer.name} (copy it now, it is not shown again): {issued.secret}",
                messages.WARNING,
            )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "customer", "name", "rate_limit_per_minute", "rate_limit_per_hour", "max_concurrent_jobs",
                    "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "customer__name", "customer__public_id")
    readonly_fields = ("customer", "prefix", "created_at", "last_used_at", "revoked_at")
    fieldsets = (
        (None, {"fields": ("customer", "name", "prefix", "created_at", "last_used_at", "revoked_at")}),
        ("Limits of this key (empty = the customer's)", {
            "fields": ("rate_limit_per_minute", "rate_limit_per_hour", "max_concurrent_jobs", "budget_wei"),
        }),
    )
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        api_keys_forget_cached(api_keys=[obj])

    def delete_model(self, request, obj):
        api_keys_forget_cached(api_keys=[obj])
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        api_keys_forget_cached(api_keys=list(queryset))
        super().delete_queryset(request, queryset)

    def has_add_permission(self, request):
        return False  # keys are issued from the customer page, where the secret can be shown once

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked at {timezone.now():%Y-%m-%d %H:%M} UTC.")


@admin.register(Miner)
class MinerAdmin(admin.ModelAdmin):
    list_display = ("name", "public_id", "created_at")
    search_fields = ("name", "public_id")
    readonly_fields = ("public_id", "created_at")
