"""Cancel at the period's end, resume, the end of a subscription, and monthly renewals."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from organizations import services as team
from organizations.exceptions import InvitationUnusable
from organizations.models import AuditEvent, Invitation, Membership
from organizations.roles import Role
from payments.sandbox import engine
from payments.sandbox.models import SandboxInvoice, SandboxSubscription
from seats import selectors
from seats.exceptions import NoEmptySeat
from seats.models import SeatReceipt, SeatSubscription
from tests.conftest import World, client_for, settle
from tests.factories import UserFactory
from tests.seats.conftest import PERIOD_END, START, buy


def test_cancel_shows_the_date_then_the_seats_end_at_the_period_end(
    world: World, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
    member = Membership.objects.get(user=world.member)
    client = client_for(world.billing)
    mail.outbox.clear()
    with time_machine.travel(START + timedelta(days=3), tick=False):
        page = client.get(reverse("org_seats_cancel", args=[world.org.pk]))
        assert "1 Dec 2026, 12:00 UTC" in page.content.decode()
        assert not SandboxSubscription.objects.get().cancel_at_period_end
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reverse("org_seats_cancel", args=[world.org.pk]))
        assert "The seats end on 1 Dec 2026" in client.get(response["Location"]).content.decode()
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert subscription.cancel_at_period_end
    assert subscription.next_invoice_amount is None
    assert subscription.seats == 5
    assert selectors.member_has_seat(membership=member)
    assert AuditEvent.objects.get(action="seats.cancel").actor == world.billing
    assert len([m for m in mail.outbox if "end on 1 Dec 2026" in m.subject]) == 1
    tab = client.get(reverse("org_seats", args=[world.org.pk])).content.decode()
    assert "Seats end on" in tab
    assert "Resume" in tab

    mail.outbox.clear()
    with time_machine.travel(PERIOD_END + timedelta(seconds=1), tick=False):
        engine.tick()
        with django_capture_on_commit_callbacks(execute=True):
            settle()
    subscription.refresh_from_db()
    assert (subscription.status, subscription.seats) == ("canceled", 0)
    assert subscription.ended_at is not None
    assert not selectors.member_has_seat(membership=member)
    assert not SandboxInvoice.objects.filter(billing_reason="subscription_cycle").exists()
    assert AuditEvent.objects.filter(action="seats.end").count() == 1
    assert len([m for m in mail.outbox if "Seats ended" in m.subject]) == 1
    # With no seats, owners, admins and members cannot be invited; billing managers still can.
    owner = Membership.objects.get(user=world.owner)
    with pytest.raises(NoEmptySeat, match="no seats right now"):
        team.invitation_create(
            actor=world.owner, membership=owner, email="x@acme.test", role="member"
        )
    team.invitation_create(
        actor=world.owner, membership=owner, email="y@acme.test", role=Role.BILLING_MANAGER
    )
    tab = client.get(reverse("org_seats", args=[world.org.pk])).content.decode()
    assert "Your seats ended on" in tab
    # Buying again brings a new subscription and the seats back.
    with time_machine.travel(PERIOD_END + timedelta(days=2), tick=False):
        bought = buy(world.org, world.owner, seats=4, card=None)
    assert (bought.status, bought.seats, bought.ended_at) == ("active", 4, None)
    assert bought.gateway_subscription_id != subscription.gateway_subscription_id
    assert selectors.member_has_seat(membership=member)


def test_resume_before_the_end_keeps_the_renewals(world: World) -> None:
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
    client = client_for(world.admin)
    with time_machine.travel(START + timedelta(days=5), tick=False):
        client.post(reverse("org_seats_cancel", args=[world.org.pk]))
        page = client.get(reverse("org_seats_resume", args=[world.org.pk])).content.decode()
        assert "$90.00" in page
        assert "1 Dec 2026, 12:00 UTC" in page
        assert "•••• 4242" in page
        client.post(reverse("org_seats_resume", args=[world.org.pk]))
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert not subscription.cancel_at_period_end
    assert AuditEvent.objects.filter(action="seats.resume").count() == 1
    with time_machine.travel(PERIOD_END + timedelta(hours=2), tick=False):
        engine.tick()
        settle()
    subscription.refresh_from_db()
    assert subscription.status == "active"
    assert subscription.current_period_start == PERIOD_END


def test_each_renewal_invoices_seats_times_price_and_sends_a_receipt(
    world: World, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
    mail.outbox.clear()
    with time_machine.travel(PERIOD_END + timedelta(hours=2), tick=False):
        engine.tick()  # the renewal invoice is created, then finalized and paid an hour later
        engine.tick()
        with django_capture_on_commit_callbacks(execute=True):
            settle()
            settle()  # delivered twice: nothing more happens
    subscription = SeatSubscription.objects.get(organization=world.org)
    assert subscription.current_period_start == PERIOD_END
    assert subscription.current_period_end.day == 1
    assert subscription.current_period_end.month == 1
    receipt = SeatReceipt.objects.get(kind="renewal")
    assert (receipt.amount, receipt.quantity) == (9000, 5)
    assert AuditEvent.objects.filter(action="seats.renew").count() == 1
    receipts = [m for m in mail.outbox if "renewal receipt" in m.subject]
    assert len(receipts) == 1
    assert "5 × $18.00" in receipts[0].body
    assert "$90.00" in receipts[0].body


def test_an_invitation_accepted_after_the_seats_ended_is_refused(world: World) -> None:
    with time_machine.travel(START, tick=False):
        buy(world.org, world.owner, seats=5)
    with time_machine.travel(PERIOD_END - timedelta(days=2), tick=False):
        owner = Membership.objects.get(user=world.owner)
        team.invitation_create(
            actor=world.owner, membership=owner, email="late@acme.test", role=Role.MEMBER
        )
        client_for(world.owner).post(reverse("org_seats_cancel", args=[world.org.pk]))

    invitation = Invitation.objects.get(email="late@acme.test")
    token = "late-token"
    Invitation.objects.filter(pk=invitation.pk).update(token_hash=team.hash_token(token))
    with time_machine.travel(PERIOD_END + timedelta(minutes=1), tick=False):
        engine.tick()
        settle()
        user = UserFactory(email="late@acme.test")
        with pytest.raises(InvitationUnusable) as refused:
            team.invitation_accept(user=user, token=token)
        assert refused.value.reason == "no_seat"
        invitation.refresh_from_db()
        assert invitation.accepted_at is None
        client = client_for(user)
        response = client.post(reverse("invitation_accept", args=[token]))
        assert response.status_code == 403
        assert "no empty seat for you" in response.content.decode()
    assert not Membership.objects.filter(user=user).exists()
