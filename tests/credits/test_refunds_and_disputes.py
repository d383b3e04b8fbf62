"""Refunds and chargebacks take the credits back (DESIGN.md, "Money"): through the sandbox's
events over HTTP, in any order and twice; below zero when the credits were spent, the account
then owing it and refusing usage until the next purchase pays it back."""

import threading
import uuid
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse

from credits.exceptions import InsufficientBalance, RefundRefused
from credits.ledger import ledger_credit
from credits.models import CreditAccount, LedgerEntry, Purchase, PurchaseReversal
from credits.services import account_for, purchase_refund
from invoices.models import Invoice
from organizations.models import AuditEvent
from payments import dispatch
from payments.models import WebhookEvent
from payments.sandbox import engine, objects
from payments.sandbox.models import SandboxEvent, SandboxRefund
from tests.conftest import World, client_for, settle
from tests.credits.conftest import seat_everyone, spend_exactly
from tests.credits.test_api import api, spend
from tests.credits.test_purchases import confirm, save_card
from tests.factories import UserFactory
from tests.invoices.test_sync import post_event

pytestmark = pytest.mark.django_db

DOLLAR = 1_000_000


def bought(world: World, dollars: int) -> Purchase:
    """Credits bought with the saved card, its events delivered."""
    confirm(world, dollars * 100)
    settle()
    return Purchase.objects.order_by("-pk").first()  # type: ignore[return-value]


def balance(world: World) -> int:
    return account_for(organization=world.org).balance


def run(command: str, **options: Any) -> None:
    """A sandbox command, then the events it sent, delivered and processed (the emails sent)."""
    call_command(command, **options)
    settle()


@pytest.fixture
def sends(django_capture_on_commit_callbacks: Any) -> Any:
    def sent(fn: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            result = fn()
        with django_capture_on_commit_callbacks(execute=True):
            settle()
        return result

    return sent


def test_a_refund_from_the_dashboard_takes_its_credits_back(world: World, sends: Any) -> None:
    # A refund is charge.refunded (the charge, its amount_refunded) and refund.created
    # (https://docs.stripe.com/api/events/types#event_types-charge.refunded).
    save_card(world)
    purchase = bought(world, 100)
    assert balance(world) == 100 * DOLLAR
    mail.outbox.clear()
    sends(lambda: call_command("sandbox_refund", invoice=purchase.invoice_number))
    assert balance(world) == 0
    refund = SandboxRefund.objects.get()
    entry = LedgerEntry.objects.get(kind="refund")
    assert (entry.amount, entry.source, entry.idempotency_key) == (
        -100 * DOLLAR,
        "refund",
        refund.id,
    )
    assert "invoice " + purchase.invoice_number in entry.reason
    reversal = PurchaseReversal.objects.get()
    assert (reversal.kind, reversal.amount_cents, reversal.status) == (
        "refund",
        10_000,
        "succeeded",
    )
    emails = [m for m in mail.outbox if m.subject.startswith("Refund")]
    assert len(emails) == 1
    assert sorted(emails[0].to) == sorted([world.owner.email, world.billing.email])
    assert Invoice.objects.get(gateway_id=purchase.gateway_invoice_id).amount_refunded == 10_000
    # The purchase says so where it is listed, as the ledger does.
    page = client_for(world.owner).get(reverse("org_credits", args=[world.org.pk]))
    assert "Paid; refunded $100.00</td>" in page.content.decode()
    # Every event again, and in reverse: nothing more moves.
    for event in WebhookEvent.objects.order_by("-pk"):
        dispatch.webhook_event_replay(event=event)
    assert balance(world) == 0
    assert LedgerEntry.objects.filter(kind="refund").count() == 1


def test_partial_refunds_each_take_their_part(world: World) -> None:
    save_card(world)
    purchase = bought(world, 100)
    run("sandbox_refund", invoice=purchase.invoice_number, amount_usd="10")
    run("sandbox_refund", invoice=purchase.invoice_number, amount_usd="15.50")
    assert balance(world) == 100 * DOLLAR - 25_500_000
    assert sorted(LedgerEntry.objects.filter(kind="refund").values_list("amount", flat=True)) == [
        -15_500_000,
        -10 * DOLLAR,
    ]


def test_a_refund_of_spent_credits_leaves_the_account_owing_and_usage_refused(
    world: World, sends: Any
) -> None:
    seat_everyone(world.org, world.owner)
    save_card(world)
    purchase = bought(world, 100)
    account = account_for(organization=world.org)
    spend_exactly(account, world.member, 60 * DOLLAR, "spent-1")
    sends(lambda: call_command("sandbox_refund", invoice=purchase.invoice_number))
    account.refresh_from_db()
    assert (account.balance, account.owed) == (-60 * DOLLAR, 60 * DOLLAR)
    assert account.balance == sum(
        LedgerEntry.objects.filter(account=account).values_list("amount", flat=True)
    )
    owes = [m for m in mail.outbox if m.subject.startswith("Refund")]
    assert "owes $60.00" in owes[0].body
    # Usage is refused, even free usage, while the account owes.
    response = spend(api(world.member, world.org), "after-refund")
    assert (response.status_code, response.json()["error"]) == (402, "insufficient_balance")
    assert "owes $60.00" in response.json()["message"]
    with pytest.raises(InsufficientBalance):
        spend_exactly(account, world.member, 0, "free")
    body = api(world.member, world.org).get("/api/profile/balance").json()
    assert (body["balance_microdollars"], body["isDepleted"]) == (-60 * DOLLAR, True)


def test_the_next_purchase_pays_the_debt_first_and_says_so(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    seat_everyone(world.org, world.owner)
    save_card(world)
    purchase = bought(world, 100)
    account = account_for(organization=world.org)
    spend_exactly(account, world.member, 70 * DOLLAR, "spent-2")
    run("sandbox_refund", invoice=purchase.invoice_number)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        page = confirm(world, 10_000).content.decode()
    assert "of which $70.00 paid what the account owed" in page
    account.refresh_from_db()
    assert (account.balance, account.owed) == (30 * DOLLAR, 0)
    latest = Purchase.objects.order_by("-pk").first()
    assert latest is not None
    assert latest.debt_paid == 70 * DOLLAR
    entry = LedgerEntry.objects.get(kind="purchase", idempotency_key=str(latest.pk))
    assert "of which $70.00 paid what the account owed" in entry.reason
    receipt = next(m for m in mail.outbox if m.subject.startswith("Receipt"))
    assert "Of which $70.00 paid what the account owed" in receipt.body
    ledger = client_for(world.owner).get(reverse("org_credits", args=[world.org.pk]))
    assert "paid what the account owed" in ledger.content.decode()
    assert spend(api(world.member, world.org), "after-debt").status_code == 201


def test_a_purchase_smaller_than_the_debt_is_credited_all_the_same(world: World) -> None:
    """Money in is never refused: $50 against $70 owed leaves $20 owed, not a failed credit."""
    seat_everyone(world.org, world.owner)
    save_card(world)
    purchase = bought(world, 100)
    account = account_for(organization=world.org)
    spend_exactly(account, world.member, 70 * DOLLAR, "spent-3")
    run("sandbox_refund", invoice=purchase.invoice_number)
    bought(world, 50)
    account.refresh_from_db()
    assert (account.balance, account.owed) == (-20 * DOLLAR, 20 * DOLLAR)
    latest = Purchase.objects.order_by("-pk").first()
    assert latest is not None
    assert (latest.status, latest.debt_paid) == (Purchase.Status.PAID, 50 * DOLLAR)
    assert account.balance == sum(
        LedgerEntry.objects.filter(account=account).values_list("amount", flat=True)
    )


def test_a_chargeback_takes_the_credits_back_and_a_won_dispute_gives_them_back(
    world: World, sends: Any
) -> None:
    # charge.dispute.created with the funds withdrawn; closed won with funds_reinstated
    # (https://docs.stripe.com/disputes/how-disputes-work).
    save_card(world)
    purchase = bought(world, 50)
    mail.outbox.clear()
    sends(lambda: call_command("sandbox_dispute", invoice=purchase.invoice_number))
    assert balance(world) == 0
    entry = LedgerEntry.objects.get(kind="dispute")
    assert (entry.amount, entry.source) == (-50 * DOLLAR, "dispute")
    assert any(m.subject.startswith("A payment was disputed") for m in mail.outbox)
    credits_page = reverse("org_credits", args=[world.org.pk])
    page = client_for(world.owner).get(credits_page).content.decode()
    assert "Paid; disputed $50.00 (needs response)" in page
    sends(lambda: call_command("sandbox_dispute", invoice=purchase.invoice_number, close="won"))
    assert balance(world) == 50 * DOLLAR
    page = client_for(world.owner).get(credits_page).content.decode()
    assert "Paid; disputed $50.00 (won)" in page
    won = LedgerEntry.objects.get(kind="dispute", amount__gt=0)
    assert won.idempotency_key == f"{entry.idempotency_key}:won"
    assert any(m.subject.startswith("Dispute won") for m in mail.outbox)
    assert PurchaseReversal.objects.get().status == "won"
    assert Invoice.objects.get(gateway_id=purchase.gateway_invoice_id).dispute_status == "won"


def test_a_lost_dispute_keeps_them_taken_and_says_so_once(world: World, sends: Any) -> None:
    save_card(world)
    purchase = bought(world, 50)
    sends(lambda: call_command("sandbox_dispute", invoice=purchase.invoice_number))
    sends(lambda: call_command("sandbox_dispute", invoice=purchase.invoice_number, close="lost"))
    for event in WebhookEvent.objects.filter(type__startswith="charge.dispute"):
        sends(lambda event=event: dispatch.webhook_event_replay(event=event))
    assert balance(world) == 0
    assert [m.subject for m in mail.outbox].count(
        "Dispute lost: $50.00 of credits stay taken back"
    ) == 1


def test_dispute_events_in_any_order_lead_to_the_same_entries(world: World) -> None:
    save_card(world)
    purchase = bought(world, 50)
    call_command("sandbox_dispute", invoice=purchase.invoice_number)
    call_command("sandbox_dispute", invoice=purchase.invoice_number, close="won")
    # closed first, then created, each twice: the dispute is re-read from the gateway.
    events = list(
        SandboxEvent.objects.filter(type__startswith="charge.dispute").order_by("-delivery_order")
    )
    SandboxEvent.objects.filter(type__startswith="charge.dispute").update(delivered_at=None)

    for event in events + events:
        assert post_event(event.payload) == 200
    for webhook_event in WebhookEvent.objects.filter(status="pending"):
        dispatch.webhook_event_process(webhook_event_id=webhook_event.pk)
    settle()
    assert balance(world) == 50 * DOLLAR
    assert LedgerEntry.objects.filter(kind="dispute").count() == 2


def test_a_refund_that_fails_gives_the_credits_back(world: World) -> None:
    # Card refunds can fail later (refund.failed; https://docs.stripe.com/refunds#failed-refunds).
    save_card(world)
    purchase = bought(world, 100)
    run("sandbox_refund", invoice=purchase.invoice_number, amount_usd="40")
    assert balance(world) == 60 * DOLLAR
    refund = SandboxRefund.objects.get()
    refund.status = "failed"
    refund.save()

    with engine.action():
        engine.emit("refund.failed", objects.refund_json(refund))
    settle()
    assert balance(world) == 100 * DOLLAR
    assert LedgerEntry.objects.get(idempotency_key=f"{refund.id}:failed").amount == 40 * DOLLAR


def test_the_database_floor_is_what_the_account_owes(world: World) -> None:
    account = account_for(organization=world.org)
    ledger_credit(
        account_id=account.pk, amount=-5 * DOLLAR, kind="refund", source="refund", key="re_x"
    )
    account.refresh_from_db()
    assert (account.balance, account.owed) == (-5 * DOLLAR, 5 * DOLLAR)
    # Anything else that goes below zero is refused: a grant-namespace debit, a plain UPDATE.
    with pytest.raises(InsufficientBalance):
        ledger_credit(account_id=account.pk, amount=-1, kind="adjustment", source="grant", key="g")
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditAccount.objects.filter(pk=account.pk).update(balance=-6 * DOLLAR)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditAccount.objects.filter(pk=account.pk).update(owed=-1)


# Staff refunds from the admin


@pytest.fixture
def staff() -> Client:
    admin = UserFactory(email="staff@kilo.test", is_staff=True, is_superuser=True)
    return client_for(admin)


def refund_url(purchase: Purchase) -> str:
    return reverse("admin:credits_purchase_refund", args=[purchase.pk])


def test_staff_refund_defaults_to_the_unspent_part_and_asks_to_confirm(
    world: World, staff: Client, sends: Any
) -> None:
    seat_everyone(world.org, world.owner)
    save_card(world)
    purchase = bought(world, 100)
    spend_exactly(account_for(organization=world.org), world.member, 30 * DOLLAR, "s")
    page = staff.get(refund_url(purchase)).content.decode()
    assert 'value="70.00"' in page
    key = str(uuid.uuid4())
    data = {"amount": "100", "reason": "requested_by_customer", "note": "asked by mail", "key": key}
    refused = staff.post(refund_url(purchase), {**data, "review": "1"}).content.decode()
    assert "Only $70.00 is unspent" in refused
    review = staff.post(
        refund_url(purchase), {**data, "amount": "70", "review": "1"}
    ).content.decode()
    assert "Refund $70.00 USD" in review
    assert "the balance becomes $0.00" in review
    assert not SandboxRefund.objects.exists()  # nothing moved before the confirmation
    done = sends(lambda: staff.post(refund_url(purchase), {**data, "amount": "70", "confirm": "1"}))
    assert done.status_code == 302
    assert balance(world) == 0  # at once, before any webhook
    assert LedgerEntry.objects.filter(kind="refund").count() == 1
    reversal = PurchaseReversal.objects.get()
    assert (reversal.reason, reversal.actor.email) == ("asked by mail", "staff@kilo.test")
    assert AuditEvent.objects.filter(action="credits.refund_issued").count() == 1
    # The webhooks found it done; the same confirmation again moves nothing either.
    sends(lambda: staff.post(refund_url(purchase), {**data, "amount": "70", "confirm": "1"}))
    assert SandboxRefund.objects.count() == 1
    assert balance(world) == 0


def test_staff_may_refund_more_than_unspent_when_they_say_so(world: World, staff: Client) -> None:
    seat_everyone(world.org, world.owner)
    save_card(world)
    purchase = bought(world, 100)
    spend_exactly(account_for(organization=world.org), world.member, 30 * DOLLAR, "s")
    data = {
        "amount": "100",
        "reason": "fraudulent",
        "note": "stolen card",
        "key": str(uuid.uuid4()),
        "beyond_unspent": "on",
    }
    review = staff.post(refund_url(purchase), {**data, "review": "1"}).content.decode()
    assert "the account owes it" in review
    staff.post(refund_url(purchase), {**data, "confirm": "1"})
    account = account_for(organization=world.org)
    assert (account.balance, account.owed) == (-30 * DOLLAR, 30 * DOLLAR)


@pytest.mark.parametrize("amount", ["1e309", "-1", "0", "100.001", "\x00", "9" * 30, "x" * 10_000])
def test_staff_refund_refuses_absurd_amounts(world: World, staff: Client, amount: str) -> None:
    save_card(world)
    purchase = bought(world, 100)
    data = {"amount": amount, "reason": "duplicate", "note": "n", "key": str(uuid.uuid4())}
    response = staff.post(refund_url(purchase), {**data, "confirm": "1"})
    assert response.status_code == 200
    assert not SandboxRefund.objects.exists()
    assert balance(world) == 100 * DOLLAR


def test_staff_refund_refuses_more_than_is_left_and_unpaid_purchases(world: World) -> None:
    save_card(world)
    purchase = bought(world, 100)
    staff_user = UserFactory(email="s2@kilo.test", is_staff=True)
    with pytest.raises(RefundRefused, match=r"At most \$100\.00"):
        purchase_refund(
            actor=staff_user,
            purchase=purchase,
            amount_cents=10_001,
            reason="duplicate",
            note="n",
            idempotency_key="k",
            beyond_unspent=True,
        )
    with pytest.raises(RefundRefused, match="Say why"):
        purchase_refund(
            actor=staff_user,
            purchase=purchase,
            amount_cents=100,
            reason="duplicate",
            note=" ",
            idempotency_key="k",
        )
    Purchase.objects.filter(pk=purchase.pk).update(status="failed")
    purchase.refresh_from_db()
    with pytest.raises(RefundRefused, match="Only a paid purchase"):
        purchase_refund(
            actor=staff_user,
            purchase=purchase,
            amount_cents=100,
            reason="duplicate",
            note="n",
            idempotency_key="k",
        )


@pytest.mark.django_db(transaction=True)
def test_32_parallel_confirmations_refund_once(world: World) -> None:
    save_card(world)
    purchase = bought(world, 100)
    staff_user = UserFactory(email="s3@kilo.test", is_staff=True, is_superuser=True)
    data = {
        "amount": "25",
        "reason": "duplicate",
        "note": "double charge",
        "key": str(uuid.uuid4()),
        "confirm": "1",
    }
    # Logged in before the threads start: a thread waiting at the barrier must not hold one of
    # the pool's connections, or the others could wait for it forever.
    clients = [client_for(staff_user) for _ in range(32)]
    barrier = threading.Barrier(32)
    codes: list[int] = []

    def confirm_refund(client: Client) -> None:
        try:
            barrier.wait()
            codes.append(client.post(refund_url(purchase), data).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=confirm_refund, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 500 not in codes
    assert SandboxRefund.objects.count() == 1
    settle()
    assert balance(world) == 75 * DOLLAR
    assert LedgerEntry.objects.filter(kind="refund").count() == 1


def test_staff_see_disputed_and_owing_accounts(world: World, staff: Client) -> None:
    save_card(world)
    purchase = bought(world, 50)
    run("sandbox_dispute", invoice=purchase.invoice_number)
    changelist = reverse("admin:credits_creditaccount_changelist")
    account = account_for(organization=world.org)
    other = account_for(organization=world.neighbour)
    for value in ("open", "any", "owes"):
        page = staff.get(changelist, {"disputed": value}).content.decode()
        if value == "owes":
            assert f'href="/admin/credits/creditaccount/{account.pk}/change/' not in page
        else:
            assert f"/admin/credits/creditaccount/{account.pk}/change/" in page
        assert f"/admin/credits/creditaccount/{other.pk}/change/" not in page
    run("sandbox_dispute", invoice=purchase.invoice_number, close="lost")
    assert (
        f"/admin/credits/creditaccount/{account.pk}/change/"
        in staff.get(changelist, {"disputed": "lost"}).content.decode()
    )
    assert staff.get(reverse("admin:credits_purchasereversal_changelist")).status_code == 200
