"""The billing surface (B3IQ): the customer's account. Bills, usage and receipts are read from
jobs, so they are served by jobs (``jobs/billing_apis.py``)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.ledger import account_for_customer
from billing.openapi import AccountSerializer, StatementSerializer
from billing.selectors import STATEMENT_KINDS, account_statement
from marketplace.openapi import PAGE_PARAMETERS
from marketplace.paging import decode_cursor, encode_cursor, page_limit
from marketplace.times import iso_time


def statement_answer(request, account, kinds=STATEMENT_KINDS) -> Response:
    """A page of ``account``'s statement, as ``GET /v1/billing/transactions`` and the miners' answer it."""
    cursor = request.query_params.get("cursor")
    rows, below = account_statement(account=account, limit=page_limit(request, default=50),
                                    before=decode_cursor(cursor) if cursor else None, kinds=kinds)
    for row in rows:
        row["created_at"] = iso_time(row["created_at"])
    return Response({"transactions": rows, "has_more": below is not None,
                     "next_cursor": encode_cursor(below) if below is not None else None})


class BillingTransactionsApi(APIView):
    """Every movement on the customer's account, newest first: deposits, reservations, charges,
    releases, refunds, each with its job and time."""

    @extend_schema(operation_id="billing_transactions", parameters=PAGE_PARAMETERS, responses=StatementSerializer)
    def get(self, request):
        return statement_answer(request, account_for_customer(request.user.customer))


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
