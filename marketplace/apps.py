from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self):
        from marketplace.web import login_throttle  # noqa: F401  (counts failed sign-ins)
