"""Pricing policy in the staff console: publishing makes a new version; old ones stay as they were."""
from django.contrib import admin

from billing.models import PricingPolicy
from billing.services import pricing_policy_publish


@admin.register(PricingPolicy)
class PricingPolicyAdmin(admin.ModelAdmin):
    list_display = ("version", "note", "created_at", "created_by")
    fields = ("gpu_rates_wei", "default_rate_wei", "priority_multipliers_bps", "default_expected_seconds", "note")

    def get_readonly_fields(self, request, obj=None):
        # a published version is history: jobs name it; change prices by publishing anew
        return self.fields if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False

    def get_changeform_initial_data(self, request):
        latest = PricingPolicy.objects.order_by("-version").first()
        if latest is None:
            return {}
        return {name: getattr(latest, name) for name in self.fields if name != "note"}

    def save_model(self, request, obj, form, change):
        if change:
            return
        published = pricing_policy_publish(
            created_by=request.user, **{name: form.cleaned_data[name] for name in self.fields}
        )
        obj.pk, obj.version = published.pk, published.version
