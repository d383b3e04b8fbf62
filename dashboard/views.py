"""The pages that compose every app: the organization's Overview (the home of billing), the
personal profile with its invoices and closed organizations, the audit log in sentences, and
the page for a form whose session changed (CSRF failure)."""

from datetime import UTC, date
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET

from accounts.models import User
from dashboard import selectors
from dashboard.audit import describe
from invoices.selectors import invoices_of_organization
from organizations.access import membership_for
from organizations.roles import Permission
from organizations.selectors import audit_events

INVOICES_PER_PAGE = 25
AUDIT_EVENTS_PER_PAGE = 50


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _today() -> date:
    # Usage rollups are kept per UTC day of the wall clock, as on the Usage pages.
    return timezone.now().astimezone(UTC).date()


@login_required
@require_GET
def overview(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = membership_for(request, org_id)
    return render(
        request,
        "dashboard/overview.html",
        {
            "membership": membership,
            "tab": "overview",
            "overview": selectors.organization_overview(
                membership=membership, user=_user(request), today=_today()
            ),
        },
    )


@login_required
@require_GET
def audit_log(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = membership_for(request, org_id, permission=Permission.MANAGE_SETTINGS)
    events = audit_events(organization=membership.organization)
    page = Paginator(events, AUDIT_EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    rows = [(event, describe(event)) for event in page.object_list]
    return render(
        request,
        "dashboard/audit_log.html",
        {"membership": membership, "tab": "audit", "page": page, "rows": rows},
    )


# Personal pages


@login_required
@require_GET
def personal_profile(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/personal.html",
        {"profile": selectors.personal_profile(user=_user(request))},
    )


@login_required
@require_GET
def personal_invoices(request: HttpRequest) -> HttpResponse:
    invoices = selectors.person_invoices(user=_user(request))
    page = Paginator(invoices, INVOICES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "dashboard/personal_invoices.html", {"page": page})


@login_required
@require_GET
def closed_organization(request: HttpRequest, closed_id: UUID) -> HttpResponse:
    """A closed organization's invoices and what happened, read-only, for its former owners
    and billing managers. Its dashboard stays closed (404) for everyone."""
    closed = selectors.closed_organization(user=_user(request), organization_id=closed_id)
    if closed is None:
        raise Http404("No such closed organization.")
    invoices = invoices_of_organization(organization=closed.organization)
    page = Paginator(invoices, INVOICES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "dashboard/closed.html", {"closed": closed, "page": page})


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a form posted from a page whose session has changed since (logged out
    or in again elsewhere, an expired session). Nothing was done; reloading gives a fresh form."""
    referer = request.headers.get("Referer", "")
    safe = url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    back = referer if safe else reverse("home")
    return render(request, "403_csrf.html", {"reason": reason, "back": back}, status=403)
