"""The dashboards' forms: what a person types, checked before a service sees it."""
from __future__ import annotations

import json

from django import forms

from jobs.models import Priority
from marketplace.json_input import NUL_MESSAGE, contains_nul
from nodes.selectors import models_offered


class JobSubmitForm(forms.Form):
    model = forms.ChoiceField(label="Model")
    input = forms.CharField(
        label="Input", widget=forms.Textarea(attrs={"rows": 5}),
        help_text='Text, or JSON (an object goes to the model as it is, e.g. {"text": "hello"}).',
    )
    priority = forms.ChoiceField(label="Priority", choices=Priority.choices, initial=Priority.NORMAL)
    max_price_wei = forms.RegexField(
        label="Most you will pay (wei)", regex=r"^\d{1,78}$", required=False,
        help_text="Optional. Refused if the quote is higher.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m, m) for m in models_offered()]

    def clean_input(self):
        text = self.cleaned_data["input"]
        try:
            value = json.loads(text)
        except ValueError:
            return text  # plain text is a fine input too
        if contains_nul(value):
            raise forms.ValidationError(NUL_MESSAGE)
        return value


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100, required=False,
                           help_text="To tell your keys apart, e.g. the machine that uses it.")
