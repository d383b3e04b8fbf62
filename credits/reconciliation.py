"""Daily check that the cached balances equal their ledgers; drift is logged loudly."""

import logging

from django.db.models import F, Sum
from django.db.models.functions import Coalesce

from credits.models import CreditAccount

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
    return {"accounts_checked": CreditAccount.objects.count(), "drifted": drifted}
