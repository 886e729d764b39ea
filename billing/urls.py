from django.urls import path

from billing.apis import BillingAccountApi, BillingJobApi, BillingUsageApi, MinerEarningsApi, ReceiptApi

urlpatterns = [
    path("billing/account", BillingAccountApi.as_view(), name="billing-account"),
    path("billing/usage", BillingUsageApi.as_view(), name="billing-usage"),
    path("billing/jobs/<id:job_id>", BillingJobApi.as_view(), name="billing-job"),
    path("receipts/<id:receipt_hash>", ReceiptApi.as_view(), name="receipt"),
    path("miners/earnings", MinerEarningsApi.as_view(), name="miner-earnings"),
]
