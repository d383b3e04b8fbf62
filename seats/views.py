from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from organizations.access import membership_for
from organizations.roles import Permission


@login_required
def seats_tab(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = membership_for(request, org_id, permission=Permission.MANAGE_SEATS)
    return render(
        request,
        "organizations/coming_soon.html",
        {"membership": membership, "tab": "seats", "what": "Seat subscriptions"},
    )
