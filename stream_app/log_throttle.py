"""Keep a broker outage from flooding the worker's log.

While the broker is unreachable, aiokafka retries every ~100 ms and logs each failed
connect, metadata refresh and fetch at ERROR: over a hundred lines a second that say the
same thing. :class:`RepeatThrottle` lets the first record of each kind through, drops
repeats for ``interval_s``, and then lets the next one through with a count of what it
dropped. Kinds are the logger plus the message template, so different errors still show.
"""

from __future__ import annotations

import logging
import threading
import time

#: Loggers that repeat themselves while a broker is down.
NOISY_LOGGERS = (
    "aiokafka",  # aiokafka.client logs under this name
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
)


class RepeatThrottle(logging.Filter):
    """Pass one record per (logger, template) every ``interval_s``; count the rest."""

    def __init__(self, interval_s: float = 10.0, clock=time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._dropped: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._dropped[key] = self._dropped.get(key, 0) + 1
                return False
            self._last[key] = now
            dropped = self._dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.msg} [{dropped} more like this in {self.interval_s:g}s]"
        return True


def throttle_noisy_loggers(interval_s: float = 10.0) -> RepeatThrottle | None:
    """Install one :class:`RepeatThrottle` on :data:`NOISY_LOGGERS` (once per process)."""
    for name in NOISY_LOGGERS:
        if any(isinstance(f, RepeatThrottle) for f in logging.getLogger(name).filters):
            return None
    throttle = RepeatThrottle(interval_s)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).addFilter(throttle)
    return throttle
