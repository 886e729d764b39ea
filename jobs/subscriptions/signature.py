"""Who signed a DelegatedSubscriptionRequest: EIP-712 over the Infernet coordinator's typed data.

The domain (name "InfernetCoordinator", version "1", the chain id and the
coordinator's address) and the types are the coordinator contract's; the node
recovers the signer from (v, r, s) and checks it against the subscription's owner.
"""
from __future__ import annotations

import sys

# eth_account imports py_ecc, which raises the interpreter's recursion limit to 100,000 as it
# loads. With that limit a deep enough structure (a hostile JSON body, say) overflows the C
# stack and kills the process instead of raising RecursionError: the limit is put back.
_limit = sys.getrecursionlimit()
try:
    from eth_account import Account
    from eth_account.messages import encode_typed_data
finally:
    sys.setrecursionlimit(_limit)

DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
DELEGATE_SUBSCRIPTION_FIELDS = [
    {"name": "nonce", "type": "uint32"},
    {"name": "expiry", "type": "uint32"},
    {"name": "sub", "type": "Subscription"},
]
SUBSCRIPTION_FIELDS = [
    {"name": "owner", "type": "address"},
    {"name": "activeAt", "type": "uint32"},
    {"name": "period", "type": "uint32"},
    {"name": "frequency", "type": "uint32"},
    {"name": "redundancy", "type": "uint16"},
    {"name": "containerId", "type": "bytes32"},
    {"name": "lazy", "type": "bool"},
    {"name": "verifier", "type": "address"},
    {"name": "paymentAmount", "type": "uint256"},
    {"name": "paymentToken", "type": "address"},
    {"name": "wallet", "type": "address"},
]


def delegate_subscription_message(*, subscription: dict, nonce: int, expiry: int, chain_id: int, coordinator: str):
    """The signable EIP-712 message for a subscription in the request's (snake_case) form."""
    return encode_typed_data(full_message={
        "types": {
            "EIP712Domain": DOMAIN_FIELDS,
            "DelegateSubscription": DELEGATE_SUBSCRIPTION_FIELDS,
            "Subscription": SUBSCRIPTION_FIELDS,
        },
        "primaryType": "DelegateSubscription",
        "domain": {"name": "InfernetCoordinator", "version": "1", "chainId": chain_id,
                   "verifyingContract": coordinator},
        "message": {
            "nonce": nonce,
            "expiry": expiry,
            "sub": {
                "owner": subscription["owner"],
                "activeAt": subscription["active_at"],
                "period": subscription["period"],
                "frequency": subscription["frequency"],
                "redundancy": subscription["redundancy"],
                "containerId": subscription["containers"],
                "lazy": subscription["lazy"],
                "verifier": subscription["verifier"],
                "paymentAmount": subscription["payment_amount"],
                "paymentToken": subscription["payment_token"],
                "wallet": subscription["wallet"],
            },
        },
    })


def delegate_subscription_signer(*, subscription: dict, signature: dict, chain_id: int, coordinator: str) -> str:
    """The address that signed it (checksummed); ``ValueError`` if the signature is malformed."""
    message = delegate_subscription_message(
        subscription=subscription, nonce=signature["nonce"], expiry=signature["expiry"], chain_id=chain_id,
        coordinator=coordinator,
    )
    return Account.recover_message(message, vrs=(signature["v"], signature["r"], signature["s"]))
