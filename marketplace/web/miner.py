"""The miner dashboard (/miner/): nodes, enrolment tokens, earnings."""
from __future__ import annotations

from datetime import timedelta

from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from billing.selectors import miner_withdrawals, pricing_policy_current, withdrawal_fields
from billing.services import node_rate, price_bounds, withdrawal_request
from jobs.selectors import miner_earnings, node_payouts
from marketplace.errors import ApiError
from marketplace.web.access import miner_required
from marketplace.web.charts import daily_wei_chart
from marketplace.web.forms import NodePriceForm, WithdrawalForm
from nodes.models import EnrollmentToken, Node
from nodes.selectors import miner_nodes_overview
from nodes.services import enrollment_token_create, enrollment_token_revoke, node_price_set, runnode_command

CHART_DAYS = 30


def _with_prices(rows: list[dict], price_error: dict, paid: dict[int, int]) -> list[dict]:
    """Each node's asked price, what it charges (the ask within the policy's bounds), the bounds,
    why a price just sent for it was refused, and what it has earned."""
    policy = pricing_policy_current()
    for row in rows:
        node = row["node"]
        row["earned_wei"] = paid.get(node.pk, 0)
        row["models"] = [(model, node.unavailable_models.get(model, "")) for model in sorted(node.model_map)]
        row["price_error"] = price_error.get(node.public_id, "")
        row["rate"] = node_rate(policy=policy, gpu_type=node.gpu_type, gpu_count=node.gpu_count,
                                asked_wei=node.price_per_second_wei)
        row["bounds"] = price_bounds(policy, node.gpu_type, node.gpu_count)
    return rows


def _page(request, miner, issued=None, price_error=None, status=200, withdrawal_form=None, withdrawal_error=""):
    now = timezone.now()
    earnings = miner_earnings(miner=miner, start=now - timedelta(days=CHART_DAYS))
    tokens = EnrollmentToken.objects.filter(miner=miner, used_at__isnull=True, revoked_at__isnull=True,
                                            expires_at__gt=now).order_by("-created_at")
    return render(request, "web/miner.html", {
        "miner": miner,
        "nodes": _with_prices(miner_nodes_overview(miner=miner), price_error or {}, node_payouts(miner=miner)),
        "withdrawals": [withdrawal_fields(w) for w in miner_withdrawals(miner=miner, limit=20)],
        "withdrawal_form": withdrawal_form or WithdrawalForm(),
        "withdrawal_error": withdrawal_error,
        "tokens": tokens,
        "earnings": earnings,
        "chart": daily_wei_chart(title="Earnings per day", days=CHART_DAYS, today=now.date(),
                                 totals={d["date"]: int(d["payout_wei"]) for d in earnings["days"]}),
        "issued": issued,
        "command": runnode_command(marketplace_url=request.build_absolute_uri("/"), secret=issued.secret)
        if issued else "",
    }, status=status)


@require_GET
@miner_required
def miner_home(request, miner):
    return _page(request, miner)


@require_POST
@miner_required
def token_create(request, miner):
    # rendered, not redirected: the token is shown on this response only
    return _page(request, miner, issued=enrollment_token_create(miner=miner))


@require_POST
@miner_required
def node_price(request, miner, node_id: str):
    node = Node.objects.filter(public_id=node_id, miner=miner).first()
    if node is None:
        raise Http404("no such node")
    form = NodePriceForm(request.POST)
    if not form.is_valid():
        return _page(request, miner, price_error={node.public_id: form.errors["price_per_second_wei"][0]}, status=400)
    try:
        node_price_set(node=node, price_wei=int(form.cleaned_data["price_per_second_wei"]))
    except ValueError as exc:  # above the most a node may ask
        return _page(request, miner, price_error={node.public_id: str(exc)}, status=400)
    return redirect("miner")


@require_POST
@miner_required
def withdrawal_create(request, miner):
    form = WithdrawalForm(request.POST)
    if not form.is_valid():
        return _page(request, miner, withdrawal_form=form, status=400)
    try:
        withdrawal_request(miner=miner, amount=int(form.cleaned_data["amount_wei"]),
                           address=form.cleaned_data["address"])
    except ApiError as exc:  # not enough available, under the minimum, not an address
        return _page(request, miner, withdrawal_form=form, withdrawal_error=exc.detail, status=exc.status)
    return redirect("miner")


@require_POST
@miner_required
def token_revoke(request, miner, token_id: int):
    token = EnrollmentToken.objects.filter(pk=token_id, miner=miner).first()
    if token is None:
        raise Http404("no such token")
    enrollment_token_revoke(token=token)
    return redirect("miner")
