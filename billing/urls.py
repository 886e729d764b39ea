from django.urls import path

from billing.apis import BillingAccountApi

urlpatterns = [
    path("billing/account", BillingAccountApi.as_view(), name="billing-account"),
]
