"""The sandbox gateway's own state: a small, local copy of the Stripe objects the product uses."""

from django.db import models
from django.utils import timezone


class SandboxClock(models.Model):
    """How far the sandbox's clock runs ahead of real time (moved by `sandbox_advance`)."""

    offset_seconds = models.BigIntegerField(default=0)

    class Meta:
        app_label = "payments"

    def __str__(self) -> str:
        return f"+{self.offset_seconds}s"


class SandboxCustomer(models.Model):
    id = models.CharField(primary_key=True, max_length=40)
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    address = models.JSONField(default=dict, blank=True)
    tax_ids = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    default_payment_method = models.ForeignKey(
        "SandboxPaymentMethod", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)
    # Deleted in the dashboard (`sandbox_customer_delete`): every later call naming it fails
    # with resource_missing, as Stripe's do.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "payments"

    def __str__(self) -> str:
        return f"{self.id} {self.name}"


class SandboxPaymentMethod(models.Model):
    class Behaviour(models.TextChoices):
        SUCCEEDS = "succeeds"
        FAILS_ON_CHARGE = "fails_on_charge"
        REQUIRES_AUTHENTICATION = "requires_authentication"
        # A bank debit: the payment is `processing`, then settles or fails some days later.
        SETTLES_LATER = "settles_later"
        FAILS_LATER = "fails_later"

    class Type(models.TextChoices):
        CARD = "card"
        US_BANK_ACCOUNT = "us_bank_account"

    class Refunds(models.TextChoices):
        """How a refund of a payment made with it goes (Stripe's test cards for asynchronous
        refunds, https://docs.stripe.com/testing#refunds)."""

        AT_ONCE = "", "Succeed at once"
        PENDING = "pending", "Pending, then succeeded"
        FAIL_LATER = "failed", "Succeeded, then failed"

    id = models.CharField(primary_key=True, max_length=40)
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.CARD)
    customer = models.ForeignKey(
        SandboxCustomer, null=True, on_delete=models.CASCADE, related_name="payment_methods"
    )
    brand = models.CharField(max_length=20)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    behaviour = models.CharField(max_length=30, choices=Behaviour.choices)
    # How a charge on a card that fails is declined (Stripe's error code and decline code).
    error_code = models.CharField(max_length=40, blank=True)
    decline_code = models.CharField(max_length=40, blank=True)
    refunds = models.CharField(max_length=10, choices=Refunds.choices, blank=True, default="")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "payments"

    def __str__(self) -> str:
        return f"{self.brand} •••• {self.last4}"


class SandboxPrice(models.Model):
    id = models.CharField(primary_key=True, max_length=40)
    lookup_key = models.CharField(max_length=100, unique=True)
    product_name = models.CharField(max_length=200)
    unit_amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "payments"

    def __str__(self) -> str:
        return self.lookup_key


class SandboxSubscription(models.Model):
    id = models.CharField(primary_key=True, max_length=40)
    item_id = models.CharField(max_length=40, unique=True)
    customer = models.ForeignKey(
        SandboxCustomer, on_delete=models.CASCADE, related_name="subscriptions"
    )
    price = models.ForeignKey(SandboxPrice, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=20, default="incomplete")
    billing_cycle_anchor = models.DateTimeField()
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    pending_quantity = models.PositiveIntegerField(null=True, blank=True)
    pending_expires_at = models.DateTimeField(null=True, blank=True)
    pending_invoice = models.ForeignKey(
        "SandboxInvoice", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Checkout sets the card it collected here; it takes precedence over the customer's default.
    default_payment_method = models.ForeignKey(
        SandboxPaymentMethod, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    latest_invoice = models.ForeignKey(
        "SandboxInvoice", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metadata = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "payments"

    def __str__(self) -> str:
        return f"{self.id} × {self.quantity} ({self.status})"


class SandboxInvoice(models.Model):
    id = models.CharField(primary_key=True, max_length=40)
    number = models.CharField(max_length=20, blank=True)
    customer = models.ForeignKey(SandboxCustomer, on_delete=models.CASCADE, related_name="invoices")
    subscription = models.ForeignKey(
        SandboxSubscription,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invoices",
    )
    status = models.CharField(max_length=20, default="draft")
    billing_reason = models.CharField(max_length=40)
    description = models.CharField(max_length=500, blank=True)
    currency = models.CharField(max_length=3, default="usd")
    amount_due = models.IntegerField(default=0)
    amount_paid = models.IntegerField(default=0)
    attempt_count = models.PositiveIntegerField(default=0)
    first_failed_at = models.DateTimeField(null=True, blank=True)
    next_payment_attempt = models.DateTimeField(null=True, blank=True)
    auto_finalize_at = models.DateTimeField(null=True, blank=True)
    # Stripe's auto_advance: false for the renewals of an unpaid subscription, which stay drafts
    # until someone finalizes and pays them.
    auto_advance = models.BooleanField(default=True)
    # Why the last finalization failed (Stripe's last_finalization_error): code and message.
    last_finalization_error_code = models.CharField(max_length=60, blank=True)
    last_finalization_error = models.CharField(max_length=300, blank=True)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    lines = models.JSONField(default=list)
    metadata = models.JSONField(default=dict, blank=True)
    payment_intent = models.CharField(max_length=40, blank=True, db_index=True)
    # The PaymentIntent's state: requires_payment_method, requires_action, succeeded.
    payment_intent_status = models.CharField(max_length=30, blank=True)
    # The card of the last attempt: the one waiting for 3-D Secure, or the one declined (a
    # non-retryable decline is retried only with another card).
    attempt_payment_method = models.ForeignKey(
        SandboxPaymentMethod, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    charge = models.CharField(max_length=40, blank=True, db_index=True)
    amount_refunded = models.IntegerField(default=0)
    last_payment_error = models.CharField(max_length=300, blank=True)
    last_error_code = models.CharField(max_length=60, blank=True)
    last_decline_code = models.CharField(max_length=60, blank=True)
    created = models.DateTimeField(default=timezone.now)
    finalized_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    marked_uncollectible_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "payments"
        indexes = [
            models.Index(
                fields=["next_payment_attempt"],
                name="sandbox_invoice_retry_due",
                condition=models.Q(status="open"),
            )
        ]

    def __str__(self) -> str:
        return self.number or self.id


class SandboxCheckoutSession(models.Model):
    id = models.CharField(primary_key=True, max_length=80)
    customer = models.ForeignKey(SandboxCustomer, on_delete=models.CASCADE, related_name="+")
    mode = models.CharField(max_length=20)
    status = models.CharField(max_length=20, default="open")
    payment_status = models.CharField(max_length=20, default="unpaid")
    amount = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3, default="usd")
    description = models.CharField(max_length=500, blank=True)
    price = models.ForeignKey(
        SandboxPrice, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    quantity = models.PositiveIntegerField(default=1)
    metadata = models.JSONField(default=dict, blank=True)
    success_url = models.URLField(max_length=1000)
    cancel_url = models.URLField(max_length=1000)
    subscription = models.ForeignKey(
        SandboxSubscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    invoice = models.ForeignKey(
        SandboxInvoice, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    payment_intent = models.CharField(max_length=40, blank=True, db_index=True)
    # The card entered (waiting for 3-D Secure while the session is still open); Checkout
    # attaches it to the customer, and the product makes it the default.
    payment_method = models.ForeignKey(
        SandboxPaymentMethod, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    # A bank debit completed the session unpaid: when its payment settles or fails.
    settles_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "payments"
        indexes = [
            models.Index(
                fields=["settles_at"],
                name="sandbox_checkout_settle_due",
                condition=models.Q(settles_at__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return self.id


class SandboxRefund(models.Model):
    """Money given back on an invoice's charge (a Stripe Refund)."""

    id = models.CharField(primary_key=True, max_length=40)
    invoice = models.ForeignKey(SandboxInvoice, on_delete=models.CASCADE, related_name="refunds")
    amount = models.PositiveIntegerField()
    reason = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=20, default="succeeded")
    # A refund that changes later (pending → succeeded or failed, succeeded → failed): what it
    # becomes, and when.
    next_status = models.CharField(max_length=20, blank=True)
    changes_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.CharField(max_length=40, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "payments"
        indexes = [
            models.Index(
                fields=["changes_at"],
                name="sandbox_refund_change_due",
                condition=models.Q(changes_at__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount}"


class SandboxDispute(models.Model):
    """A cardholder's dispute of an invoice's charge (a Stripe Dispute)."""

    id = models.CharField(primary_key=True, max_length=40)
    invoice = models.ForeignKey(SandboxInvoice, on_delete=models.CASCADE, related_name="disputes")
    amount = models.PositiveIntegerField()
    reason = models.CharField(max_length=40, default="fraudulent")
    status = models.CharField(max_length=30, default="needs_response")
    created = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "payments"

    def __str__(self) -> str:
        return f"{self.id} {self.status}"


class SandboxIdempotencyKey(models.Model):
    """The first answer to a request with this key; a repeat returns it and does nothing."""

    key = models.CharField(max_length=255, unique=True)
    object_id = models.CharField(max_length=80)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "payments"

    def __str__(self) -> str:
        return self.key


class SandboxEvent(models.Model):
    """An event the sandbox sends to the app's webhook endpoint, redelivered until a 2xx."""

    id = models.CharField(primary_key=True, max_length=40)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    created = models.DateTimeField(default=timezone.now)
    # Delivery order: one action's events in the order Stripe typically sends them, or shuffled
    # (SANDBOX_SHUFFLE_EVENTS), since Stripe guarantees no order.
    delivery_order = models.BigIntegerField(default=0)
    # When the endpoint first had it.
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # When it is (next) due, by the sandbox's clock; None once nothing more is owed: every copy
    # delivered, or delivery given up (after three days, as Stripe does).
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    last_response = models.CharField(max_length=300, blank=True)
    # Chaotic delivery (payments.sandbox.chaos): times the endpoint is to receive it (2: a
    # duplicate), times it has, and first attempts still to be lost on the way.
    copies = models.PositiveSmallIntegerField(default=1)
    deliveries = models.PositiveSmallIntegerField(default=0)
    drops = models.PositiveSmallIntegerField(default=0)

    class Meta:
        app_label = "payments"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="sandbox_event_owed",
                condition=models.Q(next_attempt_at__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"
