"""Money in the staff console: pricing versions, accounts, deposits and refunds (with their reason),
miners' withdrawals to pay or reject, and the treasury report."""
from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import path

from billing.ledger import conservation_holds, ledger_totals
from billing.models import Account, LedgerAdjustment, LedgerTransaction, PricingPolicy, Withdrawal
from billing.services import (
    adjustment_check,
    funds_deposit,
    funds_refund,
    pricing_policy_publish,
    withdrawal_pay,
    withdrawal_reject,
)
from marketplace.admin_columns import name_column, time_column
from marketplace.errors import ApiError
from marketplace.templatetags.market import wei


@admin.register(PricingPolicy)
class PricingPolicyAdmin(admin.ModelAdmin):
    list_display = ("version", "current", "note", "platform_fee_bps", "created_at", "created_by")
    fields = ("gpu_rates_wei", "default_rate_wei", "node_price_bounds_wei", "priority_multipliers_bps",
              "default_expected_seconds", "model_base_prices_wei", "platform_fee_bps", "minimum_charge_wei",
              "minimum_withdrawal_wei", "note")

    def get_readonly_fields(self, request, obj=None):
        # a published version is history: jobs name it; change prices by publishing anew
        return self.fields if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # a published version opens read-only, with no save button to say "changed successfully"
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(boolean=True, description="current")
    def current(self, obj) -> bool:
        return obj.version == PricingPolicy.objects.order_by("-version").values_list("version", flat=True).first()

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


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("__str__", "kind", "available_wei", "reserved_wei")
    list_filter = ("kind",)
    search_fields = ("customer__name", "miner__name")
    readonly_fields = ("kind", "customer", "miner", "available_wei", "reserved_wei")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [path("treasury/", self.admin_site.admin_view(self.treasury), name="billing_treasury"), *super().get_urls()]

    def treasury(self, request):
        """Customer debits, node payouts and platform fees, reconciled against the ledger."""
        totals = ledger_totals()
        held = (totals["customer_balances"] + totals["customer_reservations"] + totals["miner_payouts"]
                + totals["platform_fees"])
        context = {
            **self.admin_site.each_context(request),
            "title": "Treasury",
            "totals": totals,
            "held": held,
            "outside": totals["deposits"] - totals["withdrawals"],
            "balanced": conservation_holds(),
        }
        return TemplateResponse(request, "admin/billing/treasury.html", context)


class LedgerAdjustmentForm(forms.ModelForm):
    """A deposit or refund checked before it is saved: an amount out of bounds is a form error,
    never an error beside "added successfully"."""

    class Meta:
        model = LedgerAdjustment
        fields = ("customer", "kind", "amount_wei", "reason", "job")

    def clean(self):
        data = super().clean()
        amount = data.get("amount_wei")
        if amount is not None:
            try:
                adjustment_check(amount=int(amount), reason=data.get("reason") or "")
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(LedgerAdjustment)
class LedgerAdjustmentAdmin(admin.ModelAdmin):
    """Deposits and refunds: staff add one with a reason; it posts to the ledger and stays as the record."""

    form = LedgerAdjustmentForm
    list_display = ("created", "kind", "customer_name", "amount", "reason", "created_by")
    list_select_related = ("customer", "created_by")
    created = time_column("created_at", "created")
    customer_name = name_column("customer", "customer")

    @admin.display(description="amount", ordering="amount_wei")
    def amount(self, adjustment):
        return wei(adjustment.amount_wei)
    list_filter = ("kind",)
    fields = ("customer", "kind", "amount_wei", "reason", "job")
    raw_id_fields = ("job",)

    def get_readonly_fields(self, request, obj=None):
        return self.fields if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        move = funds_deposit if data["kind"] == LedgerAdjustment.Kind.DEPOSIT else funds_refund
        extra = {"job": data["job"]} if data["kind"] == LedgerAdjustment.Kind.REFUND else {}
        try:
            made = move(customer=data["customer"], amount=int(data["amount_wei"]), reason=data["reason"],
                        created_by=request.user, **extra)
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk = made.pk


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(admin.ModelAdmin):
    list_display = ("created", "kind", "key", "job", "memo", "created_by")
    list_select_related = ("job", "created_by")
    created = time_column("created_at", "created")
    list_filter = ("kind",)
    search_fields = ("key", "memo", "job__public_id")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in LedgerTransaction._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class WithdrawalDecisionForm(forms.ModelForm):
    """Pay (with the reference of the transfer staff made) or reject (with a reason)."""

    decision = forms.ChoiceField(choices=[("", "undecided"), ("pay", "paid: I sent it"), ("reject", "reject it")],
                                 required=False)

    class Meta:
        model = Withdrawal
        fields = ("payout_reference", "reason")

    def clean(self):
        data = super().clean()
        if data.get("decision") == "pay" and not (data.get("payout_reference") or "").strip():
            raise forms.ValidationError("a payment needs its payout reference (the transaction hash)")
        if data.get("decision") == "reject" and not (data.get("reason") or "").strip():
            raise forms.ValidationError("say why it is rejected: the miner sees the reason")
        return data


@admin.register(Withdrawal)
class WithdrawalAdmin(admin.ModelAdmin):
    """Miners' payout requests: each was held on the miner's account when it was asked for;
    paying posts the WITHDRAWAL, rejecting gives the hold back. Each moves the ledger once."""

    form = WithdrawalDecisionForm
    list_display = ("created_at", "miner", "amount_wei", "address", "status", "payout_reference", "decided_by")
    list_filter = ("status",)
    search_fields = ("miner__name", "address", "payout_reference")
    readonly_fields = ("miner", "amount_wei", "address", "status", "created_at", "decided_at", "decided_by")

    def get_fields(self, request, obj=None):
        fields = ["miner", "amount_wei", "address", "status", "created_at", "decided_at", "decided_by",
                  "payout_reference", "reason"]
        return fields + ["decision"] if obj is not None and obj.status == Withdrawal.Status.REQUESTED else fields

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != Withdrawal.Status.REQUESTED:
            return [*self.readonly_fields, "payout_reference", "reason"]  # decided: history
        return self.readonly_fields

    def has_add_permission(self, request):
        return False  # miners ask; staff decide

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        decision = form.cleaned_data.get("decision")
        try:
            if decision == "pay":
                withdrawal_pay(withdrawal=obj, payout_reference=form.cleaned_data["payout_reference"],
                               decided_by=request.user)
            elif decision == "reject":
                withdrawal_reject(withdrawal=obj, reason=form.cleaned_data["reason"], decided_by=request.user)
        except ApiError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
