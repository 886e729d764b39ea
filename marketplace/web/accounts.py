"""Signing in and out, and where each person lands."""
from __future__ import annotations

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import redirect

from marketplace.models import Customer, Miner
from marketplace.web.login_throttle import login_locked_for


class ThrottledAuthenticationForm(AuthenticationForm):
    def clean(self):
        username = self.data.get("username", "")
        self._refuse_if_locked(username)
        try:
            return super().clean()
        except forms.ValidationError:
            self._refuse_if_locked(username)  # this very attempt went over the limit: say so
            raise

    def _refuse_if_locked(self, username: str) -> None:
        wait = login_locked_for(username, self.request)
        if wait:
            minutes = max(1, round(wait / 60))
            raise forms.ValidationError(
                f"Too many failed sign-ins. Try again in about {minutes} minute{'s' if minutes != 1 else ''}.",
                code="locked",
            )


class SignInView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    template_name = "web/sign_in.html"
    redirect_authenticated_user = True


@login_required
def home(request):
    """Customers to their dashboard, miners to theirs, staff to the console."""
    if Customer.objects.filter(user=request.user).exists():
        return redirect("dashboard")
    if Miner.objects.filter(user=request.user).exists():
        return redirect("miner")
    if request.user.is_staff:
        return redirect("admin:index")
    return redirect("dashboard")  # explains that this account has no customer profile
