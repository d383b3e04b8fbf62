from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from organizations.models import Organization


class BillingProfile(models.Model):
    """Who pays: an organization or a person, their gateway customer and the details that appear
    on invoices (company, address, tax ID, billing email)."""

    organization = models.OneToOneField(
        Organization,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="billing_profile",
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="billing_profile",
    )
    gateway_customer_id = models.CharField(max_length=80, blank=True, db_index=True)
    # The customer deleted at the gateway (its dashboard) that this profile forgot last: the
    # next customer is created under a new idempotency key, and late events of the old one are
    # recognised (billing.services.gateway_customer_forget).
    former_gateway_customer_id = models.CharField(max_length=80, blank=True)
    company_name = models.CharField(max_length=200, blank=True)
    billing_email = models.EmailField(blank=True)
    address_line1 = models.CharField(max_length=200, blank=True)
    address_line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    state = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166 code, e.g. DE")
    tax_id = models.CharField(max_length=40, blank=True)
    # The one currency the payer is charged in, fixed by the first charge: Stripe refuses two
    # subscriptions in different currencies on one customer, and mixing confuses the invoices.
    currency = models.CharField(max_length=3, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # The table keeps its first name: the model moved here from `invoices` (migration
        # billing.0001), the data did not move.
        db_table = "invoices_billingprofile"
        constraints = [
            models.CheckConstraint(
                condition=~Q(organization__isnull=False, user__isnull=False),
                name="billing_profile_one_payer",
            )
        ]

    def __str__(self) -> str:
        return self.company_name or self.billing_email or f"profile {self.pk}"
