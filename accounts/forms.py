from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm

from accounts.models import User
from accounts.ratelimit import client_address, login_attempt_allowed, login_attempt_succeeded


class SignupForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "name")

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email exists; log in instead.")
        return email


class ThrottledLogin(AuthenticationForm):
    """Log-in, refused for a while after too many attempts for one email from one address, or
    for one email from anywhere. Each attempt is counted before its password is checked, so a
    burst of parallel guesses gets at most the limit's worth of checks."""

    def clean(self) -> dict[str, Any]:
        email = self.cleaned_data.get("username") or ""
        if not email or not self.cleaned_data.get("password"):
            return super().clean()  # no password to check: the field errors say what is missing
        address = client_address(self.request) if self.request else ""
        if not login_attempt_allowed(email=email, address=address):
            minutes = int(settings.LOGIN_ATTEMPTS_WINDOW.total_seconds() // 60)
            raise forms.ValidationError(
                f"Too many failed log-in attempts. Try again in {minutes} minutes, "
                "or reset your password.",
                code="throttled",
            )
        cleaned = super().clean()  # a wrong password raises here, and the attempt stays counted
        login_attempt_succeeded(email=email, address=address)
        return cleaned


class LoginForm(ThrottledLogin):
    pass


class StaffLoginForm(ThrottledLogin, AdminAuthenticationForm):
    """The admin's log-in, throttled like the dashboard's (staff passwords are worth more)."""
