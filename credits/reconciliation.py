"""Daily check that the cached balances equal their ledgers; drift is logged loudly."""

import logging

from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce

from credits.models import CreditAccount, Hold

logger = logging.getLogger(__name__)


def reconcile() -> dict[str, object]:
    drifted = list(
        CreditAccount.objects.annotate(ledger=Coalesce(Sum("entries__amount"), 0))
        .exclude(balance=F("ledger"))
        .values("pk", "balance", "ledger")
    )
    for row in drifted:
        logger.error(
            "credit account %s: balance %s but ledger sums to %s",
            row["pk"],
            row["balance"],
            row["ledger"],
        )
    held_drift = list(
        CreditAccount.objects.annotate(
            active_holds=Coalesce(
                Sum("holds__amount", filter=Q(holds__status=Hold.Status.ACTIVE)), 0
            )
        )
        .exclude(held=F("active_holds"))
        .values("pk", "held", "active_holds")
    )
    for held in held_drift:
        logger.error(
            "credit account %s: held %s but its active holds sum to %s",
            held["pk"],
            held["held"],
            held["active_holds"],
        )
    return {
        "accounts_checked": CreditAccount.objects.count(),
        "drifted": drifted,
        "held_drifted": held_drift,
    }
