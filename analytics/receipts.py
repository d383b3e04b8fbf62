"""Usage one request at a time, each with its receipt: the tokens, the list prices in force, the
arithmetic and the ledger entry, so that zero markup can be checked per request."""

from datetime import datetime
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from accounts.models import User
from analytics import selectors
from credits.selectors import usage_receipt, usage_records
from organizations.access import membership_for
from organizations.models import Membership
from organizations.roles import Permission, allows

PAGE_SIZE = 50
# The receipt's token kinds (the API's keys) as the page names them.
TOKEN_KIND_LABELS = {
    "input": "Input",
    "output": "Output",
    "cache_read": "Cache read",
    "cache_write": "Cache write",
}


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _requests_page(
    request: HttpRequest, *, account_id: int | None, only_user: User | None, context: dict
) -> HttpResponse:
    records = usage_records(account_id=account_id, user_id=only_user.pk if only_user else None)
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "analytics/requests.html", {**context, "page": page})


def _receipt_page(
    request: HttpRequest,
    *,
    account_id: int | None,
    only_user: User | None,
    entry_id: int,
    context: dict,
) -> HttpResponse:
    receipt = (
        usage_receipt(
            account_id=account_id,
            user_id=only_user.pk if only_user else None,
            entry_id=entry_id,
        )
        if account_id
        else None
    )
    if receipt is None:
        raise Http404("No such request here.")
    lines = [{**line, "label": TOKEN_KIND_LABELS[line["kind"]]} for line in receipt["lines"]]
    return render(
        request,
        "analytics/receipt.html",
        {
            **context,
            "receipt": receipt,
            "lines": lines,
            "when": datetime.fromisoformat(receipt["created_at"]),
        },
    )


def _org(request: HttpRequest, org_id: UUID) -> tuple[Membership, int | None, User | None, dict]:
    membership = membership_for(request, org_id)
    sees_everyone = allows(membership.role, Permission.VIEW_ALL_USAGE)
    context = {
        "membership": membership,
        "tab": "usage",
        "usage_url": reverse("org_usage", args=[org_id]),
        "requests_url": reverse("org_usage_requests", args=[org_id]),
        "sees_everyone": sees_everyone,
    }
    account_id = selectors.account_id_of(organization=membership.organization)
    return membership, account_id, None if sees_everyone else _user(request), context


def _personal(request: HttpRequest) -> tuple[int | None, User, dict]:
    user = _user(request)
    context = {
        "membership": None,
        "usage_url": reverse("personal_usage"),
        "requests_url": reverse("personal_usage_requests"),
        "sees_everyone": False,
    }
    return selectors.account_id_of(user=user), user, context


@login_required
def org_requests(request: HttpRequest, org_id: UUID) -> HttpResponse:
    _, account_id, only_user, context = _org(request, org_id)
    return _requests_page(request, account_id=account_id, only_user=only_user, context=context)


@login_required
def org_receipt(request: HttpRequest, org_id: UUID, entry_id: int) -> HttpResponse:
    _, account_id, only_user, context = _org(request, org_id)
    return _receipt_page(
        request, account_id=account_id, only_user=only_user, entry_id=entry_id, context=context
    )


@login_required
def personal_requests(request: HttpRequest) -> HttpResponse:
    account_id, user, context = _personal(request)
    return _requests_page(request, account_id=account_id, only_user=user, context=context)


@login_required
def personal_receipt(request: HttpRequest, entry_id: int) -> HttpResponse:
    account_id, user, context = _personal(request)
    return _receipt_page(
        request, account_id=account_id, only_user=user, entry_id=entry_id, context=context
    )
