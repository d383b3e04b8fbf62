from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import User
from credits.pricing import prices_load
from demo.credits import seed_demo_credits
from demo.seats import seed_demo_seats
from organizations.models import Membership, Organization
from organizations.roles import Role
from organizations.services import audit_record

DEMO_PASSWORD = "kilo-demo-password"

ACME = "Acme Robotics"
GLOBEX = "Globex"
PEOPLE: list[tuple[str, str, str, str]] = [
    (ACME, "owner@example.com", "Olivia Owner", Role.OWNER),
    (ACME, "admin@example.com", "Adam Admin", Role.ADMIN),
    (ACME, "billing@example.com", "Bianca Billing", Role.BILLING_MANAGER),
    (ACME, "member@example.com", "Max Member", Role.MEMBER),
    (ACME, "dev1@example.com", "Dana Developer", Role.MEMBER),
    (ACME, "dev2@example.com", "Dev Patel", Role.MEMBER),
    (GLOBEX, "other@example.com", "Oscar Other", Role.OWNER),
]


class Command(BaseCommand):
    help = "Create the demo organizations and people (idempotent) and print the logins."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("seed_demo creates known passwords: run it with DEBUG=1 only.")
        with transaction.atomic():
            for org_name, email, name, role in PEOPLE:
                organization = (
                    Organization.objects.filter(name=org_name).order_by("created_at").first()
                )
                if organization is None:
                    organization = Organization.objects.create(name=org_name)
                user, new_user = User.objects.get_or_create(email=email, defaults={"name": name})
                if new_user:
                    user.set_password(DEMO_PASSWORD)
                    user.save(update_fields=["password"])
                _, joined = Membership.objects.get_or_create(
                    organization=organization, user=user, defaults={"role": role}
                )
                if joined:
                    audit_record(
                        organization=organization,
                        actor=None,
                        action="membership.seed",
                        target=email,
                        role=role,
                    )
                if user.active_organization_id is None:
                    user.active_organization = organization
                    user.save(update_fields=["active_organization"])
        self._billing()
        self.stdout.write(f"Demo logins (password: {DEMO_PASSWORD}):")
        for org_name, email, _, role in PEOPLE:
            self.stdout.write(f"  {email:<22} {Role(role).label:<16} {org_name}")

    def _billing(self) -> None:
        """Seats, credits and usage for Acme, through the real (sandbox) gateway."""
        prices_load()
        acme = Organization.objects.filter(name=ACME).order_by("created_at").first()
        assert acme is not None
        seed_demo_seats(organization=acme)
        people = {m.user.email: m.user for m in acme.memberships.select_related("user")}
        spenders = [
            people[email]
            for org_name, email, _, role in PEOPLE
            if org_name == ACME and role != Role.BILLING_MANAGER
        ]
        seed_demo_credits(organization=acme, buyer=people["billing@example.com"], spenders=spenders)
