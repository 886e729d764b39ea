"""The marketplace's Python SDK: ``MarketplaceClient``. Needs ``requests`` only (not Django).

    from marketplace.sdk import MarketplaceClient
    client = MarketplaceClient()                 # MARKETPLACE_URL, MARKETPLACE_API_KEY
    job = client.submit(model="echo", input="hello")
    print(client.wait(job["job_id"])["result"])
"""
from marketplace.sdk.client import MarketplaceClient, MarketplaceError

__all__ = ["MarketplaceClient", "MarketplaceError"]
