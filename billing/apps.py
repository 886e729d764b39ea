from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        from billing.selectors import pricing_policy_forget

        # a flushed or migrated database (a test's teardown) drops the policy this process holds
        post_migrate.connect(lambda **kwargs: pricing_policy_forget(), weak=False, dispatch_uid="billing-policy")
