"""Benchmark: the reconciler's daily sweep over 10,000 payers on the sandbox gateway.

Runs in a database of its own (`<DATABASE name>_bench_reconcile`, created, migrated and dropped
here), so it never touches development or test data:

    DEBUG=1 .venv/bin/python bench/reconcile.py [--payers 10000] [--damaged 100]

Each payer is an organization with a sandbox customer, a paid seat subscription (its first
invoice), two paid credit purchases (their invoices, their ledger credits) and the local copies
of all three invoices: books that agree, written in bulk the way the product's services leave
them. One full sweep (`reconcile(full=True)`) must find nothing. Then `--damaged` payers get an
invoice whose status was changed behind the product's back, and a second sweep must heal exactly
those. Prints the time of each sweep, payers per second, the database queries and gateway reads
per payer, and what the same reads would take against Stripe at GATEWAY_READS_PER_SECOND.
Exits 1 when a sweep finds what it should not.
"""

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

DOLLAR = 1_000_000
SEATS, SEAT_CENTS, PURCHASE_CENTS = 3, 1800, 10_000
BATCH = 2_000


def populate(payers: int) -> None:
    """Consistent books for `payers` organizations, in bulk."""
    from billing.models import BillingProfile
    from credits.models import CreditAccount, LedgerEntry, Purchase
    from invoices.models import Invoice
    from organizations.models import Organization
    from payments.sandbox.models import (
        SandboxCustomer,
        SandboxInvoice,
        SandboxPrice,
        SandboxSubscription,
    )
    from seats.models import SeatPlan, SeatSubscription
    from seats.plans import seat_plans_ensure

    seat_plans_ensure()
    plan = SeatPlan.objects.get(code="teams")
    price = SandboxPrice.objects.create(
        id="price_bench", lookup_key=plan.lookup_key, product_name="Teams", unit_amount=SEAT_CENTS
    )
    now = datetime.now(tz=UTC).replace(microsecond=0)
    start, end = now - timedelta(days=10), now + timedelta(days=20)
    for first in range(0, payers, BATCH):
        numbers = range(first, min(first + BATCH, payers))
        organizations = Organization.objects.bulk_create(
            Organization(name=f"Payer {n}", created_at=start) for n in numbers
        )
        customers = SandboxCustomer.objects.bulk_create(
            SandboxCustomer(id=f"cus_bench{n:07d}", name=f"Payer {n}", created=start)
            for n in numbers
        )
        profiles = BillingProfile.objects.bulk_create(
            BillingProfile(organization=org, gateway_customer_id=customer.id, currency="usd")
            for org, customer in zip(organizations, customers, strict=True)
        )
        accounts = CreditAccount.objects.bulk_create(
            CreditAccount(organization=org, balance=2 * PURCHASE_CENTS * 10_000)
            for org in organizations
        )
        purchases = Purchase.objects.bulk_create(
            Purchase(
                account=account,
                amount_cents=PURCHASE_CENTS,
                status=Purchase.Status.PAID,
                idempotency_key=f"bench-{n}-{k}",
                gateway_invoice_id=f"in_bench{n:07d}p{k}",
                invoice_number=f"KB-{n:07d}{k}",
                paid_at=start,
            )
            for n, account in zip(numbers, accounts, strict=True)
            for k in (0, 1)
        )
        LedgerEntry.objects.bulk_create(
            LedgerEntry(
                account_id=purchase.account_id,
                amount=PURCHASE_CENTS * 10_000,
                kind=LedgerEntry.Kind.PURCHASE,
                source=LedgerEntry.Source.PURCHASE,
                idempotency_key=str(purchase.pk),
            )
            for purchase in purchases
        )
        subscriptions = SandboxSubscription.objects.bulk_create(
            SandboxSubscription(
                id=f"sub_bench{n:07d}",
                item_id=f"si_bench{n:07d}",
                customer=customer,
                price=price,
                quantity=SEATS,
                status="active",
                billing_cycle_anchor=start,
                current_period_start=start,
                current_period_end=end,
                metadata={"purpose": "seats", "organization_id": str(org.pk), "seat_plan": "teams"},
                created=start,
                updated=start,
            )
            for n, org, customer in zip(numbers, organizations, customers, strict=True)
        )
        SeatSubscription.objects.bulk_create(
            SeatSubscription(
                organization=org,
                plan=plan,
                gateway_subscription_id=subscription.id,
                gateway_customer_id=subscription.customer_id,
                gateway_created=start,
                status="active",
                quantity=SEATS,
                unit_amount=SEAT_CENTS,
                current_period_start=start,
                current_period_end=end,
                activated_at=start,
            )
            for org, subscription in zip(organizations, subscriptions, strict=True)
        )
        gateway_invoices, local_invoices = [], []
        for n, org, profile, customer, subscription in zip(
            numbers, organizations, profiles, customers, subscriptions, strict=True
        ):
            paid = [
                (
                    f"in_bench{n:07d}s",
                    "subscription_create",
                    SEATS * SEAT_CENTS,
                    {},
                    subscription,
                    Invoice.Kind.SEAT_SUBSCRIPTION,
                )
            ]
            for k in (0, 1):
                purchase = purchases[2 * (n - first) + k]
                metadata = {
                    "kind": "credit_purchase",
                    "purchase_id": str(purchase.pk),
                    "organization_id": str(org.pk),
                }
                paid.append(
                    (
                        purchase.gateway_invoice_id,
                        "manual",
                        PURCHASE_CENTS,
                        metadata,
                        None,
                        "credit_purchase",
                    )
                )
            for gateway_id, reason, amount, metadata, sub, kind in paid:
                tail = gateway_id.removeprefix("in_")
                gateway_invoices.append(
                    SandboxInvoice(
                        id=gateway_id,
                        number=f"KB-{tail}",
                        customer=customer,
                        subscription=sub,
                        status="paid",
                        billing_reason=reason,
                        amount_due=amount,
                        amount_paid=amount,
                        attempt_count=1,
                        period_start=start,
                        period_end=start,
                        metadata=metadata,
                        payment_intent=f"pi_{tail}",
                        payment_intent_status="succeeded",
                        charge=f"ch_{tail}",
                        created=start,
                        finalized_at=start,
                        paid_at=start,
                    )
                )
                local_invoices.append(
                    Invoice(
                        billing_profile=profile,
                        gateway_id=gateway_id,
                        number=f"KB-{tail}",
                        kind=kind,
                        status="paid",
                        billing_reason=reason,
                        amount_due=amount,
                        amount_paid=amount,
                        attempt_count=1,
                        gateway_subscription_id=sub.id if sub else "",
                        metadata=metadata,
                        created=start,
                        observed_at=start,
                        paid_at=start,
                    )
                )
        SandboxInvoice.objects.bulk_create(gateway_invoices)
        Invoice.objects.bulk_create(local_invoices)
        print(f"  {numbers.stop:,} payers", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def damage(count: int) -> list[str]:
    """`count` payers' seat invoices voided here behind the product's back."""
    from invoices.models import Invoice

    ids = list(
        Invoice.objects.filter(kind="seat_subscription").order_by("pk").values_list("pk", flat=True)
    )
    step = max(1, len(ids) // max(count, 1))
    chosen = ids[::step][:count]
    Invoice.objects.filter(pk__in=chosen).update(status="void")
    return list(Invoice.objects.filter(pk__in=chosen).values_list("gateway_id", flat=True))


def sweep(label: str) -> tuple[float, object, int]:
    from reconciliation.services import reconcile

    queries = 0

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    started = time.perf_counter()
    with connection.execute_wrapper(count):
        report = reconcile(full=True)
    elapsed = time.perf_counter() - started
    summary = report.summary()
    payers = max(summary["checked"], 1)
    print(
        f"{label}: {summary} in {elapsed:.1f} s ({payers / elapsed:,.0f} payers/s, "
        f"{queries / payers:.1f} queries and {report.reads / payers:.1f} gateway reads per payer)",
        flush=True,
    )
    return elapsed, report, report.reads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payers", type=int, default=10_000)
    parser.add_argument("--damaged", type=int, default=100)
    options = parser.parse_args()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ADMINS = []
    default = settings.DATABASES["default"]
    original_name = default["NAME"]
    default.setdefault("TEST", {})["NAME"] = f"{original_name}_bench_reconcile"
    creation = connection.creation
    print(f"Creating {default['TEST']['NAME']} and migrating it…", flush=True)
    creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=False)
    try:
        from reconciliation.models import Finding

        started = time.perf_counter()
        populate(options.payers)
        print(f"{options.payers:,} payers written in {time.perf_counter() - started:.1f} s\n")
        _, report, reads = sweep("full sweep, books that agree")
        clean = not report.findings  # type: ignore[attr-defined]
        damaged = damage(options.damaged)
        _, second, _ = sweep(
            f"full sweep, {len(damaged)} invoices changed behind the product's back"
        )
        healed = sorted(
            f.gateway_id
            for f in second.findings  # type: ignore[attr-defined]
            if f.kind == Finding.Kind.INVOICE_DIFFERS and f.state == Finding.State.HEALED
        )
        exact = healed == sorted(damaged) and len(second.findings) == len(damaged)  # type: ignore[attr-defined]
        rate = settings.GATEWAY_READS_PER_SECOND
        print(
            f"\nAgainst Stripe the first sweep's {reads:,} reads would take at least "
            f"{reads / rate / 60:.0f} min at GATEWAY_READS_PER_SECOND={rate:g} "
            f"(one page each: fewer than 100 invoices, charges or subscriptions per payer)."
        )
        print(f"first sweep found nothing: {'yes' if clean else 'NO'}")
        print(f"second sweep healed exactly the changed invoices: {'yes' if exact else 'NO'}")
        return 0 if clean and exact else 1
    finally:
        creation.destroy_test_db(original_name, verbosity=0)
        print(f"Dropped {default['TEST']['NAME']}.")


if __name__ == "__main__":
    sys.exit(main())
