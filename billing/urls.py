from django.urls import path

from billing.apis import BillingAccountApi, BillingTransactionsApi

urlpatterns = [
    path("billing/account", BillingAccountApi.as_view(), name="billing-account"),
    path("billing/transactions", BillingTransactionsApi.as_view(), name="billing-transactions"),
]
