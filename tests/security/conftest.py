"""Two tenants with something of everything: seats (and so invoices), credits bought with the
sandbox card, usage, an open invitation and an API token each. Acme's people must never see or
touch Globex's things, and the other way round.

The sweep asks hundreds of questions of the same two tenants, so they are built once per module
inside a transaction that is rolled back at the end; each test runs in a savepoint within it
(pytest-django's `db`), so whatever a test changes is undone before the next."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Model
from django.test.utils import override_settings
from django.utils import timezone

from accounts.models import User
from analytics.models import DailyUsage, UsageSettings
from billing.models import BillingProfile
from credits.ledger import usage_debit
from credits.models import ApiToken, CreditAccount, LedgerEntry, Purchase, UsageRecord
from credits.services import account_for, api_token_create, credits_purchase
from dunning.models import FormerBillingContact, LifecycleTransition
from invoices.models import Invoice
from organizations.models import AuditEvent, Invitation, Membership, Organization
from organizations.roles import Role
from payments.sandbox import delivery
from seats.models import SeatChange, SeatPlan, SeatSubscription
from tests.conftest import (
    World,
    atomic_as_test_case,
    post_through_the_test_client,
    settle,
    world_create,
)
from tests.credits.conftest import fund, seat_everyone
from tests.factories import InvitationFactory

ROLES = [Role.OWNER, Role.ADMIN, Role.BILLING_MANAGER, Role.MEMBER]


@dataclass
class Tenant:
    org: Organization
    objects: dict[str, int]  # URL keyword → this tenant's object of that kind
    token: str  # raw API token of a seated member
    markers: list[str] = field(default_factory=list)  # text only this tenant's pages may show


@dataclass
class Tenants:
    world: World
    acme: Tenant
    globex: Tenant
    personal: dict[str, Any]  # the outsider's personal objects (purchase, token, closed org)


def closed_organization_of(user: User, *, name: str) -> Organization:
    """An organization closed while `user` was its billing manager (what `dunning.closing`
    leaves: a tombstone, a former billing contact, an invoice)."""
    organization = Organization.objects.create(
        name=name, billing_state=Organization.BillingState.DELETED, deleted_at=timezone.now()
    )
    FormerBillingContact.objects.create(
        organization=organization, user=user, role=Role.BILLING_MANAGER
    )
    Invoice.objects.create(
        billing_profile=BillingProfile.objects.create(organization=organization),
        gateway_id=f"in_closed_{organization.pk.hex}",
        number=f"KB-{name.upper()}",
        kind=Invoice.Kind.SEAT_SUBSCRIPTION,
        status=Invoice.Status.PAID,
        amount_due=1800,
        amount_paid=1800,
        created=timezone.now(),
        observed_at=timezone.now(),
    )
    return organization


def _tenant(org: Organization, owner: User, member: User, *, label: str) -> Tenant:
    seat_everyone(org, owner)
    settle()
    account = account_for(organization=org)
    fund(account, 50_000_000, key=f"fund-{label}")
    started = credits_purchase(
        actor=owner,
        account=account,
        amount_cents=5_000,
        idempotency_key=f"sweep-{label}",
        success_url="http://testserver/",
        cancel_url="http://testserver/",
    )
    assert started.purchase.status == Purchase.Status.PAID
    used = usage_debit(
        account_id=account.pk,
        user_id=member.pk,
        cost=1_234,
        request_id=f"sweep-{label}-1",
        provider="anthropic",
        model="claude-sonnet-4",
        input_tokens=100,
        output_tokens=10,
        project=f"{label}-secret-project",
    )
    invitation = InvitationFactory(
        organization=org, email=f"invitee@{label}.test", invited_by=owner
    )
    _, raw = api_token_create(user=member, name=f"{label} token")
    invoices = Invoice.objects.filter(billing_profile__organization=org).order_by("pk")
    assert invoices.filter(kind="credit_purchase").exists()
    assert invoices.exclude(kind="credit_purchase").exists(), "the seat invoice is synced"
    return Tenant(
        org=org,
        objects={
            "membership_id": Membership.objects.get(organization=org, user=member).pk,
            "invitation_id": invitation.pk,
            "purchase_id": started.purchase.pk,
            "invoice_id": invoices.first().pk,  # type: ignore[union-attr]
            "entry_id": used.entry_id,
        },
        token=raw,
        markers=[
            f"{label}-secret-project",
            f"invitee@{label}.test",
            *invoices.exclude(number="").values_list("number", flat=True),
        ],
    )


@pytest.fixture(scope="module")
def tenants(django_db_setup: None, django_db_blocker: Any) -> Iterator[Tenants]:
    with (
        django_db_blocker.unblock(),
        override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]),
        pytest.MonkeyPatch.context() as patch,
        atomic_as_test_case(),
    ):
        patch.setattr(delivery, "post", post_through_the_test_client)
        SeatPlan.objects.get_or_create(
            code="teams", defaults={"name": "Teams", "unit_amount": 1800, "position": 1}
        )
        world = world_create()
        acme = _tenant(world.org, world.owner, world.member, label="acme")
        globex = _tenant(world.neighbour, world.outsider, world.outsider, label="globex")
        globex.markers += [world.outsider.email, world.neighbour.name]
        personal_purchase = Purchase.objects.create(
            account=account_for(user=world.outsider),
            amount_cents=2_000,
            idempotency_key="sweep-personal-outsider",
            created_by=world.outsider,
        )
        token, _ = api_token_create(user=world.outsider, name="outsider's laptop")
        personal_account = account_for(user=world.outsider)
        fund(personal_account, 1_000_000, key="sweep-personal-fund")
        personal_use = usage_debit(
            account_id=personal_account.pk,
            user_id=world.outsider.pk,
            cost=999,
            request_id="sweep-personal-1",
            provider="anthropic",
            model="claude-sonnet-4",
            input_tokens=10,
            output_tokens=1,
            project="outsider-personal-project",
        )
        closed = closed_organization_of(world.outsider, name="Umbrella")
        globex.markers += ["Umbrella", "KB-UMBRELLA"]
        yield Tenants(
            world=world,
            acme=acme,
            globex=globex,
            personal={
                "purchase_id": personal_purchase.pk,
                "token_id": token.pk,
                "closed_id": closed.pk,
                "entry_id": personal_use.entry_id,
            },
        )
        transaction.set_rollback(True)


def _rows(model: type[Model], **lookup: Any) -> list[dict[str, Any]]:
    return list(model._default_manager.filter(**lookup).order_by("pk").values())


def state_of(org: Organization) -> dict[str, object]:
    """Every row the organization and its people own, field by field: a request that changed
    nothing leaves this equal."""
    people = list(Membership.objects.filter(organization=org).values_list("user_id", flat=True))
    return {
        "organization": _rows(Organization, pk=org.pk),
        "memberships": _rows(Membership, organization=org),
        "invitations": _rows(Invitation, organization=org),
        "audit": _rows(AuditEvent, organization=org),
        "account": _rows(CreditAccount, organization=org),
        "ledger": _rows(LedgerEntry, account__organization=org),
        "usage": _rows(UsageRecord, account__organization=org),
        "rollups": _rows(DailyUsage, account__organization=org),
        "purchases": _rows(Purchase, account__organization=org),
        "billing_profile": _rows(BillingProfile, organization=org),
        "invoices": _rows(Invoice, billing_profile__organization=org),
        "lifecycle": _rows(LifecycleTransition, organization=org),
        "seats": _rows(SeatSubscription, organization=org),
        "seat_changes": _rows(SeatChange, organization=org),
        "usage_settings": _rows(UsageSettings, organization=org),
        "people": _rows(User, pk__in=people),
        "tokens": _rows(ApiToken, user__in=people),
        "personal_accounts": _rows(CreditAccount, user__in=people),
        "personal_purchases": _rows(Purchase, account__user__in=people),
    }
