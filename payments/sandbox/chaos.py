"""Chaotic delivery (SANDBOX_DELIVERY=chaos): the sandbox delivers its events the way Stripe allows
itself to, so that the books are proven to agree whatever the order and timing.

What Stripe documents (https://docs.stripe.com/webhooks):
- "Stripe doesn't guarantee the delivery of events in the order that they're generated"
  (#event-ordering): events of different actions arrive in any order;
- "Webhook endpoints might occasionally receive the same event more than once" (#handle-duplicate-
  events): the same event id, delivered twice;
- an undelivered event is retried "for up to three days with an exponential back off" (#retries):
  late, sometimes much later.

So each event gets a plan when it is made: a delay before its first delivery (none, or up to a
day of the sandbox's clock), a second copy delivered later, and first attempts that are lost on
the way and redelivered later. The plans come from one generator seeded by SANDBOX_CHAOS_SEED
(printed in the test header), so a run can be replayed. The shares below are the odds per event.
"""

import random
import threading
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings

DELAYED = 0.5
LONGEST_DELAY = timedelta(days=1)
DUPLICATED = 0.15
DROPPED = 0.15
MOST_DROPS = 2
# A lost attempt or a second copy comes again within this (sandbox) time: well inside Stripe's
# three days of retries.
LONGEST_REDELIVERY = timedelta(days=1)
# Room for events due in the same microsecond to be ordered at random.
TIEBREAK_SPAN = 1000

_lock = threading.RLock()
_rng: random.Random | None = None


@dataclass(frozen=True)
class Plan:
    """How one event reaches the endpoint."""

    delay: timedelta  # before its first delivery attempt
    copies: int  # times the endpoint receives it: 2 when it is duplicated
    drops: int  # first attempts lost on the way, each redelivered later


def reset(seed: int | None = None) -> None:
    """Start the generator again from `seed` (SANDBOX_CHAOS_SEED when None)."""
    global _rng  # noqa: PLW0603 - one generator per process, seeded from the settings
    with _lock:
        _rng = random.Random(settings.SANDBOX_CHAOS_SEED if seed is None else seed)  # noqa: S311


def _random() -> random.Random:
    if _rng is None:
        reset()
    assert _rng is not None
    return _rng


def plan() -> Plan:
    with _lock:
        rng = _random()
        delayed, duplicated, dropped = rng.random(), rng.random(), rng.random()
        return Plan(
            delay=timedelta(seconds=rng.uniform(0, LONGEST_DELAY.total_seconds()))
            if delayed < DELAYED
            else timedelta(0),
            copies=2 if duplicated < DUPLICATED else 1,
            drops=rng.randint(1, MOST_DROPS) if dropped < DROPPED else 0,
        )


def later() -> timedelta:
    """When a lost attempt, or an event's second copy, comes again."""
    with _lock:
        return timedelta(seconds=_random().uniform(60, LONGEST_REDELIVERY.total_seconds()))


def tiebreak() -> int:
    with _lock:
        return _random().randrange(TIEBREAK_SPAN)
