"""When to try a failed delivery again: exponential backoff with full jitter, Retry-After honoured."""
from __future__ import annotations

import random

from hub.config import RetryPolicy


def next_delay(policy: RetryPolicy, attempts: int, retry_after: float | None = None) -> float:
    """Seconds before attempt number `attempts + 1` (attempts >= 1 already made)."""
    ceiling = min(policy.max_delay_seconds, policy.base_delay_seconds * 2 ** (attempts - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
