from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm

from accounts.models import User
from accounts.ratelimit import attempt_failed, attempts_exceeded, attempts_reset


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
    """Log-in, refused for a while after too many failures for one email from one address."""

    def _throttle_key(self) -> str:
        email = (self.data.get("username") or "").strip().lower()
        address = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        return f"login-failures:{address}:{email}"

    def clean(self) -> dict[str, Any]:
        key = self._throttle_key()
        if attempts_exceeded(key, limit=settings.LOGIN_ATTEMPTS_LIMIT):
            minutes = int(settings.LOGIN_ATTEMPTS_WINDOW.total_seconds() // 60)
            raise forms.ValidationError(
                f"Too many failed log-in attempts. Try again in {minutes} minutes, "
                "or reset your password.",
                code="throttled",
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            attempt_failed(key, window_seconds=int(settings.LOGIN_ATTEMPTS_WINDOW.total_seconds()))
            raise
        attempts_reset(key)
        return cleaned


class LoginForm(ThrottledLogin):
    pass


class StaffLoginForm(ThrottledLogin, AdminAuthenticationForm):
    """The admin's log-in, throttled like the dashboard's (staff passwords are worth more)."""
