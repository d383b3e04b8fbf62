"""Credits: accounts with an append-only ledger in integer microdollars (1 USD = 1,000,000)."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from organizations.models import Organization

MICRODOLLARS_PER_CENT = 10_000
MICRODOLLARS_PER_DOLLAR = 1_000_000


class CreditAccount(models.Model):
    """One per organization and one per user. `balance` is a cache of sum(ledger), updated in the
    same transaction as every ledger row. The floor is 0, except for what the account owes after
    a refund or a chargeback took back credits it had spent: `owed`, raised by the same UPDATE
    that posts the refund or dispute entry, is how far below zero the check constraint lets the
    balance go (DESIGN.md, "Money"; docs/decisions.md)."""

    organization = models.OneToOneField(
        Organization,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="credit_account",
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="credit_account",
    )
    balance = models.BigIntegerField(default=0)
    # Reserved by active holds (streaming requests in progress), kept in the same statements as
    # the holds. What may be spent is balance - held; nothing may take that below zero.
    held = models.BigIntegerField(default=0)
    owed = models.BigIntegerField(
        default=0,
        help_text="Microdollars the account owes after refunds or chargebacks (−balance, or 0).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    # Auto top-up: when a debit leaves the balance under the threshold, charge the saved card.
    auto_topup_enabled = models.BooleanField(default=False)
    auto_topup_threshold = models.BigIntegerField(default=10 * MICRODOLLARS_PER_DOLLAR)
    auto_topup_amount_cents = models.PositiveIntegerField(default=5000)
    # Set while one top-up is being charged, so that there are never two in flight.
    auto_topup_started_at = models.DateTimeField(null=True, blank=True)
    auto_topup_last_error = models.CharField(max_length=300, blank=True)

    # Low-balance alert: one email when the balance falls under the threshold, re-armed above it.
    low_balance_threshold = models.BigIntegerField(null=True, blank=True)
    low_balance_recipients = models.TextField(blank=True, help_text="One email per line")
    low_balance_alerted = models.BooleanField(default=False)

    # Organization accounts: how much one member may spend per UTC day (None: no limit).
    member_daily_limit = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(held__gte=0), name="credit_held_not_negative"),
            models.CheckConstraint(
                condition=Q(balance__gte=-F("owed")), name="credit_balance_above_floor"
            ),
            models.CheckConstraint(condition=Q(owed__gte=0), name="credit_owed_not_negative"),
            models.CheckConstraint(
                condition=~Q(organization__isnull=False, user__isnull=False),
                name="credit_account_one_holder",
            ),
        ]

    def __str__(self) -> str:
        return f"account {self.pk}"

    @property
    def available(self) -> int:
        """What may be spent now: the balance less what holds reserve."""
        return self.balance - self.held


class LedgerEntry(models.Model):
    """A change of an account's balance. Never updated or deleted (a database trigger refuses)."""

    class Kind(models.TextChoices):
        PURCHASE = "purchase"
        GRANT = "grant"
        USAGE = "usage"
        REFUND = "refund"
        DISPUTE = "dispute"
        ADJUSTMENT = "adjustment"
        EXPIRY = "expiry"

    class Source(models.TextChoices):
        """The namespace of the entry's key: what kind of operation made it. A client's
        request_id only ever lands in `usage` (or `hold`), whatever its text, so nothing a client
        sends can reach a key the system uses (a purchase id, a refund id, ...)."""

        USAGE = "usage", "Usage (the client's request_id)"
        HOLD = "hold", "Hold (the client's request_id)"
        PURCHASE = "purchase", "Credit purchase (its id)"
        AUTO_TOPUP = "auto_topup", "Auto top-up (the purchase's id)"
        GRANT = "grant", "Staff grant or adjustment"
        REFUND = "refund", "Refund (the gateway's refund id)"
        DISPUTE = "dispute", "Dispute (the gateway's dispute id)"
        EXPIRY = "expiry", "Expiry"

    # Indexed by the composite index and unique key below, which both start with the account.
    account = models.ForeignKey(
        CreditAccount, on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    amount = models.BigIntegerField(help_text="Microdollars; negative for debits")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    source = models.CharField(max_length=20, choices=Source.choices)
    # What made this change, unique per account and source: a usage request_id, a purchase id...
    idempotency_key = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "source", "idempotency_key"],
                name="ledger_entry_idempotent_in_source",
            ),
            models.CheckConstraint(
                condition=Q(
                    source__in=[
                        "usage",
                        "hold",
                        "purchase",
                        "auto_topup",
                        "grant",
                        "refund",
                        "dispute",
                        "expiry",
                    ]
                ),
                name="ledger_entry_source_known",
            ),
            # Only usage may be free (a request with no billable tokens still gets its record).
            models.CheckConstraint(
                condition=~Q(amount=0) | Q(kind="usage"), name="ledger_entry_moves_money"
            ),
        ]
        indexes = [models.Index(fields=["account", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount}"


class UsageRecord(models.Model):
    """What a usage debit paid for. Kept apart from the ledger so that retention can delete the
    details of a purged organization while the ledger's amounts stay for accounting."""

    entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="usage")
    account = models.ForeignKey(
        CreditAccount, on_delete=models.PROTECT, related_name="usage", db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    request_id = models.CharField(max_length=255)
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=100)
    project = models.CharField(max_length=200, blank=True)
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    cost = models.BigIntegerField(help_text="Microdollars")
    # The list price it was charged at (its receipt), and what a settled hold could not collect
    # because its cost went past the hold and what was available.
    price = models.ForeignKey(
        "ModelPrice", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    uncollected = models.BigIntegerField(default=0, help_text="Microdollars")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["account", "user", "created_at"]),
            models.Index(fields=["account", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.cost}"


class SpendCounter(models.Model):
    """How much one subject (a member, a token) has spent of one account in one period (a UTC
    day, a calendar month), kept only while a limit applies to it. Each debit or hold adds to it
    with a conditional update (`spent + cost <= limit`) in its own transaction, so a limit holds
    under any concurrency; a hold's reservation counts until it is settled or released."""

    class Scope(models.TextChoices):
        MEMBER_DAY = "member_day", "A member's spending per UTC day"
        MEMBER_MONTH = "member_month", "A member's spending per calendar month (UTC)"
        TOKEN_MONTH = "token_month", "An API token's spending per calendar month (UTC)"

    # None for a token's counter: a token's cap counts its spending in every profile it uses.
    account = models.ForeignKey(
        CreditAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    scope = models.CharField(max_length=20, choices=Scope.choices)
    subject_id = models.BigIntegerField(help_text="The member's user id, or the token's id.")
    period = models.DateField(help_text="The UTC day (or first day of the period).")
    spent = models.BigIntegerField(default=0, help_text="Microdollars")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "scope", "subject_id", "period"],
                name="spend_counter_one_row",
                nulls_distinct=False,
            ),
            models.CheckConstraint(condition=Q(spent__gte=0), name="spend_counter_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.subject_id} {self.period}: {self.spent}"


class SpendVersion(models.Model):
    """A number that changes whenever a fact the API's cached spend context rests on changes: per
    organization its memberships and roles, its seat subscription and its billing state; and
    one for the price catalogue (scope "prices"). Kept by database triggers (migration 0006), so
    no write path can forget it, and checked inside the debit itself, so a stale context is
    never spent with. Values come from a sequence: they never repeat, even after a rollback."""

    scope = models.CharField(max_length=64, primary_key=True)
    version = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.scope}: {self.version}"


class Purchase(models.Model):
    """Credits bought with money. Credited once, by whichever arrives first: the synchronous
    answer of the gateway or its webhook (the ledger key is the purchase's id in the `purchase` or
    `auto_topup` namespace)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        # Paid at Checkout with a bank debit: the bank has not settled it yet (Stripe's
        # `payment_status=unpaid` on a completed session), credited when it does.
        PROCESSING = "processing"
        PAID = "paid"
        # Declined, or a bank debit that failed later (checkout.session.async_payment_failed).
        FAILED = "failed"
        # Its Checkout expired unpaid (checkout.session.expired): nothing was charged.
        EXPIRED = "expired"

    class Kind(models.TextChoices):
        CREDIT_PURCHASE = "credit_purchase", "Credit purchase"
        AUTO_TOPUP = "auto_topup", "Auto top-up"

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="purchases")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.CREDIT_PURCHASE)
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    idempotency_key = models.CharField(max_length=100, unique=True)
    gateway_invoice_id = models.CharField(max_length=80, blank=True)
    # What the buyer is shown of the gateway's invoice (its copy for accounting is in `invoices`).
    invoice_number = models.CharField(max_length=80, blank=True)
    invoice_url = models.URLField(max_length=500, blank=True)
    invoice_pdf = models.URLField(max_length=500, blank=True)
    checkout_session_id = models.CharField(max_length=120, blank=True)
    # The payment of a Checkout purchase: how its refunds and disputes find it, whether or not
    # the gateway links that payment to the invoice Checkout created.
    payment_intent_id = models.CharField(max_length=80, blank=True, db_index=True)
    failure_message = models.CharField(max_length=300, blank=True)
    # Where the payer confirms the payment with their bank (3-D Secure) while it waits on them.
    action_url = models.URLField(max_length=1000, blank=True)
    # Of the credits bought, how many paid back what the account owed (after a chargeback).
    debt_paid = models.BigIntegerField(default=0, help_text="Microdollars")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="purchase_positive"),
            models.UniqueConstraint(
                fields=["gateway_invoice_id"],
                condition=~Q(gateway_invoice_id=""),
                name="purchase_one_per_invoice",
            ),
            models.UniqueConstraint(
                fields=["checkout_session_id"],
                condition=~Q(checkout_session_id=""),
                name="purchase_one_per_checkout",
            ),
        ]

    def __str__(self) -> str:
        return f"purchase {self.pk} ${self.amount_cents / 100:.2f} {self.status}"

    @property
    def amount_microdollars(self) -> int:
        return self.amount_cents * MICRODOLLARS_PER_CENT

    @property
    def awaiting_authentication(self) -> bool:
        return self.status == self.Status.PENDING and bool(self.action_url)


class PurchaseReversal(models.Model):
    """Money of a purchase that went back to the card: a refund (staff's, or from the gateway's
    dashboard) or a cardholder's dispute, as the gateway last told it. The credits it took back
    (and gave back, for a dispute won or a refund that failed) are ledger entries keyed by the
    gateway's id in the `refund` and `dispute` namespaces."""

    class Kind(models.TextChoices):
        REFUND = "refund"
        DISPUTE = "dispute"

    purchase = models.ForeignKey(Purchase, on_delete=models.PROTECT, related_name="reversals")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    gateway_id = models.CharField(max_length=80)
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=40, help_text="The gateway's: succeeded, lost, won, …")
    reason = models.CharField(max_length=300, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "gateway_id"], name="reversal_once"),
        ]
        indexes = [models.Index(fields=["purchase", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.gateway_id} ({self.status})"

    @property
    def status_label(self) -> str:
        """The gateway's status as words: `needs_response` → "needs response"."""
        return self.status.replace("_", " ")


class ModelPrice(models.Model):
    """A provider's list price for a model, per million tokens in microdollars, from a date on."""

    provider = models.CharField(max_length=50)
    model_id = models.CharField(max_length=100)
    name = models.CharField(max_length=100)
    input_price = models.BigIntegerField()
    output_price = models.BigIntegerField()
    cache_read_price = models.BigIntegerField(default=0)
    cache_write_price = models.BigIntegerField(default=0)
    effective_from = models.DateField()
    source_url = models.URLField()
    source_date = models.DateField(help_text="When the price was read from the source")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model_id", "effective_from"], name="one_price_per_day"
            ),
            models.CheckConstraint(
                condition=Q(input_price__gte=0)
                & Q(output_price__gte=0)
                & Q(cache_read_price__gte=0)
                & Q(cache_write_price__gte=0),
                name="model_price_not_negative",
            ),
        ]
        indexes = [models.Index(fields=["model_id", "-effective_from"])]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model_id} from {self.effective_from}"


class ApiToken(models.Model):
    """A personal API token for the extension. Only its SHA-256 is stored; it is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # What this token may spend per calendar month (UTC), set when it is made; None: no cap.
    monthly_cap = models.BigIntegerField(null=True, blank=True, help_text="Microdollars")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class MemberBudget(models.Model):
    """What one member may spend of an organization's credits per calendar month (UTC), set by
    an owner or admin. Enforced inside each debit and hold by a SpendCounter."""

    account = models.ForeignKey(CreditAccount, on_delete=models.CASCADE, related_name="budgets")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    monthly_limit = models.BigIntegerField(help_text="Microdollars")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "user"], name="one_budget_per_member"),
            models.CheckConstraint(condition=Q(monthly_limit__gte=0), name="budget_not_negative"),
        ]

    def __str__(self) -> str:
        return f"budget of {self.user_id}: {self.monthly_limit}"


class Hold(models.Model):
    """A reservation for a streaming model request whose cost is known only at its end: the list
    price of its maximum tokens is held from what is available, then settled at the actual cost
    (the rest freed) or released. Moved only by the PL/pgSQL functions of migration 0008."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        SETTLED = "settled"
        RELEASED = "released"
        EXPIRED = "expired"

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="holds")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    token = models.ForeignKey(
        ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    request_id = models.CharField(max_length=255)
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=100)
    project = models.CharField(max_length=200, blank=True)
    price = models.ForeignKey("ModelPrice", on_delete=models.PROTECT, related_name="+")
    max_input_tokens = models.BigIntegerField()
    max_output_tokens = models.BigIntegerField()
    max_cache_read_tokens = models.BigIntegerField(default=0)
    max_cache_write_tokens = models.BigIntegerField(default=0)
    amount = models.BigIntegerField(help_text="Microdollars held")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    # The settlement's answer, kept so that settling again answers the same.
    entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="hold"
    )
    cost = models.BigIntegerField(null=True, blank=True, help_text="Microdollars charged")
    released = models.BigIntegerField(null=True, blank=True, help_text="Microdollars freed")
    uncollected = models.BigIntegerField(null=True, blank=True, help_text="Microdollars")
    balance_after = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "request_id"], name="one_hold_per_request_id"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="hold_amount_not_negative"),
            models.CheckConstraint(
                condition=Q(status__in=["active", "settled", "released", "expired"]),
                name="hold_status_known",
            ),
        ]
        indexes = [
            # The expiry sweep reads only active holds.
            models.Index(
                fields=["expires_at"], name="hold_active_expiry", condition=Q(status="active")
            ),
            models.Index(fields=["account", "status"], name="hold_by_account_status"),
        ]

    def __str__(self) -> str:
        return f"hold {self.pk} {self.amount} {self.status}"
