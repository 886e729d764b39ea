"""The marketplace as an Infernet node: Infernet's node REST API v1.4 under /infernet/<api key>/.

The published Infernet client sends no headers, so the API key rides in the path.
Paths are redacted from the marketplace's logs (``marketplace.log_redaction``).
"""
