from django.db.models import QuerySet

from accounts.models import User
from credits.models import ApiToken, CreditAccount, LedgerEntry, Purchase


def ledger(*, account: CreditAccount) -> QuerySet[LedgerEntry]:
    return (
        LedgerEntry.objects.filter(account=account)
        .select_related("actor", "usage")
        .order_by("-created_at", "-pk")
    )


def purchases(*, account: CreditAccount) -> QuerySet[Purchase]:
    return Purchase.objects.filter(account=account).order_by("-created_at", "-pk")


def api_tokens(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at")
