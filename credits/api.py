"""The extension and model gateway API (DESIGN.md "Contracts"). OpenAPI at /api/openapi.json."""

from datetime import timedelta
from functools import cache
from typing import Any
from uuid import UUID

import redis
from django.conf import settings
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer
from pydantic import field_validator
from pydantic_core import to_jsonable_python

from billing.templatetags.money import microdollars
from credits import services
from credits.exceptions import (
    DailyLimitReached,
    InsufficientBalance,
    NoSeat,
    NotASpender,
    OrganizationSuspended,
    RequestIdConflict,
    UnknownModel,
)
from credits.models import ApiToken, CreditAccount, UsageRecord
from credits.pricing import prices_in_force
from credits.selectors import spend_check
from credits.services import Tokens
from organizations.access import api_membership_for
from organizations.models import Membership

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
            _rate_limit(api_token)
        return api_token


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.2, socket_timeout=0.2)


def _rate_limit(token: ApiToken) -> None:
    """A fixed one-minute window per token in Redis, one round trip (INCR + EXPIRE); open when
    Redis is down (the API must keep serving spend during a cache outage)."""
    now = timezone.now()
    key = f"kb:api-rate:{token.pk}:{now:%Y%m%d%H%M}"
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 70)
        count, _ = pipe.execute()
    except redis.RedisError:
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


class OrganizationOut(Schema):
    id: UUID
    name: str
    role: str


class ProfileOut(Schema):
    user: UserOut
    organizations: list[OrganizationOut]


class BalanceOut(Schema):
    balance: float
    balance_microdollars: int
    isDepleted: bool


class UsageIn(Schema):
    # Token counts are JSON integers only (strict: no "12", no true).
    request_id: str = Field(min_length=1, max_length=255)
    provider: str = Field(min_length=1, max_length=50)
    model: str = Field(min_length=1, max_length=100)
    input_tokens: int = Field(ge=0, le=MAX_TOKENS, strict=True)
    output_tokens: int = Field(ge=0, le=MAX_TOKENS, strict=True)
    cache_read_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS, strict=True)
    cache_write_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS, strict=True)
    project: str = Field(default="", max_length=200)

    @field_validator("request_id", "provider", "model", "project")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        # PostgreSQL text cannot hold NUL; refuse it here, naming the field, not at the INSERT.
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class UsageOut(Schema):
    cost_microdollars: int
    balance_microdollars: int
    entry_id: int


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
    header = request.headers.get("X-KiloCode-OrganizationId", "").strip()
    if not header:
        return None, services.account_for(user=user)
    try:
        org_id = UUID(header)
    except ValueError:
        raise ApiProblem(403, "forbidden", message="Not a member of that organization.") from None
    membership = api_membership_for(user=user, org_id=org_id)
    if membership is None:
        raise ApiProblem(403, "forbidden", message="Not a member of that organization.")
    return membership, services.account_for(organization=membership.organization)


@api.get(
    "/profile", response={200: ProfileOut, **COMMON}, summary="The caller and their organizations"
)
def profile(request: HttpRequest) -> dict[str, Any]:
    user = _token(request).user
    memberships = Membership.objects.filter(user=user).select_related("organization")
    return {
        "user": {"id": user.pk, "email": user.email, "name": user.name},
        "organizations": [
            {"id": m.organization_id, "name": m.organization.name, "role": m.role}
            for m in memberships.order_by("organization__name")
        ],
    }


@api.get(
    "/profile/balance",
    response={200: BalanceOut, 403: Problem, **COMMON},
    summary="The chosen profile's credit balance",
)
def balance(request: HttpRequest) -> dict[str, Any]:
    _, account = _profile(request)
    return {
        "balance": account.balance / 1_000_000,
        "balance_microdollars": account.balance,
        "isDepleted": account.balance <= 0,
    }


@api.post(
    "/usage",
    response={
        200: UsageOut,
        201: UsageOut,
        400: Problem,
        402: InsufficientOut,
        403: Problem,
        409: Problem,
        **COMMON,
    },
    summary="Record one model request and debit its cost at list price",
)
def usage(request: HttpRequest, payload: UsageIn) -> Status[dict[str, Any]]:
    membership, account = _profile(request)
    try:
        if membership is not None:
            spend_check(membership=membership)
        debit = services.usage_record(
            account=account,
            user=_token(request).user,
            request_id=payload.request_id,
            provider=payload.provider,
            model=payload.model,
            tokens=Tokens(
                input=payload.input_tokens,
                output=payload.output_tokens,
                cache_read=payload.cache_read_tokens,
                cache_write=payload.cache_write_tokens,
            ),
            project=payload.project,
        )
    except NotASpender as refused:
        raise ApiProblem(403, "forbidden", message=refused.message) from None
    except NoSeat as refused:
        raise ApiProblem(403, "no_seat", message=refused.message) from None
    except OrganizationSuspended as refused:
        raise ApiProblem(402, "organization_suspended", message=refused.message) from None
    except RequestIdConflict as conflict:
        raise ApiProblem(
            409, "request_id_conflict", message=conflict.message, field="request_id"
        ) from None
    except UnknownModel as unknown:
        raise ApiProblem(400, "unknown_model", message=unknown.message, field="model") from None
    except InsufficientBalance:
        owed = CreditAccount.objects.values_list("owed", flat=True).get(pk=account.pk)
        message = "Not enough credits for this request."
        if owed:
            # After a refund or chargeback took back credits that were spent.
            message = (
                f"This account owes {microdollars(owed)} after a refund or chargeback; "
                "buy credits to pay it back and use the API again."
            )
        raise ApiProblem(
            402,
            "insufficient_balance",
            message=message,
            buyCreditsUrl=services.buy_credits_url(account),
        ) from None
    except DailyLimitReached:
        raise ApiProblem(
            402,
            "member_daily_limit",
            message="You reached your daily spending limit in this organization; it resets at "
            "midnight UTC.",
            buyCreditsUrl="",
        ) from None
    body = {
        "cost_microdollars": debit.usage.cost,
        "balance_microdollars": debit.balance,
        "entry_id": debit.entry.pk,
    }
    return Status(201 if debit.created else 200, body)


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
