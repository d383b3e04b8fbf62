from django.db.models import QuerySet

from accounts.models import User
from credits.exceptions import NoSeat, NotASpender, OrganizationSuspended
from credits.models import ApiToken, CreditAccount, LedgerEntry, Purchase
from organizations.models import Membership
from organizations.roles import Permission, allows
from seats.selectors import member_has_seat


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


def spend_check(*, membership: Membership) -> None:
    """May this person spend the organization's credits now? A role that spends (billing
    managers do not), an organization that is not suspended, and a seat. Raises the SpendRefused
    that says why not. Limits and budgets are enforced by the debit itself."""
    if not allows(membership.role, Permission.SPEND_CREDITS):
        raise NotASpender
    if membership.organization.is_suspended:
        raise OrganizationSuspended
    if not member_has_seat(membership=membership):
        raise NoSeat
