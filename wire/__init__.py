"""What crosses between customer, marketplace and node, byte for byte, in one place.

Pure Python over ``cryptography``: no Django and nothing of the marketplace's apps,
so the node agent, the marketplace and the customer's client share every format
here instead of each spelling its own.

- ``encoding``: base64url, CANON (canonical JSON), the JSON bytes a receipt hashes, SHA-256
- ``signing``: a node's signed requests and its signed job receipts (Ed25519)
- ``keys``: signed transport keys, and the check of a private job's receipt
- ``envelope``: b3iq-private-transport-v1, the sealed request and response of a private job
- ``frames``: the node socket's messages
"""
