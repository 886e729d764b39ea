"""Staff console for accounts: rate limits and quotas per customer, API keys, sign-in locks."""
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from billing.ledger import account_for_customer
from marketplace.admin_columns import name_column, time_column
from marketplace.models import ApiKey, Customer, Miner
from marketplace.services import api_key_create, api_key_revoke, api_keys_forget_cached
from marketplace.templatetags.market import ether
from marketplace.web.login_throttle import login_locks_lift

User = get_user_model()
admin.site.unregister(User)
# the console names the marketplace, not the framework
admin.site.site_header = "Inference marketplace: staff console"
admin.site.site_title = "Marketplace staff"
admin.site.index_title = "Customers, miners, nodes, jobs and money"
# the lists get the whole width of a laptop's screen: the index and the breadcrumbs lead everywhere
# the sidebar did, and with it (and a list's filters) a job's columns scrolled sideways at 1280 px
admin.site.enable_nav_sidebar = False


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
    readonly_fields = ("public_id", "created_at", "money", "limits_in_force")
    fieldsets = (
        (None, {"fields": ("name", "public_id", "user", "created_at")}),
        ("Money", {"fields": ("money",)}),
        ("Limits (empty = the marketplace default, or none)", {
            "fields": ("limits_in_force", "rate_limit_per_minute", "rate_limit_per_hour", "max_concurrent_jobs",
                       "monthly_spend_cap_wei"),
        }),
    )

    @admin.display(description="Balance")
    def money(self, customer):
        if customer.pk is None:
            return "–"
        account = account_for_customer(customer)
        deposit = reverse("admin:billing_ledgeradjustment_add") + f"?customer={customer.pk}&kind=deposit"
        return format_html(
            "{} ETH balance, {} ETH reserved for jobs in flight, {} ETH available ({} wei). "
            '<a href="{}">Add a deposit</a> · <a href="{}">Statement</a>',
            ether(account.balance_wei), ether(account.reserved_wei), ether(account.available_wei),
            account.available_wei, deposit,
            reverse("admin:billing_ledgeradjustment_changelist") + f"?customer__id__exact={customer.pk}",
        )

    @admin.display(description="In force now")
    def limits_in_force(self, customer):
        if customer.pk is None:
            return "–"
        cap = customer.monthly_spend_cap_wei
        return (f"{customer.minute_limit} requests a minute, {customer.hour_limit} an hour, "
                f"{customer.concurrent_job_limit} jobs at once, "
                + (f"{ether(cap)} ETH a month" if cap is not None else "no monthly spend cap"))
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
    list_display = ("prefix", "customer_name", "name", "limits", "created", "last_used", "revoked")
    list_select_related = ("customer",)
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

    customer_name = name_column("customer", "customer")
    created = time_column("created_at", "created")
    last_used = time_column("last_used_at", "last used")
    revoked = time_column("revoked_at", "revoked")

    @admin.display(description="limits of its own")
    def limits(self, api_key):
        own = [f"{api_key.rate_limit_per_minute} a minute" if api_key.rate_limit_per_minute is not None else "",
               f"{api_key.rate_limit_per_hour} an hour" if api_key.rate_limit_per_hour is not None else "",
               f"{api_key.max_concurrent_jobs} at once" if api_key.max_concurrent_jobs is not None else "",
               "a budget" if api_key.budget_wei is not None else ""]
        return ", ".join(item for item in own if item) or "the customer's"

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
