"""The extension and model gateway API (DESIGN.md "Contracts"). OpenAPI at /api/openapi.json."""

from collections.abc import Callable
from datetime import timedelta
from functools import cache
from typing import Any, Literal, TypeVar
from uuid import UUID

import redis
from django.conf import settings
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from ninja import Field, NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer
from pydantic import field_validator
from pydantic_core import to_jsonable_python

from billing.templatetags.money import microdollars
from credits import selectors, services
from credits.exceptions import (
    DailyLimitReached,
    HoldEnded,
    HoldNotFound,
    InsufficientBalance,
    MemberBudgetExceeded,
    NoSeat,
    NotASpender,
    OrganizationSuspended,
    RequestIdConflict,
    StaleContext,
    TokenBudgetExceeded,
    TokenRevoked,
    UnknownModel,
)
from credits.ledger import Debit, HoldPlaced, Release, Settlement
from credits.ledger import hold_release as ledger_hold_release
from credits.models import ApiToken, CreditAccount, UsageRecord
from credits.pricing import prices_in_force
from credits.services import Tokens, account_ensure, buy_credits_url_for
from credits.spend import SpendContext, spend_context, spend_context_refresh, token_used
from organizations.access import api_membership_for
from organizations.models import Membership, Organization

T = TypeVar("T")
MAX_BODY_BYTES = 64 * 1024
MAX_TOKENS = 100_000_000  # per request and kind: far above any model's context window


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after


class ApiProblem(Exception):
    """An answer other than success, with its status and JSON body."""

    def __init__(self, status: int, error: str, **extra: Any) -> None:
        self.status, self.body = status, {"error": error, **extra}


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        api_token = services.api_token_authenticate(token)
        if api_token is not None:
            _rate_limit(api_token.pk)
        return api_token


def _organization_header(request: HttpRequest) -> UUID | None:
    """The profile the header chooses: None for personal; ApiProblem 403 for a malformed id
    (answered like a stranger's organization)."""
    header = request.headers.get("X-KiloCode-OrganizationId", "").strip()
    if not header:
        return None
    try:
        return UUID(header)
    except ValueError:
        raise _not_a_member() from None


def _not_a_member() -> ApiProblem:
    return ApiProblem(403, "forbidden", message="Not a member of that organization.")


class SpendAuth(HttpBearer):
    """The hot path's authentication: the token and the chosen profile's spend context from
    this process's cache, with no query (`credits.spend`); the debit itself checks that they
    are still true."""

    def authenticate(self, request: HttpRequest, token: str) -> SpendContext | None:
        context = spend_context(raw_token=token, organization_id=_organization_header(request))
        if context is not None:
            _rate_limit(context.token_id)
        return context


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.2, socket_timeout=0.2)


def _rate_limit(token_id: int) -> None:
    """A fixed one-minute window per token in Redis, one round trip (INCR + EXPIRE); open when
    Redis is down (the API must keep serving spend during a cache outage)."""
    now = timezone.now()
    key = f"kb:api-rate:{token_id}:{now:%Y%m%d%H%M}"
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 70)
        count, _ = pipe.execute()
    except Exception:
        # breaks under load (ValueError, AttributeError): the limit fails open either way.
        return
    if count > settings.API_RATE_LIMIT_PER_MINUTE:
        raise RateLimited(retry_after=60 - now.second)


api = NinjaAPI(
    title="Kilo Billing API",
    version="1",
    description="Profile, balance and usage for the Kilo Code extension and model gateway. "
    "Authenticate with `Authorization: Bearer <token>`; choose an organization profile with "
    "`X-KiloCode-OrganizationId` (absent: the personal profile).",
    auth=TokenAuth(),
    urls_namespace="api",
)


@api.exception_handler(ApiProblem)
def _problem(request: HttpRequest, exc: ApiProblem) -> HttpResponse:
    return api.create_response(request, exc.body, status=exc.status)


@api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request,
        {
            "error": "unauthorized",
            "message": "Send a valid API token as: Authorization: Bearer <token>.",
        },
        status=401,
    )


@api.exception_handler(RateLimited)
def _rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response = api.create_response(
        request, {"error": "rate_limited", "message": "Too many requests; slow down."}, status=429
    )
    response["Retry-After"] = str(max(exc.retry_after, 1))
    return response


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    # Name each field as the client sent it: the last part of pydantic's location.
    fields = [str(error["loc"][-1]) for error in exc.errors if error.get("loc")]
    return api.create_response(
        request,
        {
            "error": "invalid_request",
            "message": "Some fields are missing or invalid: " + ", ".join(fields) + ".",
            "fields": fields,
            "detail": to_jsonable_python(exc.errors, fallback=str),
        },
        status=422,
    )


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    """ninja's own refusals (a body that is not JSON) in the API's error shape."""
    if exc.status_code == 400:
        body = {
            "error": "invalid_request",
            "message": "The body is not valid JSON.",
            "field": "body",
        }
    else:
        body = {"error": "error", "message": str(exc)}
    return api.create_response(request, body, status=exc.status_code)


class Problem(Schema):
    error: str
    message: str = ""


class InvalidOut(Schema):
    error: str
    message: str
    fields: list[str]
    detail: list[dict[str, Any]]


# Answers every operation may give besides its own.
COMMON = {401: Problem, 422: InvalidOut, 429: Problem}


class UserOut(Schema):
    id: int
    email: str
    name: str


# What the extension needs to know of an organization's lifecycle: "grace" still spends (and
# should nudge the payer), "suspended" is refused with 402 organization_suspended.
ProfileStatus = Literal["active", "grace", "suspended"]


def _status(organization: Organization | None) -> ProfileStatus:
    """The profile's status; the personal profile is always active."""
    if organization is None:
        return "active"
    if organization.billing_state == Organization.BillingState.GRACE:
        return "grace"
    if organization.billing_state == Organization.BillingState.SUSPENDED:
        return "suspended"
    return "active"


class OrganizationOut(Schema):
    id: UUID
    name: str
    role: str
    status: ProfileStatus


class ProfileOut(Schema):
    user: UserOut
    organizations: list[OrganizationOut]


class BalanceOut(Schema):
    balance: float
    balance_microdollars: int
    isDepleted: bool
    status: ProfileStatus
    held_microdollars: int
    available_microdollars: int


class RequestIn(Schema):
    """What names a model request: its id (unique per account), the model and the project."""

    request_id: str = Field(min_length=1, max_length=255)
    provider: str = Field(min_length=1, max_length=50)
    model: str = Field(min_length=1, max_length=100)
    project: str = Field(default="", max_length=200)

    @field_validator("request_id", "provider", "model", "project")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        # PostgreSQL text cannot hold NUL; refuse it here, naming the field, not at the INSERT.
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class TokensIn(Schema):
    # Token counts are JSON integers only (strict: no "12", no true).
    input_tokens: int = Field(ge=0, le=MAX_TOKENS, strict=True)
    output_tokens: int = Field(ge=0, le=MAX_TOKENS, strict=True)
    cache_read_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS, strict=True)
    cache_write_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS, strict=True)

    def tokens(self) -> Tokens:
        return Tokens(
            input=self.input_tokens,
            output=self.output_tokens,
            cache_read=self.cache_read_tokens,
            cache_write=self.cache_write_tokens,
        )


class UsageIn(TokensIn, RequestIn):
    pass


class UsageOut(Schema):
    cost_microdollars: int
    balance_microdollars: int
    entry_id: int


class HoldIn(RequestIn):
    max_input_tokens: int = Field(ge=0, le=MAX_TOKENS, strict=True)
    max_output_tokens: int = Field(ge=0, le=MAX_TOKENS, strict=True)
    max_cache_read_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS, strict=True)
    max_cache_write_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS, strict=True)
    ttl_seconds: int = Field(
        default=600, ge=1, le=int(services.HOLD_TTL_MAX.total_seconds()), strict=True
    )

    def max_tokens(self) -> Tokens:
        return Tokens(
            input=self.max_input_tokens,
            output=self.max_output_tokens,
            cache_read=self.max_cache_read_tokens,
            cache_write=self.max_cache_write_tokens,
        )


class HoldOut(Schema):
    hold_id: int
    amount_microdollars: int
    available_microdollars: int
    expires_at: str


class SettleIn(TokensIn):
    pass


class SettleOut(Schema):
    cost_microdollars: int
    balance_microdollars: int
    entry_id: int
    released_microdollars: int
    uncollected_microdollars: int


class ReleaseOut(Schema):
    released_microdollars: int
    available_microdollars: int


class ReceiptPrice(Schema):
    id: int
    effective_from: str
    source_url: str
    input: int
    output: int
    cache_read: int
    cache_write: int


class ReceiptLine(Schema):
    kind: str
    tokens: int
    price_per_million: int
    microdollars_times_million: int


class ReceiptOut(Schema):
    entry_id: int
    request_id: str
    created_at: str
    user: str
    provider: str
    model: str
    project: str
    tokens: dict[str, int]
    price: ReceiptPrice | None
    lines: list[ReceiptLine]
    exact_microdollars_times_million: int
    cost_microdollars: int
    rounding: str
    uncollected_microdollars: int
    ledger_entry: dict[str, Any]


class InsufficientOut(Schema):
    error: str
    message: str
    buyCreditsUrl: str = ""


class DayUsage(Schema):
    date: str
    cost_microdollars: int
    requests: int


class ModelUsage(Schema):
    provider: str
    model: str
    cost_microdollars: int
    requests: int
    input_tokens: int
    output_tokens: int


class UsageSummaryOut(Schema):
    since: str
    by_day: list[DayUsage]
    by_model: list[ModelUsage]


class Prices(Schema):
    input: int
    output: int
    cache_read: int
    cache_write: int


class ModelOut(Schema):
    id: str
    provider: str
    name: str
    prices: Prices


class ModelsOut(Schema):
    models: list[ModelOut]


def _token(request: HttpRequest) -> ApiToken:
    token = request.auth  # type: ignore[attr-defined]
    assert isinstance(token, ApiToken)
    return token


def _profile(request: HttpRequest) -> tuple[Membership | None, CreditAccount]:
    """The account the header chooses: an organization the caller belongs to, or personal.
    Unknown organizations and strangers' look the same (403), so nothing is revealed."""
    user = _token(request).user
    org_id = _organization_header(request)
    if org_id is None:
        return None, services.account_for(user=user)
    membership = api_membership_for(user=user, org_id=org_id)
    if membership is None:
        raise _not_a_member()
    return membership, services.account_for(organization=membership.organization)


@api.get(
    "/profile",
    response={200: ProfileOut, **COMMON},
    summary="The caller and their organizations",
    description="Each organization with the caller's role and its `status`: `active`, `grace` "
    "(a payment failed; usage works until the grace deadline) or `suspended` (usage is refused "
    "with 402 `organization_suspended`).",
)
def profile(request: HttpRequest) -> dict[str, Any]:
    user = _token(request).user
    memberships = Membership.objects.filter(user=user).select_related("organization")
    return {
        "user": {"id": user.pk, "email": user.email, "name": user.name},
        "organizations": [
            {
                "id": m.organization_id,
                "name": m.organization.name,
                "role": m.role,
                "status": _status(m.organization),
            }
            for m in memberships.exclude(
                organization__billing_state=Organization.BillingState.DELETED
            ).order_by("organization__name")
        ],
    }


@api.get(
    "/profile/balance",
    response={200: BalanceOut, 403: Problem, **COMMON},
    summary="The chosen profile's credit balance",
    description="`status` is the chosen profile's: `active`, `grace` (a payment failed; usage "
    "works until the grace deadline) or `suspended` (usage is refused with 402 "
    "`organization_suspended`). The personal profile is always `active`.",
)
def balance(request: HttpRequest) -> dict[str, Any]:
    membership, account = _profile(request)
    available = account.balance - account.held
    return {
        "balance": account.balance / 1_000_000,
        "balance_microdollars": account.balance,
        "isDepleted": available <= 0,
        "status": _status(membership.organization if membership else None),
        "held_microdollars": account.held,
        "available_microdollars": available,
    }


# What a call that spends may answer besides its own body.
SPENDING = {400: Problem, 402: InsufficientOut, 403: Problem, 409: Problem, **COMMON}


@api.post(
    "/usage",
    auth=SpendAuth(),
    response={200: UsageOut, 201: UsageOut, **SPENDING},
    summary="Record one model request and debit its cost at list price",
)
def usage(request: HttpRequest, payload: UsageIn) -> HttpResponse:
    def record(context: SpendContext) -> Debit:
        return services.usage_record(
            account_id=_account_id(context),
            user_id=context.user_id,
            request_id=payload.request_id,
            provider=payload.provider,
            model=payload.model,
            tokens=payload.tokens(),
            project=payload.project,
            context=context,
        )

    debit = _spend(request, record)
    body = {
        "cost_microdollars": debit.cost,
        "balance_microdollars": debit.balance,
        "entry_id": debit.entry_id,
    }
    # Built here rather than validated again against the schema: the fields are ours.
    return JsonResponse(body, status=201 if debit.created else 200)


@api.post(
    "/holds",
    auth=SpendAuth(),
    response={200: HoldOut, 201: HoldOut, **SPENDING},
    summary="Hold the list price of a streaming request's maximum tokens until it ends",
)
def hold_create(request: HttpRequest, payload: HoldIn) -> HttpResponse:
    def place(context: SpendContext) -> HoldPlaced:
        return services.hold_create(
            account_id=_account_id(context),
            user_id=context.user_id,
            request_id=payload.request_id,
            provider=payload.provider,
            model=payload.model,
            max_tokens=payload.max_tokens(),
            project=payload.project,
            ttl=timedelta(seconds=payload.ttl_seconds),
            context=context,
        )

    placed = _spend(request, place)
    body = {
        "hold_id": placed.hold_id,
        "amount_microdollars": placed.amount,
        "available_microdollars": placed.available,
        "expires_at": placed.expires_at.isoformat(),
    }
    return JsonResponse(body, status=201 if placed.created else 200)


@api.post(
    "/holds/{hold_id}/settle",
    auth=SpendAuth(),
    response={200: SettleOut, 201: SettleOut, 400: Problem, 404: Problem, 409: Problem, **COMMON},
    summary="Debit a hold's actual cost once and free the rest",
)
def hold_settle(request: HttpRequest, hold_id: int, payload: SettleIn) -> HttpResponse:
    def settle(context: SpendContext) -> Settlement:
        return services.hold_settle_record(
            hold_id=hold_id, user_id=context.user_id, tokens=payload.tokens(), context=context
        )

    settled = _spend(request, settle, who_may_spend=False)
    body = {
        "cost_microdollars": settled.cost,
        "balance_microdollars": settled.balance,
        "entry_id": settled.entry_id,
        "released_microdollars": settled.released,
        "uncollected_microdollars": settled.uncollected,
    }
    return JsonResponse(body, status=201 if settled.created else 200)


@api.post(
    "/holds/{hold_id}/release",
    auth=SpendAuth(),
    response={200: ReleaseOut, 400: Problem, 404: Problem, 409: Problem, **COMMON},
    summary="Free a hold without debiting anything",
)
def hold_release(request: HttpRequest, hold_id: int) -> HttpResponse:
    def release(context: SpendContext) -> Release:
        return ledger_hold_release(
            hold_id=hold_id,
            account_id=_hold_account(hold_id, context),
            user_id=context.user_id,
            caller=context.caller,
        )

    released = _spend(request, release, who_may_spend=False)
    body = {
        "released_microdollars": released.released,
        "available_microdollars": released.available,
    }
    return JsonResponse(body, status=200)


def _account_id(context: SpendContext) -> int:
    assert context.account_id is not None  # _spend makes sure
    return context.account_id


def _hold_account(hold_id: int, context: SpendContext) -> int:
    """The account of the caller's own hold (its profile need not be chosen again, and a member
    removed mid-stream may still release it); HoldNotFound otherwise."""
    account_id = selectors.hold_account_id(hold_id=hold_id, user_id=context.user_id)
    if account_id is None:
        raise HoldNotFound
    return account_id


def _spend(
    request: HttpRequest, act: Callable[[SpendContext], T], *, who_may_spend: bool = True
) -> T:
    """Run `act` with the caller's spend context: refusals answered from a context read again
    (a cached one may predate a change that grants), a context the ledger found stale read
    again and `act` retried, and the ledger's refusals in the API's words. `who_may_spend`
    off: acting on the caller's own hold, whose account is the hold's (settle, release)."""
    context = request.auth  # type: ignore[attr-defined]
    assert isinstance(context, SpendContext)
    for attempt in (1, 2, 3):
        needs_account = who_may_spend and context.account_id is None
        if attempt > 1 or (who_may_spend and _refusal(context) is not None) or needs_account:
            fresh = spend_context_refresh(context)
            if fresh is None:
                raise AuthenticationError
            context = fresh
        if who_may_spend:
            if (problem := _refusal(context)) is not None:
                raise problem
            if context.account_id is None:
                account_ensure(organization_id=context.organization_id, user_id=context.user_id)
                continue  # read the context again, with its account
        try:
            done = act(context)
        except StaleContext:
            continue
        except TokenRevoked:
            raise AuthenticationError from None
        except Exception as refusal:
            raise _problem_of(refusal, context) from None
        token_used(context, now=timezone.now())
        return done
    raise ApiProblem(503, "busy", message="The organization changed while you asked; retry.")


def _refusal(context: SpendContext) -> ApiProblem | None:
    """What the context refuses, in the API's words; None when it may spend."""
    if context.organization_id is not None and context.role is None:
        return _not_a_member()
    refusal = context.refusal()
    if refusal is None:
        return None
    status, error = {
        NotASpender: (403, "forbidden"),
        NoSeat: (403, "no_seat"),
        OrganizationSuspended: (402, "organization_suspended"),
    }[type(refusal)]
    return ApiProblem(status, error, message=refusal.message)


_LIMIT_MESSAGES = {
    DailyLimitReached: (
        "member_daily_limit",
        "You reached your daily spending limit in this organization; it resets at midnight UTC.",
    ),
    MemberBudgetExceeded: (
        "member_budget_exceeded",
        "This would pass your monthly budget in this organization; it resets on the first of "
        "the month (UTC). An owner or admin can raise it.",
    ),
    TokenBudgetExceeded: (
        "token_budget_exceeded",
        "This would pass this API token's monthly cap; it resets on the first of the month "
        "(UTC). Make a new token with a higher cap to go on.",
    ),
}


def _problem_of(refusal: Exception, context: SpendContext) -> Exception:
    """The API's answer to what the ledger refused; anything else goes on as it is."""
    answers: dict[type[Exception], Callable[[Any], ApiProblem]] = {
        InsufficientBalance: lambda _: ApiProblem(
            402,
            "insufficient_balance",
            message=_insufficient_message(context),
            buyCreditsUrl=buy_credits_url_for(organization_id=context.organization_id),
        ),
        RequestIdConflict: lambda conflict: ApiProblem(
            409, "request_id_conflict", message=conflict.message, field="request_id"
        ),
        UnknownModel: lambda unknown: ApiProblem(
            400, "unknown_model", message=unknown.message, field="model"
        ),
        HoldNotFound: lambda _: ApiProblem(404, "not_found", message="No such hold of yours."),
        HoldEnded: lambda ended: ApiProblem(
            409, f"hold_{ended.state}", message=f"This hold is {ended.state} already."
        ),
    }
    if type(refusal) in _LIMIT_MESSAGES:
        error, message = _LIMIT_MESSAGES[type(refusal)]
        return ApiProblem(402, error, message=message, buyCreditsUrl="")
    for kind, answer in answers.items():
        if isinstance(refusal, kind):
            return answer(refusal)
    return refusal


def _insufficient_message(context: SpendContext) -> str:
    owed = (
        CreditAccount.objects.filter(pk=_account_id(context)).values_list("owed", flat=True).first()
    )
    if owed:
        # After a refund or chargeback took back credits that were spent.
        return (
            f"This account owes {microdollars(owed)} after a refund or chargeback; "
            "buy credits to pay it back and use the API again."
        )
    return "Not enough credits available for this request."


@api.get(
    "/usage/{entry_id}",
    response={200: ReceiptOut, 403: Problem, 404: Problem, **COMMON},
    summary="The receipt of one of your debits: tokens, list prices, arithmetic, ledger entry",
)
def usage_receipt(request: HttpRequest, entry_id: int) -> dict[str, Any]:
    _, account = _profile(request)
    receipt = selectors.usage_receipt(
        account_id=account.pk, user_id=_token(request).user_id, entry_id=entry_id
    )
    if receipt is None:
        raise ApiProblem(404, "not_found", message="No such usage entry of yours here.")
    return receipt


@api.get(
    "/profile/usage",
    response={200: UsageSummaryOut, 403: Problem, **COMMON},
    summary="The caller's usage, last 30 days",
)
def profile_usage(request: HttpRequest) -> dict[str, Any]:
    _, account = _profile(request)
    since = timezone.now() - timedelta(days=30)
    rows = UsageRecord.objects.filter(
        account=account, user=_token(request).user, created_at__gte=since
    )
    by_day = (
        rows.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(cost=Sum("cost"), requests=Count("id"))
        .order_by("day")
    )
    by_model = (
        rows.values("provider", "model")
        .annotate(
            cost=Sum("cost"),
            requests=Count("id"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
        )
        .order_by("-cost")
    )
    return {
        "since": since.date().isoformat(),
        "by_day": [
            {
                "date": row["day"].isoformat(),
                "cost_microdollars": row["cost"],
                "requests": row["requests"],
            }
            for row in by_day
        ],
        "by_model": [
            {
                "provider": row["provider"],
                "model": row["model"],
                "cost_microdollars": row["cost"],
                "requests": row["requests"],
                "input_tokens": row["input_tokens"],
                "output_tokens": row["output_tokens"],
            }
            for row in by_model
        ],
    }


@api.get(
    "/models",
    response={200: ModelsOut, **COMMON},
    summary="Models and their list prices in force now",
)
def models(request: HttpRequest) -> dict[str, Any]:
    return {
        "models": [
            {
                "id": price.model_id,
                "provider": price.provider,
                "name": price.name,
                "prices": {
                    "input": price.input_price,
                    "output": price.output_price,
                    "cache_read": price.cache_read_price,
                    "cache_write": price.cache_write_price,
                },
            }
            for price in prices_in_force()
        ]
    }
