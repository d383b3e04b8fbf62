"""What the API checks before a debit, read once and kept in this process.

A spend context answers, for one API token and the profile it chose: who is calling, whether
they may spend this organization's credits now (role, seat, suspension), which account pays, and
the versions those facts were read at (`credits.models.SpendVersion`). The debit statement checks
the token and the versions itself, so a context never needs a round trip to be trusted: when a
fact changed the debit answers "stale" and the context is read again (one query). A refusal read
from the cache is read again before it is answered, so a change that grants (seats bought, a
payment) is seen at once too. Seat occupancy is part of the context, so it is counted only when
memberships or seats change, not per request.
"""

import hashlib
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from uuid import UUID

from django.db import connection

from credits.exceptions import NoSeat, NotASpender, OrganizationSuspended, SpendRefused
from credits.ledger import Caller
from credits.models import ApiToken, ModelPrice
from organizations.models import Organization
from organizations.roles import Permission, allows
from seats.models import SEAT_ROLES, SeatSubscription


@dataclass(frozen=True, slots=True)
class SpendContext:
    digest: str  # the token's hash
    token_id: int
    user_id: int
    token_used_at: datetime | None
    organization_id: UUID | None  # None: the personal profile
    role: str | None  # None: not a member of that organization (or it is closed)
    suspended: bool
    has_seat: bool
    account_id: int | None  # None: the account does not exist yet
    versions: tuple[int, int]  # (prices, organization)

    @property
    def caller(self) -> Caller:
        """What the ledger's functions check is still true when they spend."""
        return Caller(
            token_id=self.token_id, organization_id=self.organization_id, versions=self.versions
        )

    def refusal(self) -> SpendRefused | None:
        """Why this person may not spend this profile's credits, or None. A non-member is not
        answered here (the API's 403 `forbidden` says nothing about the organization)."""
        if self.organization_id is None or self.role is None:
            return None
        if not allows(self.role, Permission.SPEND_CREDITS):
            return NotASpender()
        if self.suspended:
            return OrganizationSuspended()
        if not self.has_seat:
            return NoSeat()
        return None


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


_LIVE = sorted(SeatSubscription.LIVE_STATUSES)
# Everything in one statement, so that the facts and their versions come from one snapshot.
_CONTEXT_SQL = f"""
SELECT t.id, t.user_id, t.last_used_at, m.role,
       o.billing_state = '{Organization.BillingState.SUSPENDED}',
       coalesce(
           m.role = ANY(%(seat_roles)s) AND s.status = ANY(%(live)s)
           AND (SELECT count(*) FROM organizations_membership ahead
                 WHERE ahead.organization_id = m.organization_id
                   AND ahead.role = ANY(%(seat_roles)s)
                   AND (ahead.created_at, ahead.id) < (m.created_at, m.id))
               < greatest(s.quantity - s.removing, 0),
           false),
       a.id,
       coalesce((SELECT version FROM credits_spendversion WHERE scope = 'prices'), 0),
       coalesce((SELECT version FROM credits_spendversion WHERE scope = %(scope)s), 0)
  FROM credits_apitoken t
  JOIN accounts_user u ON u.id = t.user_id AND u.is_active
  LEFT JOIN organizations_membership m
         ON %(organization)s::uuid IS NOT NULL AND m.user_id = t.user_id
        AND m.organization_id = %(organization)s::uuid
  LEFT JOIN organizations_organization o
         ON o.id = m.organization_id AND o.billing_state <> '{Organization.BillingState.DELETED}'
  LEFT JOIN seats_seatsubscription s ON s.organization_id = o.id
  LEFT JOIN credits_creditaccount a
         ON (%(organization)s::uuid IS NULL AND a.user_id = t.user_id)
         OR (o.id IS NOT NULL AND a.organization_id = o.id)
 WHERE t.token_hash = %(hash)s AND t.revoked_at IS NULL
"""  # noqa: S608 - constants from the models, values are parameters

_contexts: dict[tuple[str, UUID | None], SpendContext] = {}
_prices: dict[tuple[int, date], dict[tuple[str, str], ModelPrice]] = {}


def spend_context_read(*, digest: str, organization_id: UUID | None) -> SpendContext | None:
    """Read the context from the database (and keep it); None for an unknown or revoked token.
    `digest` is the token's hash (`token_hash`)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _CONTEXT_SQL,
            {
                "hash": digest,
                "organization": organization_id,
                "scope": str(organization_id) if organization_id else None,
                "seat_roles": sorted(SEAT_ROLES),
                "live": _LIVE,
            },
        )
        row = cursor.fetchone()
    if row is None:
        _contexts.pop((digest, organization_id), None)
        return None
    token_id, user_id, used_at, role, suspended, has_seat, account_id, prices, organization = row
    context = SpendContext(
        digest=digest,
        token_id=token_id,
        user_id=user_id,
        token_used_at=used_at,
        organization_id=organization_id,
        role=role,
        suspended=bool(suspended),
        has_seat=bool(has_seat),
        account_id=account_id,
        versions=(prices, organization),
    )
    _contexts[(digest, organization_id)] = context
    return context


def spend_context(*, raw_token: str, organization_id: UUID | None) -> SpendContext | None:
    """The kept context if there is one (the debit checks it), else read it."""
    digest = token_hash(raw_token)
    cached = _contexts.get((digest, organization_id))
    if cached is not None:
        return cached
    return spend_context_read(digest=digest, organization_id=organization_id)


def spend_context_refresh(context: SpendContext) -> SpendContext | None:
    """The same token and profile read again: after a refusal, "stale" or a revocation."""
    return spend_context_read(digest=context.digest, organization_id=context.organization_id)


def token_use_due(last_used_at: datetime | None, *, now: datetime) -> bool:
    """A token's use is recorded at most once a minute: a write per API call would cost more
    than it tells."""
    return last_used_at is None or now - last_used_at >= timedelta(minutes=1)


def token_used(context: SpendContext, *, now: datetime) -> None:
    if not token_use_due(context.token_used_at, now=now):
        return
    ApiToken.objects.filter(pk=context.token_id).update(last_used_at=now)
    _contexts[(context.digest, context.organization_id)] = replace(context, token_used_at=now)


def spend_cache_clear() -> None:
    _contexts.clear()
    _prices.clear()


def price_on(*, provider: str, model: str, day: date, version: int) -> ModelPrice | None:
    """The list price in force on `day`, from this process's copy of the catalogue at `version`
    (the prices' SpendVersion, which the debit checks)."""
    key = (version, day)
    table = _prices.get(key)
    if table is None:
        prices = (
            ModelPrice.objects.filter(effective_from__lte=day)
            .order_by("provider", "model_id", "-effective_from")
            .distinct("provider", "model_id")
        )
        table = {(price.provider, price.model_id): price for price in prices}
        _prices.clear()  # one day and version at a time
        _prices[key] = table
    return table.get((provider, model))
