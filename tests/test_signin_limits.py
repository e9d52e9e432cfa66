"""Sign-in back-off and password checks as pure pieces: a fake clock, a fake verifier, no timing."""

from __future__ import annotations

import asyncio

from gateway.backoff import SignInBackoff
from gateway.passwords import PasswordChecker, hash_password


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_failure_doubles_the_wait_then_locks_out_and_a_quiet_window_forgets() -> None:
    clock = _Clock()
    backoff = SignInBackoff(first_delay=1.0, lockout_after=4, lockout=60.0, clock=clock)
    assert backoff.wait("alice", "192.0.2.1") == 0
    waits = []
    for _ in range(4):
        backoff.failed("alice", "192.0.2.1")
        waits.append(backoff.wait("alice", "192.0.2.1"))
        clock.now += 0.5
    assert waits == [1.0, 2.0, 4.0, 60.0]
    clock.now += 59.0
    assert backoff.wait("alice", "192.0.2.1") == 0.5
    clock.now += 0.5
    assert backoff.wait("alice", "192.0.2.1") == 0
    backoff.failed("alice", "192.0.2.1")
    assert backoff.wait("alice", "192.0.2.1") == 1.0, "a quiet lockout window forgets the failures"


def test_a_name_waits_from_any_address_and_an_address_for_any_name() -> None:
    clock = _Clock()
    backoff = SignInBackoff(first_delay=5.0, lockout_after=3, lockout=60.0, clock=clock)
    backoff.failed("alice", "192.0.2.1")
    assert backoff.wait("alice", "198.51.100.9") == 5.0
    assert backoff.wait("bob", "192.0.2.1") == 5.0
    assert backoff.wait("bob", "198.51.100.9") == 0
    backoff.succeeded("alice")
    assert backoff.wait("alice", "198.51.100.9") == 0
    assert backoff.wait("bob", "192.0.2.1") == 5.0, "the address keeps its record"


async def test_unknown_names_and_missing_passwords_cost_one_real_verification() -> None:
    stored = hash_password("right")
    checked: list[tuple[str, str]] = []

    def verify(password: str, hashed: str) -> bool:
        checked.append((password, hashed))
        return hashed == stored and password == "right"

    checker = PasswordChecker({"alice": stored}, limit=2, verify=verify)
    assert await checker.check("alice", "right")
    assert not await checker.check("alice", "wrong")
    assert not await checker.check("mallory", "right")
    assert not await checker.check("alice", None)
    dummy = checked[2][1]
    assert dummy.startswith("scrypt$") and dummy != stored, "an unknown name is checked against a real-looking hash"
    assert [hashed for _, hashed in checked] == [stored, stored, dummy, stored]


async def test_no_more_than_the_limit_of_password_checks_run_at_once() -> None:
    running = 0
    most = 0
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def verify(password: str, hashed: str) -> bool:
        nonlocal running, most
        running += 1
        most = max(most, running)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        running -= 1
        return False

    checker = PasswordChecker({}, limit=2, verify=verify)
    checks = [asyncio.ensure_future(checker.check(f"user{i}", "guess")) for i in range(6)]
    while running < 2:
        await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*checks) == [False] * 6
    assert most == 2
