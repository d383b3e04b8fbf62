"""Demo credits for seed_demo: purchases through the real (sandbox) gateway and a few weeks of
usage, idempotent by construction (fixed keys)."""

import random
from contextlib import suppress
from datetime import timedelta
from functools import partial

from django.utils import timezone

from accounts.models import User
from credits.exceptions import UnknownModel
from credits.models import Purchase
from credits.services import Tokens, account_for, credits_purchase, usage_record
from organizations.models import Organization

MODELS = [
    ("anthropic", "claude-sonnet-4-5", 0.35),
    ("anthropic", "claude-haiku-4-5", 0.15),
    ("openai", "gpt-5", 0.2),
    ("openai", "gpt-4.1-mini", 0.1),
    ("google", "gemini-2.5-pro", 0.1),
    ("deepseek", "deepseek-chat", 0.1),
]
PROJECTS = ["robot-arm-firmware", "vision-pipeline", "fleet-dashboard", "docs"]


def seed_demo_credits(
    *, organization: Organization, buyer: User, spenders: list[User], days: int = 45
) -> None:
    account = account_for(organization=organization)
    for n, dollars in enumerate((500, 250)):
        if not Purchase.objects.filter(
            idempotency_key=f"demo-purchase-{organization.pk}-{n}"
        ).exists():
            credits_purchase(
                actor=buyer,
                account=account,
                amount_cents=dollars * 100,
                idempotency_key=f"demo-purchase-{organization.pk}-{n}",
                success_url="http://127.0.0.1:8000/",
                cancel_url="http://127.0.0.1:8000/",
            )
    randomness = random.Random(42)  # noqa: S311 - demo data, not security
    today = timezone.now().replace(minute=0, second=0, microsecond=0)
    weights = [weight for *_, weight in MODELS]
    for day in range(days, 0, -1):
        for person_index, person in enumerate(spenders):
            busy = 4 + (person_index * 3) % 9 + randomness.randint(0, 6)
            for n in range(busy):
                provider, model, _ = randomness.choices(MODELS, weights=weights)[0]
                tokens = Tokens(
                    input=randomness.randint(2_000, 60_000),
                    output=randomness.randint(200, 6_000),
                    cache_read=randomness.choice([0, 0, 20_000, 80_000]),
                )
                record = partial(
                    usage_record,
                    account_id=account.pk,
                    user_id=person.pk,
                    request_id=f"demo-{day}-{person.pk}-{n}",
                    provider=provider,
                    model=model,
                    tokens=tokens,
                    project=randomness.choice(PROJECTS),
                    at=today - timedelta(days=day, minutes=randomness.randint(0, 600)),
                )
                with suppress(UnknownModel):  # a model dropped from the catalogue
                    record()
