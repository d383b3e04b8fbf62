"""The Seats tab and its confirmation pages. Every page that moves money shows exactly what will be
charged, to which card and when the next charge comes, and carries a fresh idempotency key."""

import re
import uuid
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts.models import User
from billing.selectors import saved_card
from billing.templatetags.money import cents
from organizations.access import membership_for
from organizations.models import Membership, Organization
from organizations.roles import Permission, allows, permission_to_manage
from payments.gateway import GatewayError
from seats import selectors, services
from seats.exceptions import (
    AuthenticationRequired,
    PaymentFailed,
    SeatError,
    SeatsInUse,
    StalePreview,
)
from seats.forms import (
    AddConfirmForm,
    AddForm,
    PurchaseConfirmForm,
    PurchaseForm,
    RemoveConfirmForm,
    RemoveForm,
)
from seats.models import SeatChange, SeatSubscription

# A Checkout session id as Stripe and the sandbox make them (cs_test_…, cs_live_…); anything else
# in the return URL is not one, and never reaches the gateway or the database.
CHECKOUT_SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,200}")

GATEWAY_DOWN = (
    "The payment provider could not be reached, so nothing was confirmed. Try again in a minute; "
    "confirming again never charges twice."
)


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _manager(request: HttpRequest, org_id: UUID) -> Membership:
    return membership_for(request, org_id, permission=Permission.MANAGE_SEATS)


def _date(moment: Any) -> str:
    return f"{moment.day} {moment:%b %Y}"


def _seats(count: int, adjective: str = "") -> str:
    """ "1 seat", "3 seats", "1 empty seat"."""
    words = f"{adjective} seat" if adjective else "seat"
    return f"{count} {words}{'' if count == 1 else 's'}"


def _page(
    request: HttpRequest,
    membership: Membership,
    template: str,
    *,
    status: int = 200,
    **context: Any,
) -> HttpResponse:
    return render(
        request, template, {"membership": membership, "tab": "seats", **context}, status=status
    )


@login_required
def seats_tab(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = _manager(request, org_id)
    organization = membership.organization
    if session_id := request.GET.get("session", ""):
        return _checkout_returned(request, organization, session_id)
    occupancy = selectors.seat_occupancy(organization=organization)
    subscription = occupancy.subscription
    live = subscription is not None and subscription.is_live
    return _page(
        request,
        membership,
        "seats/tab.html",
        occupancy=occupancy,
        subscription=subscription,
        live=live,
        plans=list(selectors.seat_plans()),
        purchase_form=None
        if live
        else PurchaseForm(
            occupied=occupancy.occupied,
            initial={"seats": max(occupancy.occupied, 1), "plan": "teams"},
        ),
        add_form=AddForm(initial={"seats": 1}) if live else None,
        # One seat by default: removing is deliberate, never "every empty seat" by a slip.
        remove_form=RemoveForm(occupancy=occupancy, initial={"seats": 1}) if live else None,
        pending_purchase=selectors.pending_purchase(organization=organization),
        changes=selectors.seat_changes(organization=organization)[:10],
    )


def _checkout_returned(
    request: HttpRequest, organization: Organization, session_id: str
) -> HttpResponse:
    """Back from the seat Checkout: mirror what the gateway says, say what happened, and come
    back to the plain Seats tab (a reload says nothing twice)."""
    if not CHECKOUT_SESSION_ID.fullmatch(session_id):
        return redirect("org_seats", org_id=organization.pk)
    try:
        services.seats_checkout_returned(organization=organization, session_id=session_id)
    except GatewayError:
        messages.info(request, "Your payment is being confirmed; the seats appear shortly.")
        return redirect("org_seats", org_id=organization.pk)
    change = selectors.purchase_for_checkout(organization=organization, session_id=session_id)
    if change is None:
        pass
    elif change.status == SeatChange.Status.SUCCEEDED:
        messages.success(request, f"Payment received. {_purchase_message(change)}")
    elif change.status == SeatChange.Status.FAILED:
        messages.error(request, f"The seat purchase did not go through: {change.failure_message}")
    else:
        messages.info(request, "Your payment is being confirmed; the seats appear shortly.")
    return redirect("org_seats", org_id=organization.pk)


# Purchase


@login_required
def seats_buy(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = _manager(request, org_id)
    organization = membership.organization
    occupied = selectors.occupied_seat_count(organization_id=organization.pk)
    key = uuid.uuid4()
    form: PurchaseForm
    if request.method == "POST":
        form = PurchaseConfirmForm(request.POST, occupied=occupied)
        if form.is_valid():
            data = form.cleaned_data
            seats_url = settings.SITE_URL + reverse("org_seats", args=[organization.pk])
            try:
                started = services.seats_purchase(
                    actor=_user(request),
                    organization=organization,
                    plan=data["plan"],
                    seats=data["seats"],
                    idempotency_key=str(data["key"]),
                    success_url=seats_url + "?session={CHECKOUT_SESSION_ID}",
                    cancel_url=settings.SITE_URL
                    + reverse("org_seats_buy", args=[organization.pk])
                    + f"?plan={data['plan'].code}&seats={data['seats']}",
                )
            except PaymentFailed as failed:
                form.add_error(None, f"{failed.message} Nothing was bought or charged.")
            except SeatError as refused:
                form.add_error(None, refused.message)
            except GatewayError:
                form.add_error(None, GATEWAY_DOWN)
                key = data["key"]
            else:
                change = started.change
                if started.checkout_url:
                    return redirect(started.checkout_url)
                if change.status == SeatChange.Status.FAILED:
                    form.add_error(None, f"{change.failure_message} Nothing was bought.")
                else:
                    messages.success(request, _purchase_message(change))
                    return redirect("org_seats", org_id=org_id)
    else:
        form = PurchaseForm(request.GET or None, occupied=occupied)
    quote = None
    if form.is_valid():
        try:
            quote = selectors.seat_purchase_quote(
                organization=organization,
                plan=form.cleaned_data["plan"],
                seats=form.cleaned_data["seats"],
            )
        except GatewayError:
            form.add_error(None, GATEWAY_DOWN)
    status = 400 if request.method == "POST" or (request.GET and not form.is_valid()) else 200
    return _page(
        request, membership, "seats/buy.html", form=form, quote=quote, key=key, status=status
    )


def _charged(change: SeatChange) -> tuple[SeatSubscription, str]:
    """The subscription now, and ": $36.00 charged today (invoice KB-000123)" or ""."""
    subscription = SeatSubscription.objects.get(organization_id=change.organization_id)
    receipt = getattr(change, "receipt", None)
    invoice = f" (invoice {receipt.invoice_number})" if receipt and receipt.invoice_number else ""
    return subscription, f": {cents(change.amount)} charged today{invoice}" if change.amount else ""


def _purchase_message(change: SeatChange) -> str:
    subscription, charged = _charged(change)
    return (
        f"You bought {_seats(change.seats)}{charged}. Renewal is monthly; next invoice on "
        f"{_date(subscription.current_period_end)} (UTC)."
    )


# Addition


@login_required
def seats_add(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = _manager(request, org_id)
    organization = membership.organization
    subscription = selectors.seat_subscription(organization=organization)
    if subscription is not None and subscription.on_hold:
        messages.error(request, services.SEATS_ON_HOLD)
        return redirect("org_seats", org_id=org_id)
    if subscription is None or not subscription.is_live:
        messages.error(request, "This organization has no seats yet; buy seats first.")
        return redirect("org_seats", org_id=org_id)
    key = uuid.uuid4()
    preview = None
    notice = ""
    form: AddForm
    if request.method == "POST":
        form = AddConfirmForm(request.POST)
        if form.is_valid():
            outcome = _addition_confirmed(request, organization, form)
            if isinstance(outcome, HttpResponse):
                return outcome
            if isinstance(outcome, StalePreview):
                preview, notice = outcome.preview, outcome.message
            elif outcome is GATEWAY_DOWN:
                key = form.cleaned_data["key"]
    else:
        form = AddForm(request.GET or None)
    if preview is None and form.is_valid():
        try:
            preview = selectors.seat_addition_preview(
                organization=organization, seats=form.cleaned_data["seats"]
            )
        except SeatError as refused:
            form.add_error(None, refused.message)
        except GatewayError:
            form.add_error(None, GATEWAY_DOWN)
    htmx = bool(getattr(request, "htmx", False))
    template = "seats/_add_preview.html" if htmx else "seats/add.html"
    # htmx swaps only 2xx answers: its partial carries the errors with a 200.
    status = 400 if form.errors and not preview and not htmx else 200
    return _page(
        request,
        membership,
        template,
        form=form,
        preview=preview,
        notice=notice,
        key=key,
        subscription=subscription,
        status=status,
    )


def _addition_confirmed(
    request: HttpRequest, organization: Organization, form: AddConfirmForm
) -> HttpResponse | StalePreview | str | None:
    """Charge a confirmed addition: a redirect when done, the stale preview to show again, or the
    error (added to the form) when nothing was charged."""
    data = form.cleaned_data
    try:
        change = services.seats_add(
            actor=_user(request),
            organization=organization,
            seats=data["seats"],
            idempotency_key=str(data["key"]),
            terms=form.terms(),
        )
    except StalePreview as stale:
        return stale
    except SeatError as refused:
        if isinstance(refused, AuthenticationRequired):
            # The bank wants the payer to confirm the charge; the seats come when they do.
            return redirect(refused.action_url)
        message = _declined(refused) if isinstance(refused, PaymentFailed) else refused.message
        form.add_error(None, message)
        return None
    except GatewayError:
        form.add_error(None, GATEWAY_DOWN)
        return GATEWAY_DOWN
    if change.status == SeatChange.Status.FAILED:
        form.add_error(None, f"{change.failure_message} No seats were added.")
        return None
    messages.success(request, _addition_message(change))
    return redirect("org_seats", org_id=organization.pk)


def _declined(failed: PaymentFailed) -> str:
    return (
        f"{failed.message} No seats were added. The invoice for them stays open for 23 hours: "
        "update the card and pay it on the Invoices tab to get the seats, or let it lapse."
    )


def _addition_message(change: SeatChange) -> str:
    subscription, charged = _charged(change)
    return (
        f"Added {_seats(change.seats)}{charged}. You now have "
        f"{_seats(subscription.quantity)}; the billing date stays "
        f"{_date(subscription.current_period_end)} (UTC), when "
        f"{cents(subscription.monthly_amount)} is due."
    )


# Removal


@login_required
def seats_remove(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = _manager(request, org_id)
    organization = membership.organization
    occupancy = selectors.seat_occupancy(organization=organization)
    subscription = occupancy.subscription
    if subscription is None or not subscription.is_live:
        messages.error(request, "This organization has no seats to remove.")
        return redirect("org_seats", org_id=org_id)
    key = uuid.uuid4()
    in_use: SeatsInUse | None = None
    form: RemoveForm
    if request.method == "POST":
        form = RemoveConfirmForm(request.POST, occupancy=occupancy)
        if form.is_valid():
            data = form.cleaned_data
            try:
                change = services.seats_remove(
                    actor=_user(request),
                    organization=organization,
                    seats=data["seats"],
                    idempotency_key=str(data["key"]),
                )
            except SeatsInUse as refused:
                in_use = refused
            except SeatError as refused:
                form.add_error(None, refused.message)
            except GatewayError:
                form.add_error(None, GATEWAY_DOWN)
                key = data["key"]
            else:
                messages.success(request, _removal_message(change))
                return redirect("org_seats", org_id=org_id)
    else:
        form = RemoveForm(request.GET or None, occupancy=occupancy)
    if in_use is None and form.too_many:
        in_use = SeatsInUse(
            asked=form.cleaned_data["seats"], empty=occupancy.empty, holders=occupancy.holders
        )
    quote = None
    if form.is_valid() and in_use is None and not form.errors:
        quote = selectors.RemovalQuote(
            subscription=subscription, seats=form.cleaned_data["seats"], occupancy=occupancy
        )
    status = 200 if quote or not (form.errors or in_use) else 400
    return _page(
        request,
        membership,
        "seats/remove.html",
        form=form,
        quote=quote,
        in_use=in_use,
        occupancy=occupancy,
        subscription=subscription,
        key=key,
        removable_roles=[
            role
            for role in ("owner", "admin", "member")
            if allows(membership.role, permission_to_manage(role))
        ],
        status=status,
    )


def _removal_message(change: SeatChange) -> str:
    subscription = SeatSubscription.objects.get(organization_id=change.organization_id)
    return (
        f"Removed {_seats(change.seats, 'empty')}; you now have {subscription.quantity}. No "
        f"refund or credit. The next invoice, on {_date(subscription.current_period_end)} "
        f"(UTC), is {cents(subscription.monthly_amount)}."
    )


# Cancel and resume


@login_required
def seats_cancel(request: HttpRequest, org_id: UUID) -> HttpResponse:
    return _cancel_or_resume(request, org_id, cancel=True)


@login_required
def seats_resume(request: HttpRequest, org_id: UUID) -> HttpResponse:
    return _cancel_or_resume(request, org_id, cancel=False)


def _cancel_or_resume(request: HttpRequest, org_id: UUID, *, cancel: bool) -> HttpResponse:
    membership = _manager(request, org_id)
    organization = membership.organization
    subscription = selectors.seat_subscription(organization=organization)
    # Seats on hold (unpaid) may be cancelled, not resumed.
    if subscription is None or not (subscription.is_live or (cancel and subscription.on_hold)):
        messages.error(request, "This organization has no running seat subscription.")
        return redirect("org_seats", org_id=org_id)
    if request.method == "POST":
        service = services.seats_cancel if cancel else services.seats_resume
        try:
            subscription = service(actor=_user(request), organization=organization)
        except SeatError as refused:
            messages.error(request, refused.message)
        except GatewayError:
            messages.error(request, GATEWAY_DOWN)
        else:
            end = _date(subscription.current_period_end)
            messages.success(
                request,
                f"The seats end on {end} (UTC); no further invoice. Until then nothing changes."
                if cancel
                else f"The seats continue: next invoice on {end} (UTC), "
                f"{cents(subscription.monthly_amount)}.",
            )
        return redirect("org_seats", org_id=org_id)
    card = None
    if not cancel:
        try:
            card = saved_card(organization=organization)
        except GatewayError:
            card = None
    return _page(
        request,
        membership,
        "seats/cancel.html" if cancel else "seats/resume.html",
        subscription=subscription,
        card=card,
    )
