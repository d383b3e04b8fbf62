"""Usage analytics: daily rollups of the usage records, and who in an organization sees what."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from credits.models import CreditAccount
from organizations.models import Organization


class UsageCounts(models.Model):
    """The key and the figures of a usage rollup row: one account's usage by one user, provider,
    model and project, over the period its table's rows stand for."""

    # Covered by each table's own indexes; an index of its own would only cost writes.
    account = models.ForeignKey(
        CreditAccount, on_delete=models.CASCADE, related_name="+", db_index=False
    )
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
        abstract = True


class DailyUsage(UsageCounts):
    """One account's usage on one UTC day by one user, provider, model and project. Counted by a
    trigger on the usage records (migration 0003) in the transaction that records each usage
    event, so every event is in exactly one row, exactly once. Pages read these rows, never the
    events."""

    day = models.DateField()

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


class WeeklyUsage(UsageCounts):
    """One account's usage in one rollup week (a week cut at the first of each month:
    `analytics.periods.week_start`) by one user, provider, model and project: the sum of that
    week's daily rows, written by `usage_weeks_sum` once the week has ended. Pages read these
    rows for the weeks `UsageWeek` says are summed and up to date, and the daily rows for every
    other day, so long periods read about a seventh of the rows and every figure stays exact."""

    start = models.DateField(help_text="The week's first day (UTC).")

    class Meta:
        # Read one week at a time (account, start): that index also serves the member and
        # project filters within the week, so there is no other.
        constraints = [
            models.UniqueConstraint(
                fields=["account", "start", "user", "provider", "model", "project"],
                name="weekly_usage_one_row_per_key",
                nulls_distinct=False,
            ),
            models.CheckConstraint(
                condition=Q(requests__gt=0) & Q(cost__gte=0), name="weekly_usage_counts_events"
            ),
        ]

    def __str__(self) -> str:
        return f"week of {self.start} {self.model} {self.cost}"


class UsageWeek(models.Model):
    """An ended rollup week in which an account has usage, and whether its WeeklyUsage rows are
    its daily rows summed. `usage_weeks_sum` notes the accounts of each week once the week has
    ended, then sums them; a trigger on the daily rollups (migration 0004) marks a week unsummed
    again when a record for a past day lands in it (an import, demo history), after waiting for
    a sum in progress to commit. A debit of the current day runs no trigger of its own."""

    account = models.ForeignKey(
        CreditAccount, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    start = models.DateField(help_text="The week's first day (UTC).")
    summed = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "start"], name="usage_week_one_row"),
        ]
        indexes = [
            # The weeks waiting for their sum, without reading the summed ones.
            models.Index(fields=["start"], condition=Q(summed=False), name="usage_week_to_sum"),
        ]

    def __str__(self) -> str:
        return f"week of {self.start}: {'summed' if self.summed else 'to sum'}"


class SweptWeek(models.Model):
    """A rollup week whose accounts with usage `usage_weeks_sum` has noted (UsageWeek), once no
    transaction that began before the week's end was open: each later record in it is a late
    one, which marks its week itself."""

    start = models.DateField(unique=True, help_text="The week's first day (UTC).")
    swept_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"week of {self.start} swept"


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
