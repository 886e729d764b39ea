"""The billing surface (B3IQ): the customer's account. Bills, usage and receipts are read from
jobs, so they are served by jobs (``jobs/billing_apis.py``)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.ledger import account_for_customer
from billing.openapi import AccountSerializer


class BillingAccountApi(APIView):
    @extend_schema(operation_id="billing_account", responses=AccountSerializer)
    def get(self, request):
        customer = request.user.customer
        account = account_for_customer(customer)
        return Response(
            {
                "customer_id": customer.public_id,
                "balance": str(account.balance_wei),
                "reserved": str(account.reserved_wei),
                "available": str(account.available_wei),
            }
        )
