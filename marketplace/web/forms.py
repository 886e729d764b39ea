"""The dashboards' forms: what a person types, checked before a service sees it."""
from __future__ import annotations

from decimal import Decimal

from django import forms
from django.conf import settings

from jobs.models import JobStatus, Priority
from wire.bounded_json import INVALID, NOT_FINITE, JsonRejected, loads_bounded


WEI_PER_ETHER = Decimal(10) ** 18


class JobSubmitForm(forms.Form):
    """``models``: the catalogue's entries, the models an online node runs now."""

    model = forms.ChoiceField(label="Model")
    input = forms.CharField(
        label="Input", widget=forms.Textarea(attrs={"rows": 5}),
        help_text='Text, or JSON (an object goes to the model as it is, e.g. {"text": "hello"}).',
    )
    priority = forms.ChoiceField(label="Priority", choices=Priority.choices, initial=Priority.NORMAL)
    max_price_eth = forms.DecimalField(
        label="Most you will pay (ETH)", required=False, min_value=0, max_digits=40, decimal_places=18,
        help_text="Optional. Refused if the quote is higher; a run is stopped when it reaches it.",
    )

    def __init__(self, *args, models=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(entry.model, entry.model) for entry in models]

    def max_price_wei(self) -> int | None:
        value = self.cleaned_data.get("max_price_eth")
        return None if value is None else int(value * WEI_PER_ETHER)

    def clean_input(self):
        text = self.cleaned_data["input"]
        try:
            return loads_bounded(text, max_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        except JsonRejected as exc:
            if exc.code in (INVALID, NOT_FINITE):
                return text  # plain text ("NaN" too) is a fine input
            raise forms.ValidationError(str(exc)) from None


class JobFilterForm(forms.Form):
    """The jobs table's filters (GET): every field may be left empty."""

    status = forms.ChoiceField(label="Status", required=False, choices=[("", "any"), *JobStatus.choices])
    model = forms.CharField(label="Model", required=False, max_length=100)
    job_id = forms.CharField(label="Job id", required=False, max_length=64,
                             widget=forms.TextInput(attrs={"placeholder": "job_…"}))


class NodePriceForm(forms.Form):
    price_per_second_wei = forms.RegexField(
        regex=r"^\d{1,31}$", label="Price (wei per GPU-second)",
        error_messages={"invalid": "a whole number of wei, at most 10^30"},
    )


class WithdrawalForm(forms.Form):
    amount_wei = forms.RegexField(regex=r"^\d{1,78}$", label="Amount (wei)",
                                  error_messages={"invalid": "a whole number of wei"})
    address = forms.CharField(label="To address", max_length=42, help_text="0x and 40 hex digits")


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100, required=False,
                           help_text="To tell your keys apart, e.g. the machine that uses it.")
