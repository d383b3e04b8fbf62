"""Writes of the analytics app: the Usage tab's visibility setting. (The rollups are written by
`analytics.rollups`, inside the credits code's transactions.)"""

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from analytics.models import UsageSettings
from organizations.models import Organization
from organizations.services import audit_record


def usage_visibility_set(
    *, actor: User, organization: Organization, members_see_totals: bool
) -> UsageSettings:
    """Whether members see the organization's totals beside their own usage. Members never see
    other members' rows, whatever this says."""
    with transaction.atomic():
        settings, _ = UsageSettings.objects.update_or_create(
            organization=organization,
            defaults={
                "members_see_totals": members_see_totals,
                "updated_at": timezone.now(),
                "updated_by": actor,
            },
        )
        audit_record(
            organization=organization,
            actor=actor,
            action="usage.visibility",
            target=organization.name,
            members_see_totals=members_see_totals,
        )
    return settings
