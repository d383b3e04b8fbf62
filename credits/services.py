"""Every change to credits: usage, purchases, auto top-up, alerts, grants, limits and API tokens.
Money itself moves only through `credits.ledger`."""

import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from billing.exceptions import CurrencyMismatch
from billing.models import BillingProfile
from billing.notify import email_after_commit
from billing.selectors import billing_contacts, billing_email
from billing.services import (
    billing_currency_lock,
    billing_profile_for,
    gateway_customer_ensure,
    gateway_customer_with_card,
)
from billing.templatetags.money import cents, microdollars
from credits.exceptions import (
    GrantRefused,
    HoldNotFound,
    InsufficientBalance,
    LedgerKeyConflict,
    PurchaseDeclined,
    RefundRefused,
    UnknownModel,
)
from credits.ledger import (
    NOBODY,
    Debit,
    HoldPlaced,
    Settlement,
    hold_place,
    hold_settle,
    ledger_credit,
    member_spend_seed,
    usage_debit,
)
from credits.ledger import hold_free as ledger_hold_free
from credits.ledger import holds_expire as ledger_holds_expire
from credits.models import (
    MICRODOLLARS_PER_CENT,
    ApiToken,
    CreditAccount,
    Hold,
    LedgerEntry,
    MemberBudget,
    ModelPrice,
    Purchase,
    PurchaseReversal,
    SpendCounter,
    UsageRecord,
)
from credits.pricing import price_in_force, usage_cost
from credits.rules import AUTO_TOPUP_MAX_PER_DAY, auto_topup_check
from credits.spend import SpendContext, price_on, token_hash, token_use_due
from organizations.models import Organization
from organizations.services import audit_record
from payments.factory import get_gateway
from payments.gateway import Dispute, GatewayError, Invoice, Refund
from payments.queue import enqueue_after_commit
from payments.signals import invoice_fetched

logger = logging.getLogger(__name__)

# Staff grants: above the first a second confirmation is needed, above the second never.
GRANT_PLAIN_MAX = 100_000 * 1_000_000
GRANT_CONFIRMED_MAX = 10_000_000 * 1_000_000

# A top-up that started this long ago and never finished (a worker died) may be tried again.
AUTO_TOPUP_STALE_AFTER = timedelta(minutes=10)
# A top-up whose payment waits for the payer to authenticate blocks the next one this long; then
# it is given up (its invoice voided) and the next top-up asks again.
AUTO_TOPUP_AUTHENTICATION_WAIT = timedelta(hours=24)
# Credits are priced in US dollars (microdollars): purchases are charged in USD.
CREDITS_CURRENCY = "usd"
# A purchase not paid yet and not ended: waiting for the buyer, their bank, or the gateway.
WAITING = (Purchase.Status.PENDING, Purchase.Status.PROCESSING)
# The same words as an expired seat Checkout (seats.services.seats_checkout_expired).
CHECKOUT_EXPIRED_MESSAGE = "The payment page expired before it was paid."
BANK_DEBIT_FAILED_MESSAGE = "Your bank did not complete the payment."


def account_for(
    *, organization: Organization | None = None, user: User | None = None
) -> CreditAccount:
    if organization is not None:
        account, _ = CreditAccount.objects.get_or_create(organization=organization)
    else:
        assert user is not None
        account, _ = CreditAccount.objects.get_or_create(user=user)
    return account


def _dollars(microdollars: int) -> str:
    sign = "-" if microdollars < 0 else ""
    return f"{sign}${abs(microdollars) / 1_000_000:,.2f}"


def account_ensure(*, organization_id: UUID | None, user_id: int) -> CreditAccount:
    """The profile's account, made on first use (the API's first debit may come first)."""
    if organization_id is not None:
        account, _ = CreditAccount.objects.get_or_create(organization_id=organization_id)
    else:
        account, _ = CreditAccount.objects.get_or_create(user_id=user_id)
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


@dataclass(frozen=True)
class Tokens:
    """What one model request used, by kind."""

    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0

    def cost(self, price: ModelPrice) -> int:
        """At the list price, nothing added (the rounding rule is in `credits.pricing`)."""
        return usage_cost(
            price,
            input_tokens=self.input,
            output_tokens=self.output,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
        )


def _price(*, provider: str, model: str, day: date, context: SpendContext | None) -> ModelPrice:
    """The list price in force on `day`: from the API's catalogue copy at its context's version
    (which the debit checks), else from the database."""
    if context is not None:
        price = price_on(provider=provider, model=model, day=day, version=context.versions[0])
    else:
        price = price_in_force(provider=provider, model_id=model, on=day)
    if price is None:
        raise UnknownModel(provider=provider, model=model)
    return price


def usage_record(
    *,
    account_id: int,
    user_id: int,
    request_id: str,
    provider: str,
    model: str,
    tokens: Tokens,
    project: str = "",
    at: datetime | None = None,
    context: SpendContext | None = None,
) -> Debit:
    """Record one model request and debit its cost at the provider's list price in force on its
    day, nothing added (the rounding rule is in `credits.pricing`); UnknownModel when the
    catalogue has no price for it. With the API's spend `context`, the price comes from this
    process's catalogue and the debit checks that the token and the context are still true
    (StaleContext, TokenRevoked otherwise)."""
    now = at or timezone.now()
    price = _price(provider=provider, model=model, day=now.date(), context=context)
    debit = usage_debit(
        account_id=account_id,
        user_id=user_id,
        cost=tokens.cost(price),
        request_id=request_id,
        provider=provider,
        model=model,
        input_tokens=tokens.input,
        output_tokens=tokens.output,
        cache_read_tokens=tokens.cache_read,
        cache_write_tokens=tokens.cache_write,
        project=project,
        at=at,
        price_id=price.pk,
        caller=context.caller if context else NOBODY,
    )
    _after_spending(account_id, debit)
    return debit


def _after_spending(account_id: int, spent: Debit | Settlement) -> None:
    """The follow-ups claim their own work with conditional updates, after the debit
    committed, from what the debit's UPDATE returned."""
    if spent.topup_due:
        with transaction.atomic():
            _auto_topup_claim(account_id)
    if spent.alert_due:
        with transaction.atomic():
            _low_balance_alert(account_id, spent.balance)


# Holds: streaming requests whose cost is known only at their end

HOLD_TTL_DEFAULT = timedelta(minutes=10)
HOLD_TTL_MAX = timedelta(hours=1)


def hold_create(
    *,
    account_id: int,
    user_id: int,
    request_id: str,
    provider: str,
    model: str,
    max_tokens: Tokens,
    project: str = "",
    ttl: timedelta = HOLD_TTL_DEFAULT,
    context: SpendContext | None = None,
) -> HoldPlaced:
    """Reserve the list price of a request's maximum tokens from what is available, until it is
    settled or released, or expires (at most an hour; beat frees it within a minute, nothing
    debited). UnknownModel when the catalogue has no price for it."""
    now = timezone.now()
    price = _price(provider=provider, model=model, day=now.date(), context=context)
    return hold_place(
        account_id=account_id,
        user_id=user_id,
        amount=max_tokens.cost(price),
        request_id=request_id,
        provider=provider,
        model=model,
        max_input_tokens=max_tokens.input,
        max_output_tokens=max_tokens.output,
        max_cache_read_tokens=max_tokens.cache_read,
        max_cache_write_tokens=max_tokens.cache_write,
        price_id=price.pk,
        expires_at=now + min(ttl, HOLD_TTL_MAX),
        project=project,
        caller=context.caller if context else NOBODY,
    )


def hold_settle_record(
    *,
    hold_id: int,
    user_id: int,
    tokens: Tokens,
    context: SpendContext | None = None,
) -> Settlement:
    """Settle the user's own hold at the actual cost of the tokens used, at the list price the
    hold was made at, in its account (its profile need not be chosen again, and a member removed
    mid-stream may still settle what was used). HoldNotFound for an unknown or another's hold."""
    hold = Hold.objects.select_related("price").filter(pk=hold_id, user_id=user_id).first()
    if hold is None:
        raise HoldNotFound
    account_id = hold.account_id
    settlement = hold_settle(
        hold_id=hold_id,
        account_id=account_id,
        user_id=user_id,
        cost=tokens.cost(hold.price),
        input_tokens=tokens.input,
        output_tokens=tokens.output,
        cache_read_tokens=tokens.cache_read,
        cache_write_tokens=tokens.cache_write,
        caller=context.caller if context else NOBODY,
    )
    _after_spending(account_id, settlement)
    return settlement


def holds_expire() -> int:
    """Beat, every minute: holds past their expiry are freed; nothing is debited."""
    return ledger_holds_expire()


def _low_balance_alert(account_id: int, balance: int) -> None:
    claimed = CreditAccount.objects.filter(pk=account_id, low_balance_alerted=False).update(
        low_balance_alerted=True
    )
    if not claimed:
        return
    account = CreditAccount.objects.get(pk=account_id)
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
    return buy_credits_url_for(organization_id=account.organization_id)


def buy_credits_url_for(*, organization_id: UUID | None) -> str:
    if organization_id:
        return settings.SITE_URL + reverse("org_credits", args=[organization_id])
    return settings.SITE_URL + reverse("personal_credits")


def credits_grant(
    *,
    actor: User | None,
    account: CreditAccount,
    amount: int,
    reason: str,
    idempotency_key: str | None = None,
    large_confirmed: bool = False,
) -> LedgerEntry:
    """Staff: a grant (positive) or an adjustment (either sign), with who and why. One grant is
    at most GRANT_CONFIRMED_MAX; above GRANT_PLAIN_MAX it needs `large_confirmed` (a second
    confirmation). An adjustment never takes the balance below zero. GrantRefused says why not."""
    if not reason.strip():
        raise GrantRefused("A grant or adjustment needs a reason.")
    if amount == 0:
        raise GrantRefused("The amount must not be $0.")
    if abs(amount) > GRANT_CONFIRMED_MAX:
        raise GrantRefused(
            f"One grant or adjustment is at most ${GRANT_CONFIRMED_MAX // 1_000_000:,}; "
            "split a larger one and give each its reason."
        )
    if abs(amount) > GRANT_PLAIN_MAX and not large_confirmed:
        raise GrantRefused(
            f"More than ${GRANT_PLAIN_MAX // 1_000_000:,} needs a second confirmation: tick "
            "the box to confirm the amount."
        )
    kind = LedgerEntry.Kind.GRANT if amount > 0 else LedgerEntry.Kind.ADJUSTMENT
    with transaction.atomic():
        try:
            entry, created = ledger_credit(
                account_id=account.pk,
                amount=amount,
                kind=kind,
                source=LedgerEntry.Source.GRANT,
                key=idempotency_key or secrets.token_hex(8),
                actor=actor,
                reason=reason,
            )
        except InsufficientBalance:
            account.refresh_from_db()
            raise GrantRefused(
                f"The balance is {_dollars(account.balance)}: an adjustment cannot take it "
                "below zero."
            ) from None
        except LedgerKeyConflict:
            raise GrantRefused(
                "This confirmation was already used for another amount; start again."
            ) from None
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
    account = CreditAccount.objects.filter(organization=organization).first()
    if account is None:
        return {"usage_records": 0}
    # Requests in flight end here: their holds are freed, nothing debited.
    for hold_id in Hold.objects.filter(account=account, status=Hold.Status.ACTIVE).values_list(
        "pk", flat=True
    ):
        ledger_hold_free(hold_id=hold_id)
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

    @property
    def action_url(self) -> str:
        """Where the buyer confirms the payment with their bank (3-D Secure), if it waits."""
        return self.purchase.action_url if self.purchase.awaiting_authentication else ""


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
    profile = _billing_profile(account)
    try:
        billing_currency_lock(profile=profile, currency=CREDITS_CURRENCY)
    except CurrencyMismatch as mismatch:
        raise PurchaseDeclined(mismatch.message) from None
    purchase, created = Purchase.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={"account": account, "amount_cents": amount_cents, "created_by": actor},
    )
    if purchase.account_id != account.pk:
        raise PurchaseDeclined("This confirmation belongs to another account; start again.")
    if not created:
        return _purchase_outcome(purchase)
    # A customer deleted at the gateway is replaced here rather than failing every purchase.
    customer_id, card = gateway_customer_with_card(profile)
    gateway = get_gateway()
    page_url = success_url.replace("{PURCHASE_ID}", str(purchase.pk))
    if card is None:
        session = gateway.checkout_payment(
            customer_id=customer_id,
            amount=amount_cents,
            currency=CREDITS_CURRENCY,
            description=_description(purchase),
            metadata=_purchase_metadata(purchase),
            success_url=page_url,
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
    _charge(purchase, customer_id=customer_id, actor=actor, return_url=page_url)
    purchase.refresh_from_db()
    return _purchase_outcome(purchase)


def _purchase_outcome(purchase: Purchase) -> PurchaseStart:
    if purchase.status in (Purchase.Status.FAILED, Purchase.Status.EXPIRED):
        raise PurchaseDeclined(purchase.failure_message or "The payment failed.")
    if purchase.status == Purchase.Status.PENDING and purchase.checkout_session_id:
        session = get_gateway().checkout_session_retrieve(session_id=purchase.checkout_session_id)
        return PurchaseStart(purchase=purchase, checkout_url=session.url)
    return PurchaseStart(purchase=purchase)


def _charge(
    purchase: Purchase, *, customer_id: str, actor: User | None, return_url: str = ""
) -> None:
    try:
        charge = get_gateway().charge(
            customer_id=customer_id,
            amount=purchase.amount_cents,
            currency=CREDITS_CURRENCY,
            description=_description(purchase),
            metadata=_purchase_metadata(purchase),
            idempotency_key=f"purchase-{purchase.pk}",
            return_url=return_url,
        )
    except GatewayError as error:
        _purchase_fail(purchase, message=str(error), actor=actor)
        return
    purchase_invoice_record(purchase_id=purchase.pk, invoice=charge.invoice)
    # The Invoices tab shows it at once, before its webhook arrives.
    invoice_fetched.send(sender=Purchase, invoice=charge.invoice)
    if charge.paid:
        purchase_mark_paid(purchase_id=purchase.pk, invoice_id=charge.invoice.id)
        return
    failure = charge.failure
    assert failure is not None
    if failure.needs_authentication:
        # Not a decline: the payment completes when the payer confirms it with their bank.
        _purchase_await_authentication(
            purchase, url=failure.action_url or charge.invoice.hosted_invoice_url, actor=actor
        )
        return
    _purchase_fail(purchase, message=failure.message, actor=actor)
    _invoice_void_quietly(charge.invoice.id)


def _invoice_void_quietly(invoice_id: str) -> None:
    """A declined one-off invoice is voided, so that it does not stay open (and payable, for
    credits nobody would get) forever. If the gateway does not answer, it stays open: harmless,
    the purchase is failed and a late payment would still credit it."""
    try:
        voided = get_gateway().invoice_void(invoice_id=invoice_id)
    except GatewayError:
        logger.warning("could not void the declined invoice %s", invoice_id, exc_info=True)
        return
    invoice_fetched.send(sender=Purchase, invoice=voided)


def _purchase_await_authentication(purchase: Purchase, *, url: str, actor: User | None) -> None:
    with transaction.atomic():
        waiting = Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).update(
            action_url=url[:1000]
        )
        if not waiting:
            return
        audit_record(
            organization=purchase.account.organization,
            actor=actor,
            action=f"{purchase.kind}.authentication_required",
            target=f"purchase {purchase.pk}",
            amount_cents=purchase.amount_cents,
        )


def purchase_refresh(*, purchase: Purchase) -> bool:
    """Ask the gateway about a purchase still pending (back from Checkout or from the bank's
    authentication page), so that the credits show at once. True when it credits now."""
    if purchase.status not in WAITING:
        return False
    if purchase.checkout_session_id:
        return purchase_confirm_checkout(purchase=purchase)
    if not purchase.gateway_invoice_id:
        return False
    invoice = get_gateway().invoice_retrieve(invoice_id=purchase.gateway_invoice_id)
    if invoice.paid:
        return purchase_mark_paid(purchase_id=purchase.pk, invoice_id=invoice.id)
    if invoice.status == "void":
        _purchase_fail(purchase, message="The payment was not completed.", actor=None)
    return False


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
            status=Purchase.Status.FAILED, failure_message=message[:300], action_url=""
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
        account = purchase.account
        # The account's row, locked until commit: what it owed before this credit is exact.
        balance = (
            CreditAccount.objects.select_for_update()
            .values_list("balance", flat=True)
            .get(pk=account.pk)
        )
        purchase.debt_paid = min(purchase.amount_microdollars, max(0, -balance))
        purchase.status = Purchase.Status.PAID
        purchase.paid_at = timezone.now()
        purchase.failure_message = ""
        purchase.action_url = ""
        purchase.gateway_invoice_id = purchase.gateway_invoice_id or invoice_id
        purchase.save(
            update_fields=[
                "status",
                "paid_at",
                "failure_message",
                "action_url",
                "gateway_invoice_id",
                "debt_paid",
            ]
        )
        reason = _description(purchase)
        if purchase.debt_paid:
            reason += f"; of which {microdollars(purchase.debt_paid)} paid what the account owed"
        ledger_credit(
            account_id=account.pk,
            amount=purchase.amount_microdollars,
            kind=LedgerEntry.Kind.PURCHASE,
            source=(
                LedgerEntry.Source.AUTO_TOPUP
                if purchase.kind == Purchase.Kind.AUTO_TOPUP
                else LedgerEntry.Source.PURCHASE
            ),
            key=str(purchase.pk),
            actor=purchase.created_by,
            reason=reason,
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
            debt_paid_microdollars=purchase.debt_paid,
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
    if purchase.status not in WAITING or not purchase.checkout_session_id:
        return False
    gateway = get_gateway()
    session = gateway.checkout_session_retrieve(session_id=purchase.checkout_session_id)
    if session.status == "expired":
        purchase_checkout_expired(session_id=session.id)
        return False
    if session.status == "complete" and session.payment_status == "unpaid":
        purchase_checkout_processing(session_id=session.id, payment_intent=session.payment_intent)
        return False
    if session.status != "complete" or session.payment_status != "paid":
        return False
    # Checkout saved the card; make it the one later purchases and top-ups charge.
    gateway.checkout_session_save_card(session_id=session.id)
    purchase_checkout_payment_record(purchase_id=purchase.pk, payment_intent=session.payment_intent)
    credited = purchase_mark_paid(purchase_id=purchase.pk, invoice_id=session.invoice)
    if session.invoice:
        # The invoice's number, page and PDF for the page the buyer lands on now (its own events
        # record them too, but later: the page showed the gateway's id instead).
        try:
            invoice = gateway.invoice_retrieve(invoice_id=session.invoice)
        except GatewayError:
            logger.warning("purchase %s: its invoice is not known yet", purchase.pk)
        else:
            purchase_invoice_record(purchase_id=purchase.pk, invoice=invoice)
    return credited


def purchase_checkout_payment_record(*, purchase_id: int, payment_intent: str) -> None:
    if payment_intent:
        Purchase.objects.filter(pk=purchase_id, payment_intent_id="").update(
            payment_intent_id=payment_intent[:80]
        )


# Checkout purchases that end unpaid, and bank debits on their way


def purchase_checkout_processing(*, session_id: str, payment_intent: str) -> bool:
    """Checkout completed with a bank debit that has not settled (`payment_status=unpaid`): the
    purchase waits for the bank and is credited when its payment succeeds
    (`checkout.session.async_payment_succeeded`). Only a purchase still pending moves, so a late
    `completed` never revives one that failed meanwhile. True when it moved now."""
    purchase = Purchase.objects.filter(checkout_session_id=session_id).first()
    if purchase is None or not session_id:
        return False
    purchase_checkout_payment_record(purchase_id=purchase.pk, payment_intent=payment_intent)
    with transaction.atomic():
        moved = Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).update(
            status=Purchase.Status.PROCESSING, action_url=""
        )
        if moved:
            audit_record(
                organization=purchase.account.organization,
                actor=None,
                action=f"{purchase.kind}.processing",
                target=f"purchase {purchase.pk}",
                amount_cents=purchase.amount_cents,
            )
    return bool(moved)


def purchase_checkout_expired(*, session_id: str) -> bool:
    """Checkout expired unpaid (`checkout.session.expired`, 24 hours after it opened): the
    purchase ends as expired and the buyer is told. Nothing was charged; buying again is a new
    purchase."""
    return _purchase_end(
        session_id=session_id, status=Purchase.Status.EXPIRED, message=CHECKOUT_EXPIRED_MESSAGE
    )


def purchase_checkout_failed(*, session_id: str) -> bool:
    """The bank debit of a completed Checkout failed (`checkout.session.async_payment_failed`):
    the purchase ends as failed and the buyer is told."""
    return _purchase_end(
        session_id=session_id, status=Purchase.Status.FAILED, message=BANK_DEBIT_FAILED_MESSAGE
    )


def _purchase_end(*, session_id: str, status: str, message: str) -> bool:
    """End the Checkout's purchase unpaid, once, if it is still waiting. A purchase paid or ended
    already stays as it is, whatever event comes later (never credited by one: only a payment
    the gateway shows as made credits, see `purchase_for_payment`). True when it ended now."""
    if not session_id:
        return False
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update(of=("self",))
            .select_related("account__organization", "account__user", "created_by")
            .filter(checkout_session_id=session_id, status__in=WAITING)
            .first()
        )
        if purchase is None:
            return False
        purchase.status, purchase.failure_message = status, message
        purchase.action_url = ""
        purchase.save(update_fields=["status", "failure_message", "action_url"])
        account = purchase.account
        audit_record(
            organization=account.organization,
            actor=None,
            action=f"{purchase.kind}.{status}",
            target=f"purchase {purchase.pk}",
            amount_cents=purchase.amount_cents,
            reason=message,
        )
        buyer = purchase.created_by
        expired = status == Purchase.Status.EXPIRED
        email_after_commit(
            recipients=[buyer.email] if buyer and buyer.is_active else _money_contacts(account),
            subject=(
                f"Your purchase of {cents(purchase.amount_cents)} of credits was not completed"
                if expired
                else f"Your bank payment of {cents(purchase.amount_cents)} for credits failed"
            ),
            template="emails/credits_purchase_ended.txt",
            context={
                "purchase": purchase,
                "account": account,
                "expired": expired,
                "buy_url": buy_credits_url(account),
            },
        )
    return True


# Auto top-up


def _awaiting_topup() -> Exists:
    """An auto top-up of the account still waiting for the payer to authenticate it."""
    return Exists(
        Purchase.objects.filter(
            account=OuterRef("pk"),
            kind=Purchase.Kind.AUTO_TOPUP,
            status=Purchase.Status.PENDING,
            created_at__gte=timezone.now() - AUTO_TOPUP_AUTHENTICATION_WAIT,
        ).exclude(action_url="")
    )


def _auto_topup_claim(account_id: int) -> None:
    """Claim the account's one top-up slot; the claim is released when the top-up ends. None is
    claimed while a top-up waits for the payer's bank."""
    now = timezone.now()
    claimed = (
        CreditAccount.objects.filter(pk=account_id, auto_topup_enabled=True)
        .filter(
            Q(auto_topup_started_at__isnull=True)
            | Q(auto_topup_started_at__lt=now - AUTO_TOPUP_STALE_AFTER)
        )
        .exclude(_awaiting_topup())
        .update(auto_topup_started_at=now)
    )
    if claimed:
        enqueue_after_commit("credits.tasks.auto_topup_run", account_id)


def auto_topup_run(*, account_id: int) -> str:
    """Charge one top-up for a claimed account. On failure auto top-up turns itself off and the
    billing contacts are told why."""
    account = CreditAccount.objects.select_related("organization", "user").get(pk=account_id)
    if account.auto_topup_started_at is None:
        return "not claimed"
    if not account.auto_topup_enabled or account.balance >= account.auto_topup_threshold:
        CreditAccount.objects.filter(pk=account_id).update(auto_topup_started_at=None)
        return "not needed"
    recent = Purchase.objects.filter(
        account=account,
        kind=Purchase.Kind.AUTO_TOPUP,
        created_at__gt=timezone.now() - timedelta(hours=24),
    ).exclude(status=Purchase.Status.FAILED)
    if recent.count() >= AUTO_TOPUP_MAX_PER_DAY:
        _auto_topup_disable(
            account,
            f"Auto top-up charged your card {AUTO_TOPUP_MAX_PER_DAY} times in the last 24 hours, "
            "so it turned itself off before charging again. Check the threshold and amount on "
            "the Credits page, then turn it back on.",
        )
        return "capped"
    key = f"auto-topup-{account.pk}-{int(account.auto_topup_started_at.timestamp())}"
    purchase, _ = Purchase.objects.get_or_create(
        idempotency_key=key,
        defaults={
            "account": account,
            "kind": Purchase.Kind.AUTO_TOPUP,
            "amount_cents": account.auto_topup_amount_cents,
        },
    )
    if purchase.status == Purchase.Status.PENDING and not purchase.action_url:
        customer_id = _customer_id(account)
        if get_gateway().payment_method_default(customer_id=customer_id) is None:
            _purchase_fail(purchase, message="There is no saved card to charge.", actor=None)
        else:
            _charge(purchase, customer_id=customer_id, actor=None)
        purchase.refresh_from_db()
        if purchase.awaiting_authentication:
            _auto_topup_ask_authentication(account, purchase)
    if purchase.status == Purchase.Status.FAILED:
        _auto_topup_disable(account, purchase.failure_message)
    return "awaiting_authentication" if purchase.awaiting_authentication else purchase.status


def _auto_topup_ask_authentication(account: CreditAccount, purchase: Purchase) -> None:
    """An off-session top-up the bank wants the payer to confirm: not a failure (auto top-up
    stays on); the payer gets the link, and no other top-up is tried meanwhile."""
    invoice_url = purchase.invoice_url or purchase.action_url
    with transaction.atomic():
        CreditAccount.objects.filter(pk=account.pk).update(auto_topup_started_at=None)
        email_after_commit(
            recipients=_money_contacts(account),
            subject=f"Confirm the auto top-up of {cents(purchase.amount_cents)} with your bank",
            template="emails/credits_authentication_required.txt",
            context={
                "account": account,
                "purchase": purchase,
                "url": invoice_url,
                "wait": AUTO_TOPUP_AUTHENTICATION_WAIT,
            },
        )


def _auto_topups_expire() -> int:
    """Top-ups that waited a day for the payer's bank are given up, their invoices voided; auto
    top-up stays on and tries again (and asks again) when the balance is still low."""
    expired = 0
    stale = Purchase.objects.filter(
        kind=Purchase.Kind.AUTO_TOPUP,
        status=Purchase.Status.PENDING,
        created_at__lt=timezone.now() - AUTO_TOPUP_AUTHENTICATION_WAIT,
    ).exclude(action_url="")
    for purchase in stale.select_related("account")[:500]:
        if purchase.gateway_invoice_id:
            _invoice_void_quietly(purchase.gateway_invoice_id)
        _purchase_fail(
            purchase, message="Not confirmed with the bank within a day; not charged.", actor=None
        )
        expired += 1
    return expired


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
    """Beat: accounts under their threshold with no top-up in flight (e.g. a queued task lost);
    top-ups that waited too long for the payer's bank are given up first."""
    _auto_topups_expire()
    now = timezone.now()
    due = (
        CreditAccount.objects.filter(auto_topup_enabled=True, balance__lt=F("auto_topup_threshold"))
        .filter(
            Q(auto_topup_started_at__isnull=True)
            | Q(auto_topup_started_at__lt=now - AUTO_TOPUP_STALE_AFTER)
        )
        .exclude(_awaiting_topup())
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
    """The amount must lift the balance above the threshold (AutoTopupRefused otherwise), and
    enabling needs a saved card: a top-up is charged off-session."""
    auto_topup_check(threshold=threshold, amount_cents=amount_cents)
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
    """How much each member may spend per UTC day; it counts what they spent today already."""
    with transaction.atomic():
        CreditAccount.objects.filter(pk=account.pk).update(member_daily_limit=limit)
        if limit is not None:
            member_spend_seed(
                account_id=account.pk,
                scope=SpendCounter.Scope.MEMBER_DAY,
                period=timezone.now().date(),
            )
        audit_record(
            organization=account.organization,
            actor=actor,
            action="credits.member_daily_limit",
            target=f"account {account.pk}",
            limit_microdollars=limit,
        )


def month_start(now: datetime) -> date:
    return now.date().replace(day=1)


def member_budget_set(
    *, actor: User, account: CreditAccount, user: User, monthly_limit: int | None
) -> None:
    """What one member may spend of the organization's credits per calendar month (UTC);
    None removes it. It counts what they spent this month already."""
    with transaction.atomic():
        if monthly_limit is None:
            MemberBudget.objects.filter(account=account, user=user).delete()
        else:
            MemberBudget.objects.update_or_create(
                account=account,
                user=user,
                defaults={"monthly_limit": monthly_limit, "updated_at": timezone.now()},
            )
            member_spend_seed(
                account_id=account.pk,
                scope=SpendCounter.Scope.MEMBER_MONTH,
                period=month_start(timezone.now()),
                user_id=user.pk,
            )
        audit_record(
            organization=account.organization,
            actor=actor,
            action="credits.member_budget",
            target=user.email,
            monthly_limit_microdollars=monthly_limit,
        )


# Refunds and disputes: money that went back to the card takes its credits back


PURCHASE_KINDS = frozenset({Purchase.Kind.CREDIT_PURCHASE, Purchase.Kind.AUTO_TOPUP})


def purchase_id_in(metadata: dict[str, str]) -> int | None:
    """The purchase a gateway object (invoice, Checkout session) was made for, from the metadata
    `_purchase_metadata` gave it; None for anything else (seats, absurd values)."""
    if metadata.get("kind") not in PURCHASE_KINDS:
        return None
    text = str(metadata.get("purchase_id") or "")
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


class PaymentNotSettled(Exception):
    """A refund or dispute names a purchase whose payment the gateway does not show as paid yet;
    the event is retried until it does (never dropped)."""


def purchase_for_payment(*, payment_intent: str) -> Purchase | None:
    """The purchase a gateway payment (PaymentIntent) paid for, if it was a purchase, credited.

    A refund or a dispute can arrive before the purchase is credited (Stripe promises no order:
    the completion webhook is late, or failed once, or the buyer never came back from Checkout).
    Then the gateway is asked: when it shows the purchase's invoice paid, the purchase is credited
    now through `purchase_mark_paid` (the same service and ledger key as the completion webhook,
    which then finds it done), so that the reversal that follows takes back credits that were
    given. Gateway calls come first; each write is its own short transaction."""
    if not payment_intent:
        return None
    purchases = Purchase.objects.select_related("account__organization", "account__user")
    purchase = purchases.filter(payment_intent_id=payment_intent).first()
    if purchase is not None and purchase.status == Purchase.Status.PAID:
        return purchase
    gateway = get_gateway()
    invoice_id = (purchase.gateway_invoice_id if purchase else "") or gateway.payment_invoice_id(
        payment_intent=payment_intent
    )
    if not invoice_id:
        return None
    purchase = purchase or purchases.filter(gateway_invoice_id=invoice_id).first()
    if purchase is not None and purchase.status == Purchase.Status.PAID:
        return purchase
    invoice = gateway.invoice_retrieve(invoice_id=invoice_id)
    if purchase is None:
        purchase_id = purchase_id_in(invoice.metadata)
        purchase = purchases.filter(pk=purchase_id).first() if purchase_id else None
    if purchase is None or not _invoice_is_the_payers(invoice, purchase):
        return None
    if not invoice.paid:
        raise PaymentNotSettled(
            f"purchase {purchase.pk}: payment {payment_intent} was reversed but its invoice "
            f"{invoice.id} is {invoice.status}"
        )
    purchase_invoice_record(purchase_id=purchase.pk, invoice=invoice)
    purchase_checkout_payment_record(purchase_id=purchase.pk, payment_intent=payment_intent)
    if purchase_mark_paid(purchase_id=purchase.pk, invoice_id=invoice.id):
        logger.info(
            "purchase %s credited on the news of a reversal of its payment %s",
            purchase.pk,
            payment_intent,
        )
    return purchases.get(pk=purchase.pk)


def _invoice_is_the_payers(invoice: Invoice, purchase: Purchase) -> bool:
    """The invoice was issued to the customer of the purchase's payer: metadata alone never
    moves money between accounts."""
    customer = _billing_profile(purchase.account).gateway_customer_id
    if customer and invoice.customer == customer:
        return True
    logger.warning(
        "invoice %s names purchase %s but belongs to customer %s, not %s",
        invoice.id,
        purchase.pk,
        invoice.customer,
        customer,
    )
    return False


def _reversal_locked(
    purchase: Purchase, *, kind: str, gateway_id: str, amount_cents: int, status: str
) -> tuple[PurchaseReversal, str]:
    """The purchase's record of this refund or dispute, locked, updated to what the gateway says
    now; with the status it had before ("" when new). Inside the caller's transaction.

    The purchase's row is locked first, as purchase_mark_paid locks it before the account's:
    reversals of one purchase and its crediting then queue in one order (taking the account
    first, a reversal and the crediting it set off deadlocked under 32 deliveries at once)."""
    list(Purchase.objects.select_for_update().filter(pk=purchase.pk).values_list("pk", flat=True))
    try:
        with transaction.atomic():
            reversal = PurchaseReversal.objects.create(
                purchase=purchase,
                kind=kind,
                gateway_id=gateway_id,
                amount_cents=amount_cents,
                status=status,
            )
            return reversal, ""
    except IntegrityError:
        reversal = PurchaseReversal.objects.select_for_update().get(
            kind=kind, gateway_id=gateway_id
        )
    previous = reversal.status
    if (reversal.status, reversal.amount_cents) != (status, amount_cents):
        reversal.status, reversal.amount_cents = status, amount_cents
        reversal.updated_at = timezone.now()
        reversal.save(update_fields=["status", "amount_cents", "updated_at"])
    return reversal, previous


def _reversal_tell(
    purchase: Purchase, *, event: str, subject: str, amount_cents: int, actor: User | None
) -> None:
    account = CreditAccount.objects.select_related("organization", "user").get(
        pk=purchase.account_id
    )
    audit_record(
        organization=account.organization,
        actor=actor,
        action=f"credits.{event}",
        target=f"purchase {purchase.pk}",
        amount_cents=amount_cents,
        invoice=purchase.invoice_number or purchase.gateway_invoice_id,
        balance_microdollars=account.balance,
    )
    email_after_commit(
        recipients=_money_contacts(account),
        subject=subject,
        template="emails/credits_reversal.txt",
        context={
            "event": event,
            "purchase": purchase,
            "account": account,
            "amount_cents": amount_cents,
            "buy_url": buy_credits_url(account),
        },
    )


def purchase_refund_record(
    *, purchase: Purchase, refund: Refund, actor: User | None = None
) -> bool:
    """Take a refund's credits back, once per refund id, even below zero (the account then owes
    it); a refund that failed gives them back. From staff's refund and from the gateway's events
    alike. True when this call took the credits back."""
    amount = refund.amount * MICRODOLLARS_PER_CENT
    what = f"refund of {cents(refund.amount)} of purchase {purchase.pk}"
    if purchase.invoice_number:
        what += f" (invoice {purchase.invoice_number})"
    with transaction.atomic():
        reversal, _ = _reversal_locked(
            purchase,
            kind=PurchaseReversal.Kind.REFUND,
            gateway_id=refund.id,
            amount_cents=refund.amount,
            status=refund.status,
        )
        if actor is not None and reversal.actor_id is None:
            PurchaseReversal.objects.filter(pk=reversal.pk).update(actor=actor)
        if refund.takes_money_back:
            _, created = ledger_credit(
                account_id=purchase.account_id,
                amount=-amount,
                kind=LedgerEntry.Kind.REFUND,
                source=LedgerEntry.Source.REFUND,
                key=refund.id,
                actor=actor,
                reason=what[:1].upper() + what[1:],
            )
            if created:
                _reversal_tell(
                    purchase,
                    event="refund",
                    subject=f"Refund: {cents(refund.amount)} of credits taken back",
                    amount_cents=refund.amount,
                    actor=actor,
                )
            return created
        took = LedgerEntry.objects.filter(
            account_id=purchase.account_id,
            source=LedgerEntry.Source.REFUND,
            idempotency_key=refund.id,
        ).exists()
        if took:
            _, created = ledger_credit(
                account_id=purchase.account_id,
                amount=amount,
                kind=LedgerEntry.Kind.REFUND,
                source=LedgerEntry.Source.REFUND,
                key=f"{refund.id}:failed",
                reason=f"The {what} {refund.status}: credits given back",
            )
            if created:
                _reversal_tell(
                    purchase,
                    event="refund_failed",
                    subject=f"A refund of {cents(refund.amount)} failed: credits given back",
                    amount_cents=refund.amount,
                    actor=None,
                )
    return False


def purchase_dispute_record(*, purchase: Purchase, dispute: Dispute) -> None:
    """A chargeback takes the disputed amount's credits back at once (even below zero); a
    dispute won gives them back under its own key; one lost keeps them taken. Inquiries move
    nothing. Keys are the dispute's id, so any order and any repeat of its events agree."""
    amount = dispute.amount * MICRODOLLARS_PER_CENT
    what = f"dispute of {cents(dispute.amount)} on purchase {purchase.pk}"
    if purchase.invoice_number:
        what += f" (invoice {purchase.invoice_number})"
    with transaction.atomic():
        _, previous = _reversal_locked(
            purchase,
            kind=PurchaseReversal.Kind.DISPUTE,
            gateway_id=dispute.id,
            amount_cents=dispute.amount,
            status=dispute.status,
        )
        if not dispute.withdraws_funds:
            return
        _, opened = ledger_credit(
            account_id=purchase.account_id,
            amount=-amount,
            kind=LedgerEntry.Kind.DISPUTE,
            source=LedgerEntry.Source.DISPUTE,
            key=dispute.id,
            reason=f"Chargeback: {what}",
        )
        if opened:
            _reversal_tell(
                purchase,
                event="dispute",
                subject=f"A payment was disputed: {cents(dispute.amount)} of credits taken back",
                amount_cents=dispute.amount,
                actor=None,
            )
        if dispute.won:
            _, won = ledger_credit(
                account_id=purchase.account_id,
                amount=amount,
                kind=LedgerEntry.Kind.DISPUTE,
                source=LedgerEntry.Source.DISPUTE,
                key=f"{dispute.id}:won",
                reason=f"Won the {what}: credits given back",
            )
            if won:
                _reversal_tell(
                    purchase,
                    event="dispute_won",
                    subject=f"Dispute won: {cents(dispute.amount)} of credits given back",
                    amount_cents=dispute.amount,
                    actor=None,
                )
        elif dispute.status == "lost" and previous != "lost":
            _reversal_tell(
                purchase,
                event="dispute_lost",
                subject=f"Dispute lost: {cents(dispute.amount)} of credits stay taken back",
                amount_cents=dispute.amount,
                actor=None,
            )


REFUND_REASONS = {
    "requested_by_customer": "Requested by the customer",
    "duplicate": "Duplicate payment",
    "fraudulent": "Fraudulent (also blocks the card and email at the gateway)",
}


@dataclass(frozen=True)
class RefundTerms:
    """What a staff refund of a purchase may be, in cents."""

    refundable: int  # what the gateway still holds of the payment
    unspent: int  # of it, what the account has not spent (the default maximum)


def purchase_refund_terms(*, purchase: Purchase) -> RefundTerms:
    gone_back = {
        PurchaseReversal.Kind.REFUND: lambda status: status not in ("failed", "canceled"),
        PurchaseReversal.Kind.DISPUTE: lambda status: status != "won",
    }
    taken = sum(
        reversal.amount_cents
        for reversal in purchase.reversals.all()
        if gone_back[PurchaseReversal.Kind(reversal.kind)](reversal.status)
    )
    refundable = max(purchase.amount_cents - taken, 0)
    balance = CreditAccount.objects.values_list("balance", flat=True).get(pk=purchase.account_id)
    return RefundTerms(
        refundable=refundable,
        unspent=min(refundable, max(balance, 0) // MICRODOLLARS_PER_CENT),
    )


def refund_check(terms: RefundTerms, *, amount_cents: int, beyond_unspent: bool) -> None:
    """RefundRefused for an amount the purchase cannot give back: not positive, more than is
    left, or more than is unspent unless staff confirm that the account will owe the rest."""
    if amount_cents <= 0:
        raise RefundRefused("A refund is a positive amount.")
    if amount_cents > terms.refundable:
        raise RefundRefused(
            f"At most {cents(terms.refundable)} of this purchase can still be refunded."
        )
    if amount_cents > terms.unspent and not beyond_unspent:
        raise RefundRefused(
            f"Only {cents(terms.unspent)} is unspent; to refund more, confirm that the account "
            "will owe the difference (the box below)."
        )


def purchase_refund(
    *,
    actor: User,
    purchase: Purchase,
    amount_cents: int,
    reason: str,
    note: str,
    idempotency_key: str,
    beyond_unspent: bool = False,
) -> Refund:
    """Staff: give back part or all of a credit purchase to the card it came from, through the
    gateway, and take its credits back (the same entry the gateway's events lead to). At most
    the unspent part, unless staff say otherwise: then the account owes the rest."""
    if purchase.status != Purchase.Status.PAID or not purchase.gateway_invoice_id:
        raise RefundRefused("Only a paid purchase can be refunded.")
    if reason not in REFUND_REASONS:
        raise RefundRefused("Choose why the money is given back.")
    if not note.strip():
        raise RefundRefused("Say why: the note goes to the ledger and the audit log.")
    refund_check(
        purchase_refund_terms(purchase=purchase),
        amount_cents=amount_cents,
        beyond_unspent=beyond_unspent,
    )
    refund = get_gateway().refund_create(
        invoice_id=purchase.gateway_invoice_id,
        amount=amount_cents,
        reason=reason,
        metadata={"purchase_id": str(purchase.pk), "note": note.strip()[:500]},
        idempotency_key=f"purchase-{purchase.pk}-refund-{idempotency_key}",
    )
    purchase_refund_record(purchase=purchase, refund=refund, actor=actor)
    with transaction.atomic():
        PurchaseReversal.objects.filter(
            kind=PurchaseReversal.Kind.REFUND, gateway_id=refund.id
        ).update(reason=note.strip()[:300], actor=actor)
        audit_record(
            organization=purchase.account.organization,
            actor=actor,
            action="credits.refund_issued",
            target=f"purchase {purchase.pk}",
            amount_cents=amount_cents,
            reason=note.strip(),
            refund=refund.id,
        )
    return refund


# API tokens

TOKEN_PREFIX = "kb_"


def api_token_create(
    *, user: User, name: str, monthly_cap: int | None = None
) -> tuple[ApiToken, str]:
    """A new token, with the most it may spend per calendar month (UTC) if given; the raw value
    is returned once and never stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=raw[:10],
            token_hash=token_hash(raw),
            monthly_cap=monthly_cap,
        )
        audit_record(
            organization=None,
            actor=user,
            action="api_token.create",
            target=name,
            monthly_cap_microdollars=monthly_cap,
        )
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
        .filter(token_hash=token_hash(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token_use_due(token.last_used_at, now=now):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
