from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from organizations.models import Organization
from payments.factory import get_gateway
from payments.sandbox import engine
from payments.sandbox.models import SandboxCustomer


class Command(BaseCommand):
    help = (
        "An organization's gateway customer deleted in the dashboard, as Stripe does it: its "
        "subscriptions end at once (customer.subscription.deleted), its cards are detached, "
        "then customer.deleted; every later call naming it fails with resource_missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="The organization's id (a UUID).")

    def handle(self, *args: Any, **options: Any) -> None:
        if get_gateway().name != "sandbox":
            raise CommandError(
                "STRIPE_SECRET_KEY is set: delete the customer in Stripe's dashboard."
            )
        try:
            org_id = UUID(options["org"])
        except ValueError as error:
            raise CommandError(f"{options['org']!r} is not an organization id.") from error
        organization = Organization.objects.filter(pk=org_id).first()
        if organization is None:
            raise CommandError(f"No organization {org_id}.")
        with engine.action(), transaction.atomic():
            # The customer the product made for it (billing.services.gateway_customer_ensure
            # names the organization in the metadata); the newest still there.
            customer = (
                SandboxCustomer.objects.select_for_update()
                .filter(metadata__organization_id=str(org_id), deleted_at__isnull=True)
                .order_by("-created")
                .first()
            )
            if customer is None:
                raise CommandError(f"{organization.name} has no customer in the sandbox.")
            ended = list(
                customer.subscriptions.exclude(
                    status__in=["canceled", "incomplete_expired"]
                ).values_list("id", flat=True)
            )
            engine.customer_delete(customer)
        self.stdout.write(
            f"Customer {customer.id} of {organization.name} deleted"
            + (f"; subscriptions ended: {', '.join(ended)}." if ended else "; no subscription.")
        )
