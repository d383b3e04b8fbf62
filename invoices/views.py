"""The Invoices tab, one invoice, its PDF, the CSV export, billing details and "pay now". Every
page here stays open while the organization is suspended: paying is how it comes back."""

import csv
from collections.abc import Iterator
from datetime import datetime
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from accounts.models import User
from billing import selectors as billing_selectors
from billing import services as billing_services
from billing.forms import BillingDetailsForm
from billing.templatetags.money import cents
from invoices import selectors, services
from invoices.exceptions import NothingToPay, PayNowBusy
from invoices.forms import InvoiceFilterForm, PayNowForm
from invoices.models import Invoice
from organizations.access import membership_for
from organizations.models import Membership, Organization
from organizations.roles import Permission
from payments.gateway import GatewayError, PaymentMethod

PAGE_SIZE = 25


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _billing_membership(request: HttpRequest, org_id: UUID) -> Membership:
    return membership_for(
        request, org_id, permission=Permission.MANAGE_BILLING, allow_suspended=True
    )


def _card(request: HttpRequest, membership: Membership) -> tuple[PaymentMethod | None, bool]:
    """(saved card, whether the gateway answered). Back from the gateway's card page, it also
    says whether the card changed there."""
    try:
        card = billing_selectors.saved_card(organization=membership.organization)
    except GatewayError:
        messages.warning(request, "The payment provider did not answer; the card is not shown.")
        return None, False
    _card_returned(request, membership, card)
    return card, True


# Where the gateway's card page sends the payer back: the page it was opened from.
CARD_RETURN_PAGES = {"billing": "org_billing", "pay": "org_pay_now"}
CARD_RETURNED = "card"


def _card_session_key(membership: Membership) -> str:
    return f"card-before:{membership.organization_id}"


def _card_returned(
    request: HttpRequest, membership: Membership, card: PaymentMethod | None
) -> None:
    """The gateway's page has one way back whether a card was saved or not (Stripe's portal
    too), so the card is compared with the one noted on the way out."""
    if request.method != "GET" or request.GET.get(CARD_RETURNED) != "back":
        return
    before = request.session.pop(_card_session_key(membership), None)
    if before is None:
        return
    if card is not None and card.id != before:
        messages.success(
            request,
            f"Card saved: {card.brand.title()} ending in {card.last4}. It is the card charged "
            "from now on.",
        )
    else:
        messages.info(request, "The payment method was not changed.")


@login_required
@require_GET
def invoices_tab(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = _billing_membership(request, org_id)
    form = InvoiceFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        messages.error(request, f"{form.error_text()} Showing all invoices instead.")
    invoices = selectors.invoices_filtered(
        organization=membership.organization, filters=form.filters()
    )
    page = Paginator(invoices, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "invoices/list.html",
        {
            "membership": membership,
            "tab": "invoices",
            "overdue": list(selectors.overdue_invoices(organization=membership.organization)),
            "form": form,
            "filtered": form.filters().active,
            "page": page,
            "totals": selectors.invoice_totals(invoices),
            "querystring": form.querystring(),
        },
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _dollars(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}{dollars}.{rest:02d}"


# No invoice carries tax: the product sells at list price with no tax rates and no Stripe Tax
# (the sandbox neither), so each invoice shows its tax line as $0.00, as Stripe's invoices do.
INVOICE_TAX_CENTS = 0


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


CSV_HEADER = (
    "number",
    "kind",
    "status",
    "created_utc",
    "period_start_utc",
    "period_end_utc",
    "currency",
    "amount_due",
    "amount_paid",
    "amount_remaining",
    "attempt_count",
    "paid_at_utc",
    "hosted_invoice_url",
)


def _csv_rows(invoices: Iterator[Invoice]) -> Iterator[list[str]]:
    yield list(CSV_HEADER)
    for invoice in invoices:
        yield [
            invoice.number,
            invoice.kind,
            invoice.status,
            _when(invoice.created),
            _when(invoice.period_start),
            _when(invoice.period_end),
            invoice.currency.upper(),
            _dollars(invoice.amount_due),
            _dollars(invoice.amount_paid),
            _dollars(invoice.amount_remaining),
            str(invoice.attempt_count),
            _when(invoice.paid_at),
            invoice.hosted_invoice_url,
        ]


@login_required
@require_GET
def invoices_csv(request: HttpRequest, org_id: UUID) -> HttpResponseBase:
    """The filtered list as CSV, streamed row by row (amounts in dollars, times in UTC)."""
    membership = _billing_membership(request, org_id)
    form = InvoiceFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        # Bad input: the list says what was wrong, rather than a file of something else.
        return redirect(f"{reverse('org_invoices', args=[org_id])}?{request.GET.urlencode()}")
    invoices = selectors.invoices_filtered(
        organization=membership.organization, filters=form.filters()
    ).iterator(chunk_size=500)
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in _csv_rows(invoices)), content_type="text/csv"
    )
    response["Content-Disposition"] = 'attachment; filename="invoices.csv"'
    return response


def _invoice(membership: Membership, invoice_id: int) -> Invoice:
    return get_object_or_404(
        selectors.invoices_of_organization(organization=membership.organization), pk=invoice_id
    )


@login_required
@require_GET
def invoice_detail(request: HttpRequest, org_id: UUID, invoice_id: int) -> HttpResponse:
    membership = _billing_membership(request, org_id)
    invoice = _invoice(membership, invoice_id)
    overdue = (
        selectors.overdue_invoices(organization=membership.organization)
        .filter(pk=invoice.pk)
        .exists()
    )
    return render(
        request,
        "invoices/detail.html",
        {
            "membership": membership,
            "tab": "invoices",
            "invoice": invoice,
            "lines": invoice.line_items,
            "tax": INVOICE_TAX_CENTS,
            "overdue": overdue,
        },
    )


@login_required
@require_GET
def invoice_pdf(request: HttpRequest, org_id: UUID, invoice_id: int) -> HttpResponse:
    """The gateway's PDF of the invoice (drafts have none yet)."""
    membership = _billing_membership(request, org_id)
    invoice = _invoice(membership, invoice_id)
    if not invoice.invoice_pdf:
        raise Http404("This invoice has no PDF yet: drafts get one when they are finalized.")
    return redirect(invoice.invoice_pdf)


@login_required
def billing(request: HttpRequest, org_id: UUID) -> HttpResponse:
    """Billing details (synced to the gateway customer), the saved card, the account's billing
    state and its timeline."""
    membership = _billing_membership(request, org_id)
    organization = membership.organization
    profile = billing_services.billing_profile_for(organization=organization)
    form = BillingDetailsForm(request.POST if request.method == "POST" else None, instance=profile)
    if request.method == "POST":
        if form.is_valid():
            details = {
                name: form.cleaned_data[name] for name in billing_services.BILLING_DETAIL_FIELDS
            }
            try:
                billing_services.billing_details_update(
                    actor=_user(request), organization=organization, **details
                )
            except GatewayError as error:
                messages.warning(
                    request,
                    f"Billing details saved here, but the payment provider refused them ({error});"
                    " invoices keep the old details until you save again.",
                )
            else:
                messages.success(request, "Billing details saved; new invoices will show them.")
            return redirect("org_billing", org_id=org_id)
        messages.error(request, "Some details need fixing; see below.")
    card, _ = _card(request, membership)
    return render(
        request,
        "invoices/billing.html",
        {
            "membership": membership,
            "tab": "invoices",
            "form": form,
            "card": card,
            "overdue": list(selectors.overdue_invoices(organization=organization)),
        },
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_GET
def payment_method(request: HttpRequest, org_id: UUID) -> HttpResponse:
    """To the gateway's page for replacing the card; it sends the customer back to Billing."""
    membership = _billing_membership(request, org_id)
    back = CARD_RETURN_PAGES.get(request.GET.get("back", ""), "org_billing")
    return_url = (
        settings.SITE_URL + reverse(back, kwargs={"org_id": org_id}) + f"?{CARD_RETURNED}=back"
    )
    try:
        before = billing_selectors.saved_card(organization=membership.organization)
        url = billing_services.payment_method_update_url(
            organization=membership.organization, return_url=return_url
        )
    except GatewayError as error:
        messages.error(request, f"The payment provider did not answer ({error}); try again.")
        return redirect(back, org_id=org_id)
    request.session[_card_session_key(membership)] = before.id if before else ""
    return redirect(url)


@login_required
def pay_now(request: HttpRequest, org_id: UUID) -> HttpResponse:
    """A confirmation page stating what is charged, to which card, and when the next charge
    comes; on confirmation the overdue invoices are paid and the organization is restored within
    the same request."""
    membership = _billing_membership(request, org_id)
    organization = membership.organization
    plan = services.pay_now_plan(organization=organization)
    overdue = [*plan.to_pay, *plan.to_repay, *plan.to_void]
    form = PayNowForm(
        request.POST if request.method == "POST" else None, initial={"total_cents": plan.total}
    )
    if request.method == "POST" and not overdue:
        messages.info(request, "Nothing is overdue: there is nothing to pay.")
        return redirect("org_invoices", org_id=org_id)
    if request.method == "POST" and form.is_valid():
        shown = form.cleaned_data["total_cents"]
        if shown is None or shown == plan.total:
            return _pay_now_confirmed(request, organization)
        form = PayNowForm(initial={"total_cents": plan.total})
        messages.warning(
            request,
            f"What is due changed since the page was shown: now {cents(plan.total)} USD. "
            "Nothing was charged; check it and pay again.",
        )
    card, answered = _card(request, membership)
    renewal = None
    if overdue and plan.restart is None:
        try:
            renewal = services.upcoming_renewal(organization=organization)
        except GatewayError:
            renewal = None
    return render(
        request,
        "invoices/pay_now.html",
        {
            "membership": membership,
            "tab": "invoices",
            "overdue": overdue,
            "plan": plan,
            "total": plan.total,
            "card": card,
            "card_known": answered,
            "renewal": renewal,
            "form": form,
        },
        status=400 if request.method == "POST" else 200,
    )


def _pay_now_confirmed(request: HttpRequest, organization: Organization) -> HttpResponse:
    """Pay what is overdue now; say what happened; to the bank's page if it asks the payer."""
    org_id = organization.pk
    try:
        result = services.invoices_pay_now(
            actor=_user(request),
            organization=organization,
            return_url=settings.SITE_URL + reverse("org_invoices", kwargs={"org_id": org_id}),
        )
    except (NothingToPay, PayNowBusy) as nothing_now:
        messages.info(
            request,
            "Nothing is overdue any more."
            if isinstance(nothing_now, NothingToPay)
            else "A payment for this organization is being made right now; look again soon.",
        )
        return redirect("org_invoices", org_id=org_id)
    except GatewayError as error:
        messages.error(request, f"The payment provider did not take it ({error}); try again.")
        return redirect("org_pay_now", org_id=org_id)
    numbers = ", ".join(invoice.display_number for invoice in result.paid)
    if result.paid:
        messages.success(request, f"Paid {numbers}.")
    if result.restarted is not None:
        messages.success(
            request,
            f"{result.restarted.quantity} seats started again; next invoice on "
            f"{result.restarted.current_period_end:%d %b %Y} (UTC).",
        )
    if result.restored:
        messages.success(request, f"{organization.name} is active again.")
    if result.action_url:
        # The bank wants the payer to confirm it (3-D Secure): there, then back to Invoices.
        return redirect(result.action_url)
    if result.failure is not None or result.problem:
        declined = result.failure.message if result.failure else ""
        messages.error(
            request,
            result.problem
            or f"The card was declined: {declined} Update the payment method and try again.",
        )
        return redirect("org_pay_now", org_id=org_id)
    return redirect("org_invoices", org_id=org_id)
