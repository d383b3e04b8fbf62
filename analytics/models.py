"""Usage analytics: daily rollups of the usage records, and who in an organization sees what."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from credits.models import CreditAccount
from organizations.models import Organization


class DailyUsage(models.Model):
    """One account's usage on one UTC day by one user, provider, model and project. Counted by a
    trigger on the usage records (migration 0003) in the transaction that records each usage
    event, so every event is in exactly one row, exactly once. Pages read these rows, never the
    events."""

    # Both foreign keys are covered by the indexes below; their own indexes would only cost writes.
    account = models.ForeignKey(
        CreditAccount, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    day = models.DateField()
    # No database constraint: a deleted user's spend stays attributed to their id (the page says
    # "deleted user") instead of several rows collapsing into one key when the user goes.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=100)
    project = models.CharField(max_length=200, blank=True)
    requests = models.BigIntegerField()
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_read_tokens = models.BigIntegerField()
    cache_write_tokens = models.BigIntegerField()
    cost = models.BigIntegerField(help_text="Microdollars")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "day", "user", "provider", "model", "project"],
                name="daily_usage_one_row_per_key",
                nulls_distinct=False,
            ),
            models.CheckConstraint(
                condition=Q(requests__gt=0) & Q(cost__gte=0), name="daily_usage_counts_events"
            ),
        ]
        indexes = [
            # A member's own usage (and the member filter) without reading everyone's rows.
            models.Index(fields=["account", "user", "day"], name="daily_usage_by_user"),
            models.Index(fields=["account", "project", "day"], name="daily_usage_by_project"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.model} {self.cost}"


class UsageSettings(models.Model):
    """What members may see on the Usage tab besides their own usage. Absent: the defaults."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="usage_settings"
    )
    members_see_totals = models.BooleanField(
        default=False,
        help_text="Members see the organization's totals (never other members' rows).",
    )
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name_plural = "usage settings"

    def __str__(self) -> str:
        return f"usage settings of {self.organization_id}"
