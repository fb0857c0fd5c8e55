"""Retry timing in one place: exponential backoff with one jitter range, and the one parser
of HTTP `Retry-After`. Used by the daemon (a person's next attempt), the downloader, the
search providers and the LLM and Wikidata clients; each keeps its own loop, because what is
worth retrying (and what to log) differs, but none computes a delay of its own."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

JITTER = (0.5, 1.5)  # full jitter around the nominal delay: retries of many clients spread out


def backoff(base_s: float, retries_before: int, cap_s: float | None = None) -> float:
    """Delay before a retry: `base_s` doubled for each earlier retry (0 for the first),
    times a random factor in JITTER, at most `cap_s`."""
    nominal = base_s * (2 ** max(0, retries_before))
    if cap_s is not None:
        nominal = min(nominal, cap_s)
    return nominal * random.uniform(*JITTER)


def retry_after_seconds(value: str | None, cap_s: float | None = None) -> float | None:
    """A `Retry-After` header as seconds from now: delta-seconds or an HTTP date; None when
    absent or unparsable; never negative, at most `cap_s`."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    if seconds != seconds:  # NaN
        return None
    seconds = max(0.0, seconds)
    return min(seconds, cap_s) if cap_s is not None else seconds


def next_delay(
    base_s: float, retries_before: int, retry_after_s: float | None, cap_s: float | None = None
) -> float:
    """What the server asked for if it said, else backoff; at most `cap_s` either way."""
    if retry_after_s is not None:
        return min(retry_after_s, cap_s) if cap_s is not None else retry_after_s
    return backoff(base_s, retries_before, cap_s)
