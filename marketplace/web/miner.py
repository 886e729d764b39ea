"""The miner dashboard (/miner/): nodes, enrolment tokens, earnings."""
from __future__ import annotations

from datetime import timedelta

from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from jobs.selectors import miner_earnings
from marketplace.web.access import miner_required
from marketplace.web.charts import daily_wei_chart
from nodes.models import EnrollmentToken
from nodes.selectors import miner_nodes_overview
from nodes.services import enrollment_token_create, enrollment_token_revoke, runnode_command

CHART_DAYS = 30


def _page(request, miner, issued=None):
    now = timezone.now()
    earnings = miner_earnings(miner=miner, start=now - timedelta(days=CHART_DAYS))
    tokens = EnrollmentToken.objects.filter(miner=miner, used_at__isnull=True, revoked_at__isnull=True,
                                            expires_at__gt=now).order_by("-created_at")
    return render(request, "web/miner.html", {
        "miner": miner,
        "nodes": miner_nodes_overview(miner=miner),
        "tokens": tokens,
        "earnings": earnings,
        "chart": daily_wei_chart(title="Earnings per day", days=CHART_DAYS, today=now.date(),
                                 totals={d["date"]: int(d["payout_wei"]) for d in earnings["days"]}),
        "issued": issued,
        "command": runnode_command(marketplace_url=request.build_absolute_uri("/"), secret=issued.secret)
        if issued else "",
    })


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
def token_revoke(request, miner, token_id: int):
    token = EnrollmentToken.objects.filter(pk=token_id, miner=miner).first()
    if token is None:
        raise Http404("no such token")
    enrollment_token_revoke(token=token)
    return redirect("miner")
