"""Every change to credits. Money moves only through `ledger_credit` and `usage_record`, each one
ledger row and one conditional balance update in a single transaction, once per idempotency key."""

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Sum
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from billing.models import BillingProfile
from billing.notify import email_after_commit
from billing.selectors import billing_contacts, billing_email
from billing.services import billing_profile_for, gateway_customer_ensure
from credits.exceptions import (
    DailyLimitReached,
    InsufficientBalance,
    PurchaseDeclined,
    UnknownModel,
)
from credits.models import (
    ApiToken,
    CreditAccount,
    LedgerEntry,
    Purchase,
    UsageRecord,
)
from credits.pricing import price_in_force, usage_cost
from organizations.models import Organization
from organizations.services import audit_record
from payments.gateway import GatewayError, Invoice, get_gateway
from payments.queue import enqueue_after_commit
from payments.signals import invoice_fetched

logger = logging.getLogger(__name__)

# A top-up that started this long ago and never finished (a worker died) may be tried again.
AUTO_TOPUP_STALE_AFTER = timedelta(minutes=10)


def account_for(
    *, organization: Organization | None = None, user: User | None = None
) -> CreditAccount:
    if organization is not None:
        account, _ = CreditAccount.objects.get_or_create(organization=organization)
    else:
        assert user is not None
        account, _ = CreditAccount.objects.get_or_create(user=user)
    return account


def _money_contacts(account: CreditAccount) -> list[str]:
    """Who hears about this account's money: the billing contacts, or the person."""
    if account.organization:
        return billing_contacts(account.organization)
    return [account.user.email] if account.user else []


def _billing_profile(account: CreditAccount) -> BillingProfile:
    if account.organization:
        return billing_profile_for(organization=account.organization)
    return billing_profile_for(user=account.user)


# The ledger


def ledger_credit(
    *,
    account_id: int,
    amount: int,
    kind: str,
    idempotency_key: str,
    actor: User | None = None,
    reason: str = "",
) -> tuple[LedgerEntry, bool]:
    """Add (or, for adjustments, remove) money once per key; never below zero.
    Returns (entry, created); a repeat returns the first entry and moves nothing."""
    try:
        with transaction.atomic():
            entry = LedgerEntry.objects.create(
                account_id=account_id,
                amount=amount,
                kind=kind,
                idempotency_key=idempotency_key,
                actor=actor,
                reason=reason,
            )
            updated = CreditAccount.objects.filter(pk=account_id, balance__gte=-amount).update(
                balance=F("balance") + amount
            )
            if not updated:
                raise InsufficientBalance
    except IntegrityError:
        return LedgerEntry.objects.get(
            account_id=account_id, idempotency_key=idempotency_key
        ), False
    if amount > 0:
        # Re-arm the low-balance alert once the balance is back at or above its threshold.
        CreditAccount.objects.filter(
            pk=account_id, low_balance_alerted=True, balance__gte=F("low_balance_threshold")
        ).update(low_balance_alerted=False)
    return entry, True


@dataclass(frozen=True)
class Debit:
    entry: LedgerEntry
    usage: UsageRecord
    balance: int
    created: bool


_DEBIT_SQL = f"""
    UPDATE {CreditAccount._meta.db_table} SET balance = balance - %s
    WHERE id = %s AND balance >= %s
    RETURNING balance, auto_topup_enabled, auto_topup_threshold,
              low_balance_threshold, low_balance_alerted
"""  # noqa: S608 - table name from the model, values are parameters


@dataclass(frozen=True)
class Tokens:
    """What one model request used, by kind."""

    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0


def usage_record(
    *,
    account: CreditAccount,
    user: User,
    request_id: str,
    provider: str,
    model: str,
    tokens: Tokens,
    project: str = "",
    at: datetime | None = None,
) -> Debit:
    """Record one model request and debit its cost at the provider's list price in force on its
    day, nothing added (the rounding rule is in `credits.pricing`). UnknownModel when the
    catalogue has no price for it."""
    now = at or timezone.now()
    price = price_in_force(provider=provider, model_id=model, on=now.date())
    if price is None:
        raise UnknownModel(provider=provider, model=model)
    return usage_debit(
        account=account,
        user=user,
        cost=usage_cost(
            price,
            input_tokens=tokens.input,
            output_tokens=tokens.output,
            cache_read_tokens=tokens.cache_read,
            cache_write_tokens=tokens.cache_write,
        ),
        request_id=request_id,
        provider=provider,
        model=model,
        input_tokens=tokens.input,
        output_tokens=tokens.output,
        cache_read_tokens=tokens.cache_read,
        cache_write_tokens=tokens.cache_write,
        project=project,
        at=now,
    )


def usage_debit(
    *,
    account: CreditAccount,
    user: User,
    cost: int,
    request_id: str,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    project: str = "",
    at: datetime | None = None,
) -> Debit:
    """The ledger's side of `usage_record`: debit `cost` once per request_id, never below zero,
    within the member's daily limit. The inserts and one conditional UPDATE (which also reads
    what the follow-ups need), in one transaction. `at` back-dates the records (imports and demo
    history only)."""
    if account.member_daily_limit is not None:
        _check_daily_limit(account, user, cost)
    now = at or timezone.now()
    try:
        with transaction.atomic():
            # Inserts first: a repeated request_id stops at the unique key before anything
            # else, and the account row is locked (by the UPDATE) only from the last statement
            # to COMMIT, so that debits on one busy account queue as briefly as they can.
            entry = LedgerEntry.objects.create(
                account_id=account.pk,
                amount=-cost,
                kind=LedgerEntry.Kind.USAGE,
                idempotency_key=request_id,
                actor=user,
                created_at=now,
            )
            usage = UsageRecord.objects.create(
                entry=entry,
                account_id=account.pk,
                user=user,
                request_id=request_id,
                provider=provider,
                model=model,
                project=project,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read_tokens,
                cache_write_tokens=cache_write_tokens,
                cost=cost,
                created_at=now,
            )
            with connection.cursor() as cursor:
                cursor.execute(_DEBIT_SQL, [cost, account.pk, cost])
                row = cursor.fetchone()
            if row is None:
                raise InsufficientBalance
            balance, topup_enabled, topup_threshold, alert_threshold, alerted = row
            if topup_enabled and balance < topup_threshold:
                _auto_topup_claim(account.pk)
            if alert_threshold is not None and balance < alert_threshold and not alerted:
                _low_balance_alert(account, balance)
    except IntegrityError:
        # This request_id was debited before (or is being debited by a racing retry, which
        # the unique key made us wait for): answer with that first result.
        if known := _known_debit(account.pk, request_id):
            return known
        raise
    return Debit(entry=entry, usage=usage, balance=balance, created=True)


def _known_debit(account_id: int, request_id: str) -> Debit | None:
    entry = (
        LedgerEntry.objects.filter(account_id=account_id, idempotency_key=request_id)
        .select_related("usage", "account")
        .first()
    )
    if entry is None:
        return None
    return Debit(entry=entry, usage=entry.usage, balance=entry.account.balance, created=False)


def _check_daily_limit(account: CreditAccount, user: User, cost: int) -> None:
    midnight = datetime.combine(timezone.now().date(), time.min, tzinfo=timezone.now().tzinfo)
    spent = (
        UsageRecord.objects.filter(account=account, user=user, created_at__gte=midnight).aggregate(
            total=Sum("cost")
        )["total"]
        or 0
    )
    assert account.member_daily_limit is not None
    if spent + cost > account.member_daily_limit:
        raise DailyLimitReached


def _low_balance_alert(account: CreditAccount, balance: int) -> None:
    claimed = CreditAccount.objects.filter(pk=account.pk, low_balance_alerted=False).update(
        low_balance_alerted=True
    )
    if not claimed:
        return
    account.refresh_from_db()
    chosen = [line.strip() for line in account.low_balance_recipients.splitlines() if line.strip()]
    # The people chosen on the Credits tab, else the billing contacts; the billing email hears
    # of every money email either way.
    recipients = chosen or _money_contacts(account)
    if chosen and account.organization and (email := billing_email(account.organization)):
        recipients = sorted({*chosen, email})
    email_after_commit(
        recipients=recipients,
        subject="Your Kilo Billing credit balance is low",
        template="emails/credits_low_balance.txt",
        context={"account": account, "balance": balance, "buy_url": buy_credits_url(account)},
    )


def buy_credits_url(account: CreditAccount) -> str:
    if account.organization_id:
        return settings.SITE_URL + reverse("org_credits", args=[account.organization_id])
    return settings.SITE_URL + reverse("personal_credits")


def credits_grant(
    *,
    actor: User | None,
    account: CreditAccount,
    amount: int,
    reason: str,
    idempotency_key: str | None = None,
) -> LedgerEntry:
    """Staff: a grant (positive) or an adjustment (either sign), with who and why."""
    if not reason.strip():
        raise ValueError("A grant or adjustment needs a reason.")
    kind = LedgerEntry.Kind.GRANT if amount > 0 else LedgerEntry.Kind.ADJUSTMENT
    with transaction.atomic():
        entry, created = ledger_credit(
            account_id=account.pk,
            amount=amount,
            kind=kind,
            idempotency_key=idempotency_key or f"{kind}:{secrets.token_hex(8)}",
            actor=actor,
            reason=reason,
        )
        if created:
            audit_record(
                organization=account.organization,
                actor=actor,
                action=f"credits.{kind}",
                target=f"account {account.pk}",
                amount_microdollars=amount,
                reason=reason,
            )
    return entry


def organization_credits_freeze(*, organization: Organization) -> dict[str, int]:
    """Closing an organization (`dunning.closing`): the balance stays, frozen on the tombstone
    (prepaid money is not forfeited; staff refund it or write it off with a reason); what was
    spent on what (the usage records) is deleted, and nothing charges or alerts any more. The
    ledger's amounts stay for accounting."""
    account = CreditAccount.objects.select_for_update().filter(organization=organization).first()
    if account is None:
        return {"usage_records": 0}
    usage_records, _ = UsageRecord.objects.filter(account=account).delete()
    CreditAccount.objects.filter(pk=account.pk).update(
        auto_topup_enabled=False,
        low_balance_threshold=None,
        low_balance_recipients="",
        member_daily_limit=None,
    )
    return {"usage_records": usage_records}


# Purchases


@dataclass(frozen=True)
class PurchaseStart:
    purchase: Purchase
    checkout_url: str = ""  # set when the buyer must enter a card at Checkout


def _purchase_metadata(purchase: Purchase) -> dict[str, str]:
    account = purchase.account
    holder = (
        {"organization_id": str(account.organization_id)}
        if account.organization_id
        else {"user_id": str(account.user_id)}
    )
    return {"kind": purchase.kind, "purchase_id": str(purchase.pk), **holder}


def _customer_id(account: CreditAccount) -> str:
    return gateway_customer_ensure(_billing_profile(account))


def _description(purchase: Purchase) -> str:
    what = "Auto top-up" if purchase.kind == Purchase.Kind.AUTO_TOPUP else "Credits"
    return f"{what}: ${purchase.amount_cents / 100:,.2f} of Kilo credits (list price, no markup)"


def credits_purchase(
    *,
    actor: User,
    account: CreditAccount,
    amount_cents: int,
    idempotency_key: str,
    success_url: str,
    cancel_url: str,
) -> PurchaseStart:
    """Buy credits. With a saved card the charge happens now, as an invoice paid off-session,
    and the credits are added in this call; without one the buyer goes to Checkout.
    A decline raises PurchaseDeclined and adds nothing. The same key never charges twice."""
    purchase, created = Purchase.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={"account": account, "amount_cents": amount_cents, "created_by": actor},
    )
    if purchase.account_id != account.pk:
        raise PurchaseDeclined("This confirmation belongs to another account; start again.")
    if not created:
        return _purchase_outcome(purchase)
    customer_id = _customer_id(account)
    gateway = get_gateway()
    card = gateway.payment_method_default(customer_id=customer_id)
    if card is None:
        session = gateway.checkout_payment(
            customer_id=customer_id,
            amount=amount_cents,
            description=_description(purchase),
            metadata=_purchase_metadata(purchase),
            success_url=success_url.replace("{PURCHASE_ID}", str(purchase.pk)),
            cancel_url=cancel_url,
            idempotency_key=f"purchase-{purchase.pk}-checkout",
        )
        Purchase.objects.filter(pk=purchase.pk).update(checkout_session_id=session.id)
        audit_record(
            organization=account.organization,
            actor=actor,
            action="credits.checkout",
            target=f"purchase {purchase.pk}",
            amount_cents=amount_cents,
        )
        purchase.refresh_from_db()
        return PurchaseStart(purchase=purchase, checkout_url=session.url)
    _charge(purchase, customer_id=customer_id, actor=actor)
    purchase.refresh_from_db()
    return _purchase_outcome(purchase)


def _purchase_outcome(purchase: Purchase) -> PurchaseStart:
    if purchase.status == Purchase.Status.FAILED:
        raise PurchaseDeclined(purchase.failure_message or "The payment failed.")
    if purchase.status == Purchase.Status.PENDING and purchase.checkout_session_id:
        session = get_gateway().checkout_session_retrieve(session_id=purchase.checkout_session_id)
        return PurchaseStart(purchase=purchase, checkout_url=session.url)
    return PurchaseStart(purchase=purchase)


def _charge(purchase: Purchase, *, customer_id: str, actor: User | None) -> None:
    try:
        charge = get_gateway().charge(
            customer_id=customer_id,
            amount=purchase.amount_cents,
            description=_description(purchase),
            metadata=_purchase_metadata(purchase),
            idempotency_key=f"purchase-{purchase.pk}",
        )
    except GatewayError as error:
        _purchase_fail(purchase, message=str(error), actor=actor)
        return
    purchase_invoice_record(purchase_id=purchase.pk, invoice=charge.invoice)
    # The Invoices tab shows it at once, before its webhook arrives.
    invoice_fetched.send(sender=Purchase, invoice=charge.invoice)
    if charge.paid:
        purchase_mark_paid(purchase_id=purchase.pk, invoice_id=charge.invoice.id)
    else:
        assert charge.failure is not None
        _purchase_fail(purchase, message=charge.failure.message, actor=actor)


def purchase_invoice_record(*, purchase_id: int, invoice: Invoice) -> None:
    """Keep what the buyer is shown of the purchase's invoice (number, page, PDF)."""
    Purchase.objects.filter(pk=purchase_id).update(
        gateway_invoice_id=invoice.id,
        invoice_number=invoice.number,
        invoice_url=invoice.hosted_invoice_url,
        invoice_pdf=invoice.invoice_pdf,
    )


def _purchase_fail(purchase: Purchase, *, message: str, actor: User | None) -> None:
    with transaction.atomic():
        Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).update(
            status=Purchase.Status.FAILED, failure_message=message[:300]
        )
        audit_record(
            organization=purchase.account.organization,
            actor=actor,
            action=f"{purchase.kind}.failed",
            target=f"purchase {purchase.pk}",
            amount_cents=purchase.amount_cents,
            reason=message,
        )


def purchase_mark_paid(*, purchase_id: int, invoice_id: str = "") -> bool:
    """Credit a paid purchase exactly once (synchronous answer, redirect and webhooks may all
    report the same payment). Returns True the one time it credits."""
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update()
            .select_related("account")
            .filter(pk=purchase_id)
            .first()
        )
        if purchase is None or purchase.status == Purchase.Status.PAID:
            return False
        purchase.status = Purchase.Status.PAID
        purchase.paid_at = timezone.now()
        purchase.failure_message = ""
        purchase.gateway_invoice_id = purchase.gateway_invoice_id or invoice_id
        purchase.save(update_fields=["status", "paid_at", "failure_message", "gateway_invoice_id"])
        account = purchase.account
        ledger_credit(
            account_id=account.pk,
            amount=purchase.amount_microdollars,
            kind=LedgerEntry.Kind.PURCHASE,
            idempotency_key=f"purchase:{purchase.pk}",
            actor=purchase.created_by,
            reason=_description(purchase),
        )
        if purchase.kind == Purchase.Kind.AUTO_TOPUP:
            CreditAccount.objects.filter(pk=account.pk).update(auto_topup_started_at=None)
        audit_record(
            organization=account.organization,
            actor=purchase.created_by,
            action=f"{purchase.kind}.paid",
            target=f"purchase {purchase.pk}",
            amount_cents=purchase.amount_cents,
            invoice=purchase.gateway_invoice_id,
        )
        account.refresh_from_db()
        email_after_commit(
            recipients=_money_contacts(account),
            subject=f"Receipt: ${purchase.amount_cents / 100:,.2f} of Kilo credits",
            template="emails/credits_receipt.txt",
            context={"purchase": purchase, "account": account},
        )
    return True


def purchase_confirm_checkout(*, purchase: Purchase) -> bool:
    """Back from Checkout: ask the gateway whether it is paid, so the credits show at once."""
    if purchase.status != Purchase.Status.PENDING or not purchase.checkout_session_id:
        return False
    gateway = get_gateway()
    session = gateway.checkout_session_retrieve(session_id=purchase.checkout_session_id)
    if session.status != "complete" or session.payment_status != "paid":
        return False
    return purchase_mark_paid(purchase_id=purchase.pk, invoice_id=session.invoice)


# Auto top-up


def _auto_topup_claim(account_id: int) -> None:
    """Claim the account's one top-up slot; the claim is released when the top-up ends."""
    from credits import tasks

    now = timezone.now()
    claimed = (
        CreditAccount.objects.filter(pk=account_id, auto_topup_enabled=True)
        .filter(
            Q(auto_topup_started_at__isnull=True)
            | Q(auto_topup_started_at__lt=now - AUTO_TOPUP_STALE_AFTER)
        )
        .update(auto_topup_started_at=now)
    )
    if claimed:
        enqueue_after_commit(tasks.auto_topup_run, account_id)


def auto_topup_run(*, account_id: int) -> str:
    """Charge one top-up for a claimed account. On failure auto top-up turns itself off and the
    billing contacts are told why."""
    account = CreditAccount.objects.select_related("organization", "user").get(pk=account_id)
    if account.auto_topup_started_at is None:
        return "not claimed"
    if not account.auto_topup_enabled or account.balance >= account.auto_topup_threshold:
        CreditAccount.objects.filter(pk=account_id).update(auto_topup_started_at=None)
        return "not needed"
    key = f"auto-topup-{account.pk}-{int(account.auto_topup_started_at.timestamp())}"
    purchase, _ = Purchase.objects.get_or_create(
        idempotency_key=key,
        defaults={
            "account": account,
            "kind": Purchase.Kind.AUTO_TOPUP,
            "amount_cents": account.auto_topup_amount_cents,
        },
    )
    if purchase.status == Purchase.Status.PENDING:
        customer_id = _customer_id(account)
        if get_gateway().payment_method_default(customer_id=customer_id) is None:
            _purchase_fail(purchase, message="There is no saved card to charge.", actor=None)
        else:
            _charge(purchase, customer_id=customer_id, actor=None)
        purchase.refresh_from_db()
    if purchase.status == Purchase.Status.FAILED:
        _auto_topup_disable(account, purchase.failure_message)
    return purchase.status


def _auto_topup_disable(account: CreditAccount, reason: str) -> None:
    with transaction.atomic():
        CreditAccount.objects.filter(pk=account.pk).update(
            auto_topup_enabled=False, auto_topup_started_at=None, auto_topup_last_error=reason[:300]
        )
        audit_record(
            organization=account.organization,
            actor=None,
            action="auto_topup.disabled",
            target=f"account {account.pk}",
            reason=reason,
        )
        email_after_commit(
            recipients=_money_contacts(account),
            subject="Auto top-up failed and is now off",
            template="emails/credits_auto_topup_failed.txt",
            context={"account": account, "reason": reason, "buy_url": buy_credits_url(account)},
        )


def auto_topup_sweep() -> int:
    """Beat: accounts under their threshold with no top-up in flight (e.g. a queued task lost)."""
    now = timezone.now()
    due = CreditAccount.objects.filter(
        auto_topup_enabled=True, balance__lt=F("auto_topup_threshold")
    ).filter(
        Q(auto_topup_started_at__isnull=True)
        | Q(auto_topup_started_at__lt=now - AUTO_TOPUP_STALE_AFTER)
    )
    count = 0
    for account_id in due.values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            _auto_topup_claim(account_id)
        count += 1
    return count


def auto_topup_configure(
    *, actor: User, account: CreditAccount, enabled: bool, threshold: int, amount_cents: int
) -> CreditAccount:
    """Enabling needs a saved card: a top-up is charged off-session."""
    if enabled and get_gateway().payment_method_default(customer_id=_customer_id(account)) is None:
        raise PurchaseDeclined(
            "Save a card first: buy credits once with a card, or add one under billing details."
        )
    with transaction.atomic():
        CreditAccount.objects.filter(pk=account.pk).update(
            auto_topup_enabled=enabled,
            auto_topup_threshold=threshold,
            auto_topup_amount_cents=amount_cents,
            auto_topup_last_error="",
        )
        audit_record(
            organization=account.organization,
            actor=actor,
            action="auto_topup.configure",
            target=f"account {account.pk}",
            enabled=enabled,
            threshold_microdollars=threshold,
            amount_cents=amount_cents,
        )
    account.refresh_from_db()
    return account


def low_balance_configure(
    *, actor: User, account: CreditAccount, threshold: int | None, recipients: list[str]
) -> CreditAccount:
    with transaction.atomic():
        CreditAccount.objects.filter(pk=account.pk).update(
            low_balance_threshold=threshold,
            low_balance_recipients="\n".join(recipients),
            low_balance_alerted=threshold is not None and account.balance < threshold,
        )
        audit_record(
            organization=account.organization,
            actor=actor,
            action="low_balance_alert.configure",
            target=f"account {account.pk}",
            threshold_microdollars=threshold,
            recipients=recipients,
        )
    account.refresh_from_db()
    return account


def member_daily_limit_set(*, actor: User, account: CreditAccount, limit: int | None) -> None:
    with transaction.atomic():
        CreditAccount.objects.filter(pk=account.pk).update(member_daily_limit=limit)
        audit_record(
            organization=account.organization,
            actor=actor,
            action="credits.member_daily_limit",
            target=f"account {account.pk}",
            limit_microdollars=limit,
        )


# API tokens

TOKEN_PREFIX = "kb_"


def hash_api_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token; the raw value is returned once and never stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=raw[:10], token_hash=hash_api_token(raw)
        )
        audit_record(organization=None, actor=user, action="api_token.create", target=name)
    return token, raw


def api_token_revoke(*, user: User, token: ApiToken) -> None:
    with transaction.atomic():
        ApiToken.objects.filter(pk=token.pk, user=user, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        audit_record(organization=None, actor=user, action="api_token.revoke", target=token.name)


def api_token_authenticate(raw: str) -> ApiToken | None:
    if not raw.startswith(TOKEN_PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_api_token(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    # Record use at most once a minute: a write per API call would cost more than it tells.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
