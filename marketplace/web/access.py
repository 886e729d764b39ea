"""Who may see a dashboard: a signed-in person with a customer (or miner) account, and only their own."""
from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from marketplace.models import Customer, Miner


def _role_required(model, role: str):
    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            account = model.objects.filter(user=request.user).first()
            if account is None:
                return render(request, "web/no_account.html", {"role": role}, status=403)
            return view(request, account, *args, **kwargs)

        return wrapped

    return decorator


customer_required = _role_required(Customer, "customer")
miner_required = _role_required(Miner, "miner")
