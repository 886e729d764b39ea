"""What customers and miners are billed and paid (B3IQ): a job's bill, usage by day, a job's signed
receipt; a miner's earnings, statement and withdrawals (with a node token). The customer's
account itself is billing's."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.apis import statement_answer
from billing.ledger import account_for_miner
from billing.openapi import (
    StatementSerializer,
    WithdrawalListSerializer,
    WithdrawalRequestSerializer,
    WithdrawalSerializer,
)
from billing.selectors import MINER_STATEMENT_KINDS, miner_withdrawals, withdrawal_fields
from billing.services import withdrawal_request
from jobs.apis import parse_day_range
from jobs.exceptions import JobNotFound
from jobs.openapi import DAY_PARAMETERS, EarningsSerializer, JobBillSerializer, ReceiptSerializer, UsageSerializer
from jobs.selectors import job_get_for_customer, job_with_receipt_for_customer, miner_earnings, usage_by_day
from jobs.serializers import job_billing
from marketplace.openapi import PAGE_PARAMETERS
from marketplace.times import iso_time
from nodes.services import node_from_token


class BillingUsageApi(APIView):
    @extend_schema(operation_id="billing_usage", parameters=DAY_PARAMETERS, responses=UsageSerializer)
    def get(self, request):
        start, end = parse_day_range(request)
        days = usage_by_day(customer=request.user.customer, start=start, end=end)
        return Response(
            {
                "customer_id": request.user.customer.public_id,
                "from": request.query_params.get("from"),
                "to": request.query_params.get("to"),
                "days": days,
                "total_charged_wei": str(sum(int(d["charged_wei"]) for d in days)),
            }
        )


class BillingJobApi(APIView):
    @extend_schema(operation_id="billing_job", responses=JobBillSerializer)
    def get(self, request, job_id: str):
        job = job_get_for_customer(customer=request.user.customer, job_id=job_id)
        return Response({"job_id": job.public_id, **job_billing(job)})


class ReceiptApi(APIView):
    """A job's receipt, as the node signed it: anyone holding the node's key can check it."""

    @extend_schema(operation_id="receipts_get", responses=ReceiptSerializer)
    def get(self, request, receipt_hash: str):
        job = job_with_receipt_for_customer(customer=request.user.customer, receipt_hash=receipt_hash)
        if job is None:
            raise JobNotFound(f"no receipt {receipt_hash} among your jobs")
        return Response(
            {
                "receipt_hash": receipt_hash,
                "job_id": job.public_id,
                "node_id": job.node.public_id if job.node else None,
                "node_public_key": job.node.identity_public_key if job.node else None,
                "verified": job.receipt_verified,
                "receipt": job.receipt["body"],
                "signature": job.receipt["signature"],
                "signature_algorithm": "ed25519 over the canonical JSON of receipt",
            }
        )


class MinerTransactionsApi(APIView):
    """Every movement on a miner's account, newest first (payouts, withdrawals), beside its
    earnings: authenticated with any of its nodes' tokens."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(operation_id="miners_transactions", parameters=PAGE_PARAMETERS, responses=StatementSerializer,
                   auth=[{"nodeToken": []}])
    def get(self, request):
        miner = node_from_token(headers=request.headers).miner
        return statement_answer(request, account_for_miner(miner), kinds=MINER_STATEMENT_KINDS)


def _withdrawal_answer(withdrawal) -> dict:
    fields = withdrawal_fields(withdrawal)
    return {**fields, "created_at": iso_time(fields["created_at"]), "decided_at": iso_time(fields["decided_at"])}


class MinerWithdrawalsApi(APIView):
    """A miner asks to be paid its available earnings (held at once, until staff pay or reject
    it) and reads its requests: authenticated with any of its nodes' tokens."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(operation_id="miners_withdrawals_list", responses=WithdrawalListSerializer,
                   auth=[{"nodeToken": []}])
    def get(self, request):
        miner = node_from_token(headers=request.headers).miner
        return Response({"withdrawals": [_withdrawal_answer(w) for w in miner_withdrawals(miner=miner)]})

    @extend_schema(operation_id="miners_withdrawals_create", request=WithdrawalRequestSerializer,
                   responses={201: WithdrawalSerializer}, auth=[{"nodeToken": []}])
    def post(self, request):
        miner = node_from_token(headers=request.headers).miner  # before the body is read
        body = WithdrawalRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        withdrawal = withdrawal_request(miner=miner, amount=int(body.validated_data["amount_wei"]),
                                        address=body.validated_data["address"])
        return Response(_withdrawal_answer(withdrawal), status=201)


class MinerEarningsApi(APIView):
    """A miner's payouts, for its own tooling: authenticated with any of its nodes' tokens."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(operation_id="miners_earnings", parameters=DAY_PARAMETERS, responses=EarningsSerializer,
                   auth=[{"nodeToken": []}])
    def get(self, request):
        miner = node_from_token(headers=request.headers).miner
        start, end = parse_day_range(request)
        return Response(miner_earnings(miner=miner, start=start, end=end))
