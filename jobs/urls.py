from django.urls import path

from jobs.apis import JobDetailApi, JobDownloadApi, JobHistoryApi, JobListCreateApi
from jobs.billing_apis import (
    BillingJobApi,
    BillingUsageApi,
    MinerEarningsApi,
    MinerTransactionsApi,
    MinerWithdrawalsApi,
    ReceiptApi,
)

urlpatterns = [
    path("jobs", JobListCreateApi.as_view(), name="jobs"),
    path("jobs/history", JobHistoryApi.as_view(), name="job-history"),
    path("jobs/<id:job_id>", JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<id:job_id>/download", JobDownloadApi.as_view(), name="job-download"),
    # bills, usage, receipts and earnings: read from jobs (the account itself is billing.urls)
    path("billing/usage", BillingUsageApi.as_view(), name="billing-usage"),
    path("billing/jobs/<id:job_id>", BillingJobApi.as_view(), name="billing-job"),
    path("receipts/<id:receipt_hash>", ReceiptApi.as_view(), name="receipt"),
    path("miners/earnings", MinerEarningsApi.as_view(), name="miner-earnings"),
    path("miners/transactions", MinerTransactionsApi.as_view(), name="miner-transactions"),
    path("miners/withdrawals", MinerWithdrawalsApi.as_view(), name="miner-withdrawals"),
]
