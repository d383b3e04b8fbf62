from django.conf import settings
from django.db import models
from django.utils import timezone

from invoices.models import Invoice
from organizations.models import Organization
from organizations.roles import Role


class LifecycleTransition(models.Model):
    """One move of an organization's billing state: from, to, when, why, which invoice, by whom.
    Never updated; kept (with the organization's tombstone) after the retention purge."""

    State = Organization.BillingState

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="lifecycle_transitions"
    )
    from_state = models.CharField(max_length=20, choices=State.choices)
    to_state = models.CharField(max_length=20, choices=State.choices)
    reason = models.CharField(max_length=300)
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when the system made the move (a payment, a sweep).",
    )
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # The table keeps its first name: the model moved here from `invoices` (dunning.0001).
        db_table = "invoices_lifecycletransition"
        indexes = [models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.from_state} → {self.to_state}"


class OrganizationLifecycle(Organization):
    """The organization as staff see it in the admin's billing section: state, deadlines,
    timeline, and the extend / suspend / restore actions."""

    class Meta:
        proxy = True
        verbose_name = "organization billing lifecycle"
        verbose_name_plural = "organization billing lifecycles"


class FormerBillingContact(models.Model):
    """Someone who may still read a closed organization's invoices: an owner or billing
    manager at the moment it closed. Memberships go at closing, so `dunning.closing` writes
    these in the same transaction; the profile page lists the closed organizations from them."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="former_organizations"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "user"], name="one_former_contact_per_user"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} was {self.role} of {self.organization_id}"
