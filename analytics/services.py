"""Writes of the analytics app: the Usage tab's visibility setting, and what goes when an
organization closes. (The rollups are written by a database trigger on the usage records.)"""

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from analytics.models import DailyUsage, UsageSettings
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


def organization_usage_delete(*, organization: Organization) -> dict[str, int]:
    """Closing an organization (`dunning.closing`): its usage rollups and settings go."""
    rollups, _ = DailyUsage.objects.filter(account__organization=organization).delete()
    UsageSettings.objects.filter(organization=organization).delete()
    return {"usage_rollups": rollups}
