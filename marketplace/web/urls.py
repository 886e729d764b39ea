from django.contrib.auth import views as auth_views
from django.urls import path

from marketplace.web import accounts, customer, miner

urlpatterns = [
    path("accounts/login/", accounts.SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/home/", accounts.home, name="home"),
    path("dashboard/", customer.dashboard, name="dashboard"),
    path("dashboard/jobs/new/", customer.job_new, name="dashboard-job-new"),
    path("models/", customer.models_page, name="models"),
    path("models/<path:model>/quote/", customer.model_quote, name="model-quote"),
    path("dashboard/jobs/<id:job_id>/", customer.job_page, name="dashboard-job"),
    path("dashboard/jobs/<id:job_id>/cancel/", customer.job_cancel_view, name="dashboard-job-cancel"),
    path("dashboard/jobs/<id:job_id>/rerun/", customer.job_rerun, name="dashboard-job-rerun"),
    path("dashboard/jobs/<id:job_id>/result.json", customer.job_result_download, name="dashboard-job-result"),
    path("dashboard/keys/", customer.api_keys, name="dashboard-keys"),
    path("dashboard/keys/<int:key_id>/revoke/", customer.api_key_revoke_view, name="dashboard-key-revoke"),
    path("dashboard/usage.csv", customer.usage_csv, name="dashboard-usage-csv"),
    path("miner/", miner.miner_home, name="miner"),
    path("miner/tokens/", miner.token_create, name="miner-token-create"),
    path("miner/nodes/<id:node_id>/price/", miner.node_price, name="miner-node-price"),
    path("miner/withdrawals/", miner.withdrawal_create, name="miner-withdrawal-create"),
    path("miner/tokens/<int:token_id>/revoke/", miner.token_revoke, name="miner-token-revoke"),
]
