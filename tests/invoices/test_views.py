"""The Invoices tab, an invoice, its PDF, the CSV export, billing details, the payment method and
"pay now": who may open them, what they show, and how they behave with bad input."""

import csv
import io
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing.models import BillingProfile
from billing.services import billing_profile_for
from dunning import lifecycle
from invoices.models import Invoice
from organizations.models import AuditEvent, Organization
from organizations.roles import Role
from payments.sandbox import engine
from payments.sandbox.models import (
    SandboxCustomer,
    SandboxEvent,
    SandboxInvoice,
    SandboxSubscription,
)
from tests.conftest import World, client_for
from tests.factories import MembershipFactory
from tests.invoices.conftest import Step, card_use, customer_of, subscribe
from tests.payments.sandbox_helpers import FAILS_ON_CHARGE, GOOD

pytestmark = pytest.mark.django_db
BILLING_ROLES = {Role.OWNER, Role.ADMIN, Role.BILLING_MANAGER}


def make_invoice(organization: Organization, n: int, **fields: Any) -> Invoice:
    profile = billing_profile_for(organization=organization)
    created = fields.pop("created", datetime(2027, 1, 1, 12, tzinfo=UTC) + timedelta(days=n))
    defaults: dict[str, Any] = {
        "billing_profile": profile,
        "gateway_id": f"in_{organization.pk.hex[:6]}_{n}",
        "number": f"KB-{n:06d}",
        "kind": Invoice.Kind.CREDIT_PURCHASE,
        "status": Invoice.Status.PAID,
        "amount_due": 5000,
        "amount_paid": 5000,
        "amount_remaining": 0,
        "invoice_pdf": f"http://testserver/sandbox/invoices/in_{n}/pdf",
        "hosted_invoice_url": f"http://testserver/sandbox/invoices/in_{n}/",
        "lines": [
            {
                "description": "$50.00 of credits",
                "amount": 5000,
                "quantity": 1,
                "proration": False,
                "period_start": created.isoformat(),
                "period_end": created.isoformat(),
            }
        ],
        "created": created,
        "observed_at": created,
    }
    return Invoice.objects.create(**{**defaults, **fields})


def url(name: str, world: World, invoice: Invoice | None = None) -> str:
    kwargs: dict[str, Any] = {"org_id": world.org.pk}
    if invoice is not None:
        kwargs["invoice_id"] = invoice.pk
    return reverse(name, kwargs=kwargs)


PAGES = [
    ("org_invoices", False, 200),
    ("org_invoices_csv", False, 200),
    ("org_invoice", True, 200),
    ("org_invoice_pdf", True, 302),
    ("org_billing", False, 200),
    ("org_pay_now", False, 200),
    ("org_account_status", False, 200),
    ("org_payment_method", False, 302),
]


@pytest.mark.parametrize(("name", "needs_invoice", "ok"), PAGES)
@pytest.mark.parametrize("role", [*Role, "outsider", "anonymous"])
def test_it_answers_each_role_by_the_matrix(
    world: World, name: str, needs_invoice: bool, ok: int, role: str
) -> None:
    customer_of(world.org)
    invoice = make_invoice(world.org, 1) if needs_invoice else None
    user = None if role == "anonymous" else world.person(role)
    response = client_for(user).get(url(name, world, invoice))
    if role == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    elif role == "outsider":
        assert response.status_code == 404
    elif role in BILLING_ROLES:
        assert response.status_code == ok
    else:
        assert response.status_code == 403


def test_a_neighbours_invoice_is_not_found_in_our_url(world: World) -> None:
    theirs = make_invoice(world.neighbour, 1)
    for name in ("org_invoice", "org_invoice_pdf"):
        assert client_for(world.owner).get(url(name, world, theirs)).status_code == 404


def test_the_list_shows_only_this_organizations_invoices_with_totals(world: World) -> None:
    make_invoice(world.org, 1)
    make_invoice(
        world.org,
        2,
        kind="seat_subscription",
        status="open",
        amount_paid=0,
        amount_remaining=5000,
        attempt_count=2,
    )
    make_invoice(world.neighbour, 3, amount_due=999_999)
    response = client_for(world.billing).get(url("org_invoices", world))
    page = response.content.decode()
    assert "KB-000001" in page
    assert "KB-000002" in page
    assert "KB-000003" not in page
    assert response.context["totals"] == {
        "count": 2,
        "amount_due": 10000,
        "amount_paid": 5000,
        "amount_remaining": 5000,
    }
    assert "$100.00" in page
    assert "$50.00" in page


def test_an_empty_list_says_what_to_do(world: World) -> None:
    response = client_for(world.owner).get(url("org_invoices", world))
    assert b"No invoices yet" in response.content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"kind": "seat_subscription"}, ["KB-000002"]),
        ({"status": "open"}, ["KB-000002"]),
        ({"date_from": "2027-01-03"}, ["KB-000003", "KB-000002"]),
        ({"date_to": "2027-01-03"}, ["KB-000002", "KB-000001"]),
        ({"date_from": "2027-01-02", "date_to": "2027-01-02"}, ["KB-000001"]),
        ({"kind": "credit_purchase", "date_from": "2027-01-04"}, ["KB-000003"]),
    ],
)
def test_it_filters_by_kind_status_and_dates(
    world: World, query: dict[str, str], expected: list[str]
) -> None:
    make_invoice(world.org, 1)  # created 2 Jan 2027
    make_invoice(
        world.org, 2, kind="seat_subscription", status="open", amount_paid=0, amount_remaining=5000
    )  # 3 Jan
    make_invoice(world.org, 3)  # 4 Jan
    response = client_for(world.owner).get(url("org_invoices", world), query)
    assert [i.number for i in response.context["page"].object_list] == expected
    assert response.context["totals"]["count"] == len(expected)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"kind": "refund"}, "Kind: Select a valid choice."),
        ({"status": "lost"}, "Status: Select a valid choice."),
        ({"date_from": "yesterday"}, "From: Enter a valid date."),
        ({"date_from": "2027-02-01", "date_to": "2027-01-01"}, "must be on or before"),
        ({"page": "abc"}, ""),
        ({"page": "999"}, ""),
    ],
)
def test_bad_filters_show_a_message_and_the_default_view(
    world: World, query: dict[str, str], message: str
) -> None:
    make_invoice(world.org, 1)
    response = client_for(world.owner).get(url("org_invoices", world), query)
    assert response.status_code == 200
    assert [i.number for i in response.context["page"].object_list] == ["KB-000001"]
    if message:
        assert message in response.content.decode()
        assert "Showing all invoices instead" in response.content.decode()


def test_it_paginates_and_keeps_the_filters_in_the_links(world: World) -> None:
    for n in range(30):
        make_invoice(world.org, n)
    client = client_for(world.owner)
    first = client.get(url("org_invoices", world), {"status": "paid"})
    assert len(first.context["page"].object_list) == 25
    assert b"status=paid&amp;page=2" in first.content
    second = client.get(url("org_invoices", world), {"status": "paid", "page": 2})
    assert len(second.context["page"].object_list) == 5


def test_the_list_takes_the_same_number_of_queries_for_5_or_50_invoices(
    world: World, django_assert_max_num_queries: Any
) -> None:
    client = client_for(world.owner)
    for n in range(5):
        make_invoice(world.org, n)
    client.get(url("org_invoices", world))

    with CaptureQueriesContext(connection) as few:
        client.get(url("org_invoices", world))
    for n in range(5, 50):
        make_invoice(world.org, n)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(url("org_invoices", world))


def test_the_csv_export_streams_the_filtered_list(world: World) -> None:
    make_invoice(world.org, 1, amount_due=123456, amount_paid=123456)
    make_invoice(
        world.org, 2, kind="seat_subscription", status="open", amount_paid=0, amount_remaining=5000
    )
    make_invoice(world.neighbour, 3)
    response = client_for(world.billing).get(url("org_invoices_csv", world), {"status": "paid"})
    assert response.streaming
    assert response["Content-Type"] == "text/csv"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["number", "kind", "status", "created_utc"]
    assert rows[1:] == [
        [
            "KB-000001",
            "credit_purchase",
            "paid",
            "2027-01-02 12:00:00",
            "",
            "",
            "USD",
            "1234.56",
            "1234.56",
            "0.00",
            "0",
            "",
            "http://testserver/sandbox/invoices/in_1/",
        ]
    ]


def test_the_invoice_page_shows_its_lines_and_links(world: World) -> None:
    invoice = make_invoice(world.org, 7)
    response = client_for(world.admin).get(url("org_invoice", world, invoice))
    page = response.content.decode()
    assert "Invoice KB-000007" in page
    assert "$50.00 of credits" in page
    assert url("org_invoice_pdf", world, invoice) in page


def test_the_pdf_is_the_gateways(world: World) -> None:
    invoice = make_invoice(world.org, 7)
    response = client_for(world.owner).get(url("org_invoice_pdf", world, invoice))
    assert response["Location"] == invoice.invoice_pdf
    draft = make_invoice(world.org, 8, status="draft", number="", invoice_pdf="")
    assert client_for(world.owner).get(url("org_invoice_pdf", world, draft)).status_code == 404


# Billing details and the card


def test_billing_details_are_saved_audited_and_sent_to_the_gateway_customer(
    world: World,
) -> None:
    customer = customer_of(world.org)
    response = client_for(world.billing).post(
        url("org_billing", world),
        {
            "company_name": "Acme Robotics GmbH",
            "billing_email": "ap@acme.test",
            "address_line1": "Hauptstraße 1",
            "city": "Berlin",
            "postal_code": "10115",
            "country": "de",
            "tax_id": "de 123456789",
        },
    )
    assert response.status_code == 302
    profile = BillingProfile.objects.get(organization=world.org)
    assert (profile.company_name, profile.country, profile.tax_id) == (
        "Acme Robotics GmbH",
        "DE",
        "DE123456789",
    )
    customer.refresh_from_db()
    assert (customer.name, customer.email) == ("Acme Robotics GmbH", "ap@acme.test")
    assert customer.address["city"] == "Berlin"
    assert customer.tax_ids[0]["value"] == "DE123456789"
    event = AuditEvent.objects.get(action="billing.details_update")
    assert event.actor == world.billing
    assert "company_name" in event.details["fields"]


def test_bad_billing_details_are_refused_with_the_field_named(world: World) -> None:
    customer_of(world.org)
    response = client_for(world.owner).post(
        url("org_billing", world), {"country": "Germany", "billing_email": "not-an-email"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Use the two-letter country code" in page
    assert "Enter a valid email address" in page
    assert not AuditEvent.objects.filter(action="billing.details_update").exists()


def test_the_billing_page_shows_the_saved_card_and_the_update_link(world: World) -> None:
    customer_of(world.org)
    page = client_for(world.owner).get(url("org_billing", world)).content.decode()
    assert "Visa ending in 4242, expires 12/2040" in page
    assert "Update payment method" in page


def test_update_payment_method_goes_to_the_sandbox_card_page_and_back(world: World) -> None:
    customer = customer_of(world.org, card=None)
    client = client_for(world.owner)
    response = client.get(url("org_payment_method", world))
    assert response.status_code == 302
    page = client.post(
        response["Location"], {"number": "4242 4242 4242 4242", "expiry": "12 / 40", "cvc": "123"}
    )
    assert page.status_code == 302
    assert page["Location"].endswith(url("org_billing", world) + "?card=back")
    customer.refresh_from_db()
    assert customer.default_payment_method is not None
    # Back on the billing page, a confirmation says which card is now charged.
    back = client.get(url("org_billing", world) + "?card=back").content.decode()
    assert "Card saved: Visa ending in 4242. It is the card charged from now on." in back
    # Only once: a reload says nothing more.
    assert "Card saved" not in client.get(url("org_billing", world) + "?card=back").content.decode()


def test_the_first_visit_to_the_card_page_creates_the_gateway_customer(world: World) -> None:
    assert client_for(world.owner).get(url("org_payment_method", world)).status_code == 302
    profile = BillingProfile.objects.get(organization=world.org)
    assert SandboxCustomer.objects.filter(pk=profile.gateway_customer_id).exists()


# Pay now


def renewal_failed(world: World, step: Step, *, attempts: int) -> SandboxCustomer:
    """Acme with a paid seat subscription whose renewal then failed `attempts` times."""
    customer = customer_of(world.org)
    step(lambda: subscribe(customer, world.org))
    card_use(customer, FAILS_ON_CHARGE)

    step(lambda: engine.subscription_renew(SandboxSubscription.objects.get()))
    draft = SandboxInvoice.objects.get(status="draft")
    step(lambda: engine.invoice_attempt(engine.invoice_finalize(draft), automatic=True))
    for _ in range(attempts - 1):
        again = SandboxInvoice.objects.get(pk=draft.pk)
        step(lambda again=again: engine.invoice_attempt(again, automatic=True))
    return customer


@pytest.fixture
def in_grace(world: World, step: Step) -> SandboxCustomer:
    """Acme with a seat subscription whose renewal failed twice: in grace."""
    customer = renewal_failed(world, step, attempts=2)
    world.org.refresh_from_db()
    assert world.org.billing_state == "grace"
    assert Invoice.objects.get(billing_reason="subscription_create").status == "paid"
    mail.outbox.clear()
    return customer


def test_pay_now_confirms_what_is_charged_to_which_card_and_the_next_charge(
    world: World, in_grace: SandboxCustomer
) -> None:
    page = client_for(world.owner).get(url("org_pay_now", world)).content.decode()
    assert "$90.00" in page
    assert "Visa ending in 0341" in page
    assert "Next charge: $90.00 USD for 5 seats on" in page
    # The page is the confirmation (issue 23): its button says the amount, no box to tick.
    assert 'type="checkbox"' not in page
    assert 'name="total_cents" value="9000"' in page
    assert "Pay $90.00 now</button>" in page


def test_pay_now_charges_nothing_when_the_total_changed_since_the_page(
    world: World, in_grace: SandboxCustomer
) -> None:
    response = client_for(world.owner).post(url("org_pay_now", world), {"total_cents": "1800"})
    assert response.status_code == 400
    assert "now $90.00 USD. Nothing was charged" in response.content.decode()
    assert 'name="total_cents" value="9000"' in response.content.decode()
    assert Invoice.objects.get(billing_reason="subscription_cycle").attempt_count == 2


def test_pay_now_with_a_failing_card_says_so_and_stays_in_grace(
    world: World, in_grace: SandboxCustomer, step: Step
) -> None:
    client = client_for(world.owner)
    response = step(lambda: client.post(url("org_pay_now", world), {"confirm": "on"}))
    assert response.status_code == 302
    assert response["Location"] == url("org_pay_now", world)
    followed = client.get(response["Location"])
    assert "The card was declined" in followed.content.decode()
    world.org.refresh_from_db()
    assert world.org.billing_state == "grace"
    assert Invoice.objects.get(billing_reason="subscription_cycle").attempt_count == 3
    assert AuditEvent.objects.filter(action="billing.pay_now", actor=world.owner).exists()


def test_pay_now_restores_in_the_same_request(
    world: World, in_grace: SandboxCustomer, django_capture_on_commit_callbacks: Any
) -> None:
    card_use(in_grace, GOOD)
    client = client_for(world.billing)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(url("org_pay_now", world), {"confirm": "on"})
        world.org.refresh_from_db()
        assert world.org.billing_state == "active"  # before any webhook event arrived
    assert response["Location"] == url("org_invoices", world)
    followed = client.get(response["Location"]).content.decode()
    assert "Acme Robotics is active again" in followed
    assert 'class="banner' not in followed
    assert Invoice.objects.get(billing_reason="subscription_cycle").status == "paid"


def test_pay_now_with_nothing_overdue_charges_nothing(world: World) -> None:
    customer_of(world.org)
    client = client_for(world.owner)
    assert b"Nothing is overdue" in client.get(url("org_pay_now", world)).content
    response = client.post(url("org_pay_now", world), {"confirm": "on"})
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(action="billing.pay_now").exists()


# Banners, the timeline and the suspension page


def test_the_grace_banner_is_on_every_page_of_the_organization_with_the_deadline(
    world: World, in_grace: SandboxCustomer
) -> None:
    deadline = world.org.grace_ends_at
    assert deadline is not None
    for user, path in [
        (world.member, reverse("org_overview", args=[world.org.pk])),
        (world.member, reverse("org_members", args=[world.org.pk])),
        (world.owner, url("org_invoices", world)),
    ]:
        page = client_for(user).get(path).content.decode()
        assert 'class="banner grace"' in page
        assert deadline.strftime("%-d %b %Y, %H:%M") + " UTC" in page
    owner_page = client_for(world.owner).get(url("org_members", world)).content.decode()
    assert url("org_pay_now", world) in owner_page
    member_page = client_for(world.member).get(url("org_members", world)).content.decode()
    assert "Ask an owner or billing manager to pay." in member_page
    # The personal profile has no banner; it lists each organization's state instead.
    profile = client_for(world.owner).get(reverse("personal_profile")).content.decode()
    assert 'class="banner' not in profile
    assert f"Grace period</span> until {deadline:%-d %b %Y, %H:%M} UTC" in profile
    assert (
        'class="banner'
        not in client_for(world.outsider).get(reverse("personal_profile")).content.decode()
    )


def test_a_member_of_two_organizations_sees_each_banner_only_in_its_organization(
    world: World, in_grace: SandboxCustomer
) -> None:
    """Acme is in grace; Globex is fine. Someone in both sees Acme's banner on Acme's pages
    only, never on Globex's."""
    both = world.owner
    MembershipFactory(organization=world.neighbour, user=both, role=Role.OWNER)
    client = client_for(both)
    acme = client.get(reverse("org_overview", args=[world.org.pk])).content.decode()
    assert 'class="banner grace"' in acme
    globex_pages = [
        reverse("org_overview", args=[world.neighbour.pk]),
        reverse("org_members", args=[world.neighbour.pk]),
        reverse("org_invoices", args=[world.neighbour.pk]),
    ]
    for path in globex_pages:
        page = client.get(path).content.decode()
        assert 'class="banner' not in page, path
        assert "Payment failed for Acme Robotics" not in page, path
    # And the other way round: Globex suspended, Acme's pages say nothing of it.
    Organization.objects.filter(pk=world.neighbour.pk).update(
        billing_state="suspended", suspended_at=timezone.now()
    )
    assert "Globex is suspended" in client.get(globex_pages[2]).content.decode()
    members = client.get(url("org_members", world)).content.decode()
    assert "Globex is suspended" not in members
    assert 'class="banner grace"' in members  # Acme's own stays


def test_after_one_failed_renewal_the_email_link_offers_the_overdue_invoice(
    world: World, step: Step
) -> None:
    """DESIGN.md: a seat invoice is overdue from its first failed attempt; the payment-failed
    email's "Pay now" pays it, and no page says payments are up to date."""
    customer = customer_of(world.org)
    step(lambda: subscribe(customer, world.org))
    card_use(customer, FAILS_ON_CHARGE)

    step(lambda: engine.subscription_renew(SandboxSubscription.objects.get()))
    draft = SandboxInvoice.objects.get(status="draft")
    mail.outbox.clear()
    step(lambda: engine.invoice_attempt(engine.invoice_finalize(draft), automatic=True))
    world.org.refresh_from_db()
    assert world.org.billing_state == "active"  # one failure: no grace yet
    renewal = Invoice.objects.get(billing_reason="subscription_cycle")
    assert (renewal.status, renewal.attempt_count) == ("open", 1)

    (failed,) = [m for m in mail.outbox if m.subject.startswith("Payment failed")]
    pay_link = next(line for line in failed.body.splitlines() if line.startswith("Pay now: "))
    path = pay_link.removeprefix("Pay now: ").removeprefix("http://127.0.0.1:8000")
    assert path == url("org_pay_now", world)
    client = client_for(world.billing)
    pay_page = client.get(path).content.decode()
    assert "Nothing is overdue" not in pay_page
    assert renewal.number in pay_page
    assert "Pay $90.00 now" in pay_page
    billing = client.get(url("org_billing", world)).content.decode()
    assert "Payments are up to date" not in billing
    assert "Payment failed" in billing
    detail = client.get(reverse("org_invoice", args=[world.org.pk, renewal.pk])).content.decode()
    assert f'href="{url("org_pay_now", world)}"' in detail
    overview = client.get(reverse("org_overview", args=[world.org.pk])).content.decode()
    assert "A payment failed" in overview

    card_use(customer, GOOD)
    response = step(lambda: client.post(path, {"confirm": "on"}))
    assert response.status_code == 302
    renewal.refresh_from_db()
    assert (renewal.status, renewal.amount_remaining) == ("paid", 0)
    assert "Payments are up to date" in client.get(url("org_billing", world)).content.decode()


def test_use_another_card_on_pay_now_comes_back_to_pay_now(
    world: World, in_grace: SandboxCustomer
) -> None:
    client = client_for(world.owner)
    pay_page = client.get(url("org_pay_now", world)).content.decode()
    link = url("org_payment_method", world) + "?back=pay"
    assert f'href="{link}">Use another card' in pay_page
    to_card_page = client.get(link)
    card_page = to_card_page["Location"]
    saved = client.post(
        card_page, {"number": "4242 4242 4242 4242", "expiry": "12 / 40", "cvc": "123"}
    )
    assert saved["Location"].endswith(url("org_pay_now", world) + "?card=back")
    back = client.get(url("org_pay_now", world) + "?card=back").content.decode()
    assert "Card saved: Visa ending in 4242" in back
    assert "To the card: <strong>Visa ending in 4242</strong>" in back
    # Leaving the card page without saving says so, and keeps the card.
    client.get(link)
    unchanged = client.get(url("org_pay_now", world) + "?card=back").content.decode()
    assert "The payment method was not changed." in unchanged


def test_the_account_status_page_shows_the_timeline(
    world: World, in_grace: SandboxCustomer
) -> None:
    page = client_for(world.owner).get(url("org_account_status", world)).content.decode()
    renewal = Invoice.objects.get(billing_reason="subscription_cycle")
    assert "Grace period" in page
    assert f"2 failed payment attempts on invoice {renewal.number}" in page


def test_after_one_failed_payment_the_timeline_does_not_say_all_is_well(
    world: World, step: Step
) -> None:
    """The page listed the overdue invoice and, below it, "No payment problems so far"."""
    renewal_failed(world, step, attempts=1)
    world.org.refresh_from_db()
    assert world.org.billing_state == "active"
    renewal = Invoice.objects.get(billing_reason="subscription_cycle")
    assert renewal.first_failed_at is not None
    page = client_for(world.owner).get(url("org_account_status", world)).content.decode()
    assert renewal.number in page
    assert "No payment problems so far" not in page
    assert "No change of state yet" in page
    assert "See the account's timeline" not in page  # it is this page
    billing = client_for(world.owner).get(url("org_billing", world)).content.decode()
    assert "See the account's timeline" in billing


@pytest.mark.parametrize(
    ("name", "role", "status"),
    [
        ("org_overview", Role.MEMBER, 403),
        ("org_overview", Role.OWNER, 403),
        ("org_members", Role.ADMIN, 403),
        ("org_settings", Role.OWNER, 403),
        ("org_invoices", Role.OWNER, 200),
        ("org_invoices", Role.BILLING_MANAGER, 200),
        ("org_billing", Role.ADMIN, 200),
        ("org_pay_now", Role.BILLING_MANAGER, 200),
        ("org_payment_method", Role.OWNER, 302),
        ("org_invoices", Role.MEMBER, 403),
    ],
)
def test_a_suspended_organization_opens_only_billing(
    world: World, in_grace: SandboxCustomer, name: str, role: str, status: int
) -> None:
    lifecycle.organization_suspend(organization=world.org, reason="test")
    response = client_for(world.person(role)).get(reverse(name, args=[world.org.pk]))
    assert response.status_code == status
    if status == 403 and name != "org_invoices":
        page = response.content.decode()
        assert "Acme Robotics is suspended" in page
        assert ("Pay now" in page) == (role != Role.MEMBER)


def test_an_outsider_still_gets_404_from_a_suspended_organization(
    world: World, in_grace: SandboxCustomer
) -> None:
    lifecycle.organization_suspend(organization=world.org, reason="test")
    response = client_for(world.outsider).get(reverse("org_overview", args=[world.org.pk]))
    assert response.status_code == 404


def test_dates_are_shown_in_utc(world: World) -> None:
    make_invoice(world.org, 1, created=timezone.make_aware(datetime(2027, 5, 3, 23, 30), UTC))
    page = client_for(world.owner).get(url("org_invoices", world)).content.decode()
    assert "3 May 2027" in page
    assert "Date (UTC)" in page


@pytest.mark.django_db(transaction=True)
def test_32_pay_now_clicks_at_once_pay_the_overdue_invoice_once(
    world: World, in_grace: SandboxCustomer
) -> None:
    """A double click, or 32: one charge, the invoice paid once, the organization restored,
    and one "pay now" in the audit log (the clicks that found it paid did nothing)."""
    card_use(in_grace, GOOD)
    charges = SandboxEvent.objects.filter(type="charge.succeeded").count()
    clients = []
    for _ in range(32):
        client = Client()
        client.force_login(world.billing)
        clients.append(client)
    barrier = threading.Barrier(32)
    statuses: list[int] = []

    def click(client: Client) -> None:
        try:
            barrier.wait()
            statuses.append(client.post(url("org_pay_now", world), {"confirm": "on"}).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 500 not in statuses
    assert SandboxEvent.objects.filter(type="charge.succeeded").count() == charges + 1
    assert Invoice.objects.get(billing_reason="subscription_cycle").status == "paid"
    world.org.refresh_from_db()
    assert world.org.billing_state == "active"
    assert AuditEvent.objects.filter(action="billing.pay_now").count() == 1
