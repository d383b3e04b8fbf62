"""The organization's account status (its lifecycle and timeline) and the owner's delete."""

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.models import User
from dunning import closing, selectors
from dunning.forms import DeleteOrganizationForm
from invoices.selectors import overdue_invoices
from organizations.access import membership_for
from organizations.roles import Permission


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


@login_required
def account_status(request: HttpRequest, org_id: UUID) -> HttpResponse:
    """Where the organization stands with its payments, and every move so far. Open while
    suspended, like every billing page."""
    membership = membership_for(
        request, org_id, permission=Permission.MANAGE_BILLING, allow_suspended=True
    )
    organization = membership.organization
    return render(
        request,
        "dunning/status.html",
        {
            "membership": membership,
            "tab": "invoices",
            "transitions": selectors.lifecycle_transitions(organization=organization)[:50],
            "overdue": list(overdue_invoices(organization=organization)),
        },
    )


@login_required
def organization_delete(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = membership_for(request, org_id, permission=Permission.MANAGE_OWNERS)
    organization = membership.organization
    form = DeleteOrganizationForm(request.POST or None, organization_name=organization.name)
    if request.method == "POST" and form.is_valid():
        closing.organization_delete(organization=organization, actor=_user(request))
        messages.success(request, f"{organization.name} is deleted.")
        return redirect("personal_profile")
    return render(
        request,
        "dunning/delete.html",
        {"membership": membership, "tab": "settings", "form": form},
    )
