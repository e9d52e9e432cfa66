"""Sign-in back-off: failed attempts make a user name, and the address they came from, wait.

Pure bookkeeping on an injected clock, so the policy is tested without
sleeping: after the n-th failure in a row a key waits ``first_delay * 2**(n-1)``
seconds, and ``lockout`` seconds from the ``lockout_after``-th on.  A key
that fails nothing for ``lockout`` seconds is forgotten, which also bounds
the memory an attacker can make the gateway spend on made-up names.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from typing import Callable


@dataclasses.dataclass
class _Failures:
    count: int
    last: float
    until: float


class SignInBackoff:
    def __init__(
        self, first_delay: float, lockout_after: int, lockout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._first_delay = first_delay
        self._lockout_after = lockout_after
        self._lockout = lockout
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], _Failures] = OrderedDict()
        """Oldest last failure first, so forgetting stops at the first key still remembered."""

    def wait(self, user: str, source: str) -> float:
        """Seconds before ``user`` from ``source`` may try again; 0 if now."""
        now = self._forget_old()
        return max([0.0, *(record.until - now for record in self._records(user, source))])

    def failed(self, user: str, source: str) -> None:
        now = self._forget_old()
        for key in (("user", user), ("source", source)):
            record = self._failures.pop(key, None) or _Failures(0, now, now)
            record.count += 1
            record.last = now
            record.until = now + self.delay(record.count)
            self._failures[key] = record

    def succeeded(self, user: str) -> None:
        """The right password: the name starts afresh (its address keeps its record)."""
        self._failures.pop(("user", user), None)

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row."""
        if failures >= self._lockout_after:
            return self._lockout
        return min(self._lockout, self._first_delay * 2 ** (failures - 1))

    def _records(self, user: str, source: str) -> list[_Failures]:
        return [record for key in (("user", user), ("source", source)) if (record := self._failures.get(key))]

    def _forget_old(self) -> float:
        now = self._clock()
        while self._failures:
            key, record = next(iter(self._failures.items()))
            if now - record.last < self._lockout:
                break
            del self._failures[key]
        return now
