"""The Usage tab of an organization, the personal usage page, their CSV exports and the
visibility setting. Each view resolves whose usage it is (organizations through the one door),
checks the filters, and renders what the selectors read from the rollups."""

import csv
from collections.abc import Iterator
from datetime import UTC, date
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from accounts.models import User
from analytics import selectors, services
from analytics.filters import UsageFilters, filters_parse
from analytics.forms import UsageVisibilityForm
from analytics.pages import page_context
from analytics.periods import Period
from analytics.selectors import CSV_COLUMNS, UsageScope
from organizations.access import membership_for
from organizations.models import Membership
from organizations.roles import Permission, allows


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _today() -> date:
    return timezone.now().astimezone(UTC).date()


def _org_scope(request: HttpRequest, membership: Membership) -> UsageScope:
    organization = membership.organization
    return UsageScope(
        account_id=selectors.account_id_of(organization=organization),
        organization=organization,
        viewer=_user(request),
        sees_everyone=allows(membership.role, Permission.VIEW_ALL_USAGE),
        members_see_totals=selectors.members_see_totals(organization=organization),
        can_manage_visibility=allows(membership.role, Permission.MANAGE_SETTINGS),
    )


def _personal_scope(request: HttpRequest) -> UsageScope:
    user = _user(request)
    return UsageScope(
        account_id=selectors.account_id_of(user=user),
        organization=None,
        viewer=user,
        sees_everyone=False,
    )


def _resolve(request: HttpRequest, scope: UsageScope) -> tuple[UsageFilters, Period, list[str]]:
    today = _today()
    parsed = filters_parse(request.GET, today=today)
    errors = list(parsed.errors)
    filters = selectors.filters_checked(scope=scope, filters=parsed.filters, errors=errors)
    period = selectors.period_of(scope=scope, filters=filters, today=today)
    return filters, period, errors


def _page(
    request: HttpRequest,
    scope: UsageScope,
    *,
    base: str,
    csv_url: str,
    membership: Membership | None,
) -> HttpResponse:
    filters, period, errors = _resolve(request, scope)
    for error in errors:
        messages.warning(request, error)
    report = selectors.usage_report(scope=scope, filters=filters, period=period)
    context = page_context(scope=scope, filters=filters, report=report, base=base)
    context.update(
        membership=membership,
        tab="usage",
        base_url=base,
        csv_url=f"{csv_url}{filters.querystring()}",
    )
    if scope.can_manage_visibility and scope.organization is not None:
        context["visibility_form"] = UsageVisibilityForm(
            initial={"members_see_totals": scope.members_see_totals}
        )
        context["visibility_url"] = reverse("org_usage_visibility", args=[scope.organization.pk])
    return render(request, "analytics/usage.html", context)


@login_required
def org_usage(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = membership_for(request, org_id)
    return _page(
        request,
        _org_scope(request, membership),
        base=reverse("org_usage", args=[org_id]),
        csv_url=reverse("org_usage_csv", args=[org_id]),
        membership=membership,
    )


@login_required
def personal_usage(request: HttpRequest) -> HttpResponse:
    return _page(
        request,
        _personal_scope(request),
        base=reverse("personal_usage"),
        csv_url=reverse("personal_usage_csv"),
        membership=None,
    )


class _Echo:
    """A file for csv.writer that hands back each line instead of storing it."""

    def write(self, value: str) -> str:
        return value


# Cells a spreadsheet would run as a formula; project names come from the extension.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


CSV_BATCH = 1000  # rows per chunk sent: few chunks, and never more than this in memory


def _csv_lines(rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    batch = [writer.writerow(CSV_COLUMNS)]
    for day, user_id, email, provider, model, project, *counts in rows:
        batch.append(
            writer.writerow(
                [
                    day.isoformat(),
                    user_id or "",
                    _cell(email or ""),
                    _cell(provider),
                    _cell(model),
                    _cell(project),
                    *counts,
                ]
            )
        )
        if len(batch) >= CSV_BATCH:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def _csv(request: HttpRequest, scope: UsageScope, *, page_url: str, name: str) -> HttpResponseBase:
    filters, period, errors = _resolve(request, scope)
    if errors:
        # Bad input: the page says what was wrong and shows what the export would hold.
        return redirect(f"{page_url}?{request.GET.urlencode()}")
    rows = selectors.usage_rows(scope=scope, filters=filters, period=period)
    response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
    filename = f"usage-{slugify(name) or 'personal'}-{period.start}-{period.end}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
def org_usage_csv(request: HttpRequest, org_id: UUID) -> HttpResponseBase:
    membership = membership_for(request, org_id)
    return _csv(
        request,
        _org_scope(request, membership),
        page_url=reverse("org_usage", args=[org_id]),
        name=membership.organization.name,
    )


@login_required
def personal_usage_csv(request: HttpRequest) -> HttpResponseBase:
    return _csv(
        request, _personal_scope(request), page_url=reverse("personal_usage"), name="personal"
    )


@login_required
@require_POST
def org_usage_visibility(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = membership_for(request, org_id, permission=Permission.MANAGE_SETTINGS)
    form = UsageVisibilityForm(request.POST)
    form.is_valid()  # a checkbox: absent means off, nothing else to get wrong
    shown = bool(form.cleaned_data.get("members_see_totals"))
    services.usage_visibility_set(
        actor=_user(request), organization=membership.organization, members_see_totals=shown
    )
    messages.success(
        request,
        "Members now see the organization's totals beside their own usage."
        if shown
        else "Members now see only their own usage.",
    )
    return redirect("org_usage", org_id=org_id)
