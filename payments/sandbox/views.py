"""The sandbox's hosted pages: Checkout, the payment-method page, the portal, invoices and PDFs.
Like Stripe's, they are reached by unguessable ids or signed links, not by the app's log-in."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from accounts.company import seller_details
from payments.sandbox import engine, objects, services
from payments.sandbox.forms import BankAccountForm, CardForm
from payments.sandbox.gateway import customer_page_claims
from payments.sandbox.models import (
    SandboxCheckoutSession,
    SandboxCustomer,
    SandboxInvoice,
)
from payments.sandbox.pdf import text_pdf


def checkout(request: HttpRequest, session_id: str) -> HttpResponse:
    """Stripe's hosted Checkout as the sandbox plays it: a card, or (one-time payments in US
    dollars) a US bank account debited by ACH, which completes the session unpaid until the bank
    answers days later."""
    session = get_object_or_404(
        SandboxCheckoutSession.objects.select_related("customer", "price"), pk=session_id
    )
    success_url = session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id)
    if session.status == "complete":
        return redirect(success_url)
    if session.status == "open" and session.expires_at <= engine.now():
        services.checkout_expire_if_due(session_id=session.id)
        session.refresh_from_db()
    by_bank = request.method == "POST" and request.POST.get("method") == "bank"
    form = CardForm(request.POST if request.method == "POST" and not by_bank else None)
    bank_form = BankAccountForm(request.POST if by_bank else None)
    offers_bank = session.mode == "payment" and session.currency == "usd"
    outcome = None
    if by_bank and offers_bank and session.status == "open" and bank_form.is_valid():
        outcome = services.checkout_pay_by_bank(
            session_id=session.id, account=bank_form.bank_account()
        )
    elif not by_bank and request.method == "POST" and session.status == "open" and form.is_valid():
        outcome = services.checkout_complete(session_id=session.id, card=form.card())
    if outcome is not None:
        if outcome.error is None:
            return redirect(outcome.redirect)
        session.refresh_from_db()
        if session.status == "complete":
            # Paid meanwhile (a second click, another tab): the payment went through once.
            return redirect(success_url)
        (bank_form if by_bank else form).add_error(None, outcome.error.message)
    failed = request.method == "GET" and request.GET.get("authentication") == "failed"
    status = 200 if session.status in ("open", "complete") else 410
    return render(
        request,
        "sandbox/checkout.html",
        {
            "session": session,
            "form": form,
            "bank_form": bank_form if offers_bank else None,
            "by_bank": by_bank,
            "authentication_failed": failed,
        },
        status=status,
    )


def _claims(token: str) -> dict[str, str]:
    try:
        return customer_page_claims(token)
    except signing.BadSignature:
        raise Http404("This link has expired or is not valid.") from None


def payment_method(request: HttpRequest, token: str) -> HttpResponse:
    claims = _claims(token)
    customer = get_object_or_404(
        SandboxCustomer.objects.select_related("default_payment_method"),
        pk=claims["customer"],
        deleted_at__isnull=True,
    )
    form = CardForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        outcome = services.payment_method_replace(customer_id=customer.id, card=form.card())
        if outcome.error is None:
            return redirect(claims["return_url"])
        form.add_error(None, outcome.error.message)
    return render(
        request,
        "sandbox/payment_method.html",
        {"customer": customer, "form": form, "return_url": claims["return_url"]},
    )


def portal(request: HttpRequest, token: str) -> HttpResponse:
    claims = _claims(token)
    customer = get_object_or_404(
        SandboxCustomer.objects.select_related("default_payment_method"),
        pk=claims["customer"],
        deleted_at__isnull=True,
    )
    invoices = (
        SandboxInvoice.objects.filter(customer=customer)
        .exclude(status="draft")
        .order_by("-created")[:50]
    )
    return render(
        request,
        "sandbox/portal.html",
        {
            "customer": customer,
            "invoices": invoices,
            "token": token,
            "return_url": claims["return_url"],
        },
    )


def invoice(request: HttpRequest, invoice_id: str) -> HttpResponse:
    record = get_object_or_404(
        SandboxInvoice.objects.select_related("customer__default_payment_method").exclude(
            status="draft"
        ),
        pk=invoice_id,
    )
    form = CardForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        outcome = services.invoice_pay_with_card(invoice_id=record.id, card=form.card())
        if outcome.error is None:
            return redirect(outcome.redirect or reverse_invoice(record.id))
        form.add_error(None, outcome.error.message)
    waiting = record.status == "open" and record.payment_intent_status == "requires_action"
    return render(
        request,
        "sandbox/invoice.html",
        {
            "invoice": record,
            "subtotal": _subtotal(record),
            "form": form,
            "authentication_url": engine.authentication_url(
                record.payment_intent, objects.site_url("sandbox_invoice", record.id)
            )
            if waiting
            else "",
        },
    )


def reverse_invoice(invoice_id: str) -> str:
    return objects.site_url("sandbox_invoice", invoice_id)


def _safe_next(request: HttpRequest) -> str:
    """Where to send the payer after authenticating: this site only, never elsewhere."""
    target = request.GET.get("next", "")[:2000]
    hosts = {urlsplit(settings.SITE_URL).netloc, request.get_host()}
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts=hosts):
        return target
    return ""


@require_http_methods(["GET", "POST"])
def authenticate(request: HttpRequest, payment_id: str) -> HttpResponse:
    """The bank's 3-D Secure page, as the sandbox plays it: two buttons, complete or fail."""
    target = services.awaiting_authentication(payment_id)
    if request.method == "POST":
        outcome_name = request.POST.get("outcome", "")
        if outcome_name not in ("complete", "fail") or target is None:
            return render(
                request,
                "sandbox/authenticate.html",
                {"target": target, "problem": "Nothing is waiting for this confirmation."},
                status=400 if target is not None else 410,
            )
        checkout = isinstance(target, SandboxCheckoutSession)
        outcome = services.payment_authenticate(
            payment_intent=payment_id, complete=outcome_name == "complete"
        )
        if outcome.redirect:
            return redirect(outcome.redirect)
        if checkout:
            return redirect(
                objects.site_url("sandbox_checkout", target.pk) + "?authentication=failed"
            )
        after = _safe_next(request) or reverse_invoice(str(target.pk))
        return redirect(after)
    if target is None:
        return render(
            request,
            "sandbox/authenticate.html",
            {"target": None, "problem": "Nothing is waiting for this confirmation any more."},
            status=410,
        )
    return render(
        request,
        "sandbox/authenticate.html",
        {
            "target": target,
            "amount": target.amount_due if isinstance(target, SandboxInvoice) else target.amount,
            "currency": target.currency,
        },
    )


def _money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


# The sandbox collects no tax (`automatic_tax` off and no tax rates, as in Stripe's invoice
# fixture): its invoices print a tax line of $0.00, and the lines' sum is the total.
SANDBOX_TAX = 0


def _subtotal(record: SandboxInvoice) -> int:
    """The lines' sum before tax."""
    return sum(int(line["amount"]) for line in record.lines)


def invoice_pdf(request: HttpRequest, invoice_id: str) -> HttpResponse:
    record = get_object_or_404(
        SandboxInvoice.objects.select_related("customer").exclude(status="draft"), pk=invoice_id
    )
    customer = record.customer
    seller = seller_details()
    lines: list[tuple[int, str]] = [
        (18, f"Invoice {record.number}"),
        (11, "Sandbox: no real money moved"),
        (11, ""),
        # The seller first, as on Stripe's invoices: name, address, tax ID.
        (11, f"From: {seller.name}"),
        *[(11, line) for line in seller.address_lines],
    ]
    if seller.vat_id:
        lines.append((11, f"VAT ID: {seller.vat_id}"))
    lines += [
        (11, ""),
        (11, f"Billed to: {customer.name or customer.email}"),
    ]
    if customer.email:
        lines.append((11, customer.email))
    address = ", ".join(v for v in customer.address.values() if v)
    if address:
        lines.append((11, address))
    for tax_id in customer.tax_ids:
        lines.append((11, f"Tax ID: {tax_id.get('value', '')}"))
    lines += [
        (11, f"Issued: {record.finalized_at or record.created:%Y-%m-%d %H:%M} UTC"),
        (11, f"Status: {record.status}"),
        (11, ""),
    ]
    for line in record.lines:
        lines.append((11, f"{line['description']}    {_money(line['amount'])}"))
    lines += [
        (11, ""),
        (11, f"Subtotal: {_money(_subtotal(record))}"),
        (11, f"Tax: {_money(SANDBOX_TAX)}"),
        (12, f"Total: {_money(record.amount_due)} {record.currency.upper()}"),
        (11, f"Paid: {_money(record.amount_paid)}"),
        (11, f"Remaining: {_money(record.amount_due - record.amount_paid)}"),
    ]
    response = HttpResponse(text_pdf(lines), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{record.number}.pdf"'
    return response
