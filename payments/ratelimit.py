"""A token bucket for the gateway's reads, shared by every thread of a process.

Stripe allows 100 read requests per second in live mode (25 in test mode) per account, across
every process that uses the key. The reconciler reads page after page for thousands of
customers; without a brake a daily sweep would take the whole allowance and the requests that
people are waiting on (a purchase, a seat change) would be refused with 429s. Each paged read of
`StripeGateway` takes a token first: at most `GATEWAY_READS_PER_SECOND` per process (25 by
default), in bursts of at most that many.
"""

import threading
import time
from collections.abc import Callable

from django.conf import settings


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `take` waits for one."""

    def __init__(
        self,
        *,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("A token bucket needs a positive rate.")
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token, waiting until there is one. Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                # A hair under one is one: the clock's float arithmetic may never add the last
                # billionth of a token.
                if self._tokens >= 1 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1)
                    return waited
                wait = (1 - self._tokens) / self.rate
            self._sleep(wait)
            waited += wait


_bucket: TokenBucket | None = None
_bucket_lock = threading.Lock()


def gateway_reads() -> TokenBucket:
    """The process's bucket for gateway reads, made from the setting on first use (and again
    when the setting changed, as tests do)."""
    global _bucket  # noqa: PLW0603 - one bucket per process, by design
    rate = float(settings.GATEWAY_READS_PER_SECOND)
    with _bucket_lock:
        if _bucket is None or _bucket.rate != rate:
            _bucket = TokenBucket(rate=rate)
        return _bucket
