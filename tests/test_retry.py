"""facequeue.retry: the one backoff and the one Retry-After parser."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from facequeue.retry import JITTER, backoff, next_delay, retry_after_seconds


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("  ", None), ("7", 7.0), (" 2.5 ", 2.5), ("-3", 0.0)],
)
def test_retry_after_delta_seconds(header, expected):
    assert retry_after_seconds(header) == expected


def test_retry_after_http_date_and_cap():
    in_a_minute = formatdate(time.time() + 60, usegmt=True)
    assert 55 <= retry_after_seconds(in_a_minute) <= 61
    assert retry_after_seconds(in_a_minute, cap_s=10) == 10
    assert retry_after_seconds(formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert retry_after_seconds("soon, please") is None
    assert retry_after_seconds("nan") is None


def test_backoff_doubles_within_the_jitter_and_the_cap():
    lo, hi = JITTER
    for retries in range(6):
        nominal = 0.5 * 2**retries
        for _ in range(50):
            assert lo * nominal <= backoff(0.5, retries) <= hi * nominal
    assert all(backoff(1.0, 30, cap_s=60) <= hi * 60 for _ in range(50))
    assert backoff(0.0, 3) == 0.0


def test_next_delay_prefers_the_servers_word_capped():
    assert next_delay(1.0, 0, 12.0) == 12.0
    assert next_delay(1.0, 0, 120.0, cap_s=60) == 60
    assert JITTER[0] <= next_delay(1.0, 0, None) <= JITTER[1]
