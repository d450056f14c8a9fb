"""The reviewer-login limits (accord.server.limits): lockouts per name and per address that
grow with each failure, and the bounded Argon2id pool. Time is a ManualClock."""

from __future__ import annotations

import threading

import anyio
import pytest

from accord.clock import ManualClock
from accord.errors import LoginBusy, LoginThrottled
from accord.server.limits import (
    LOGIN_LOCKOUT_BASE_S,
    LOGIN_LOCKOUT_MAX_S,
    LoginThrottle,
    PasswordWorkPool,
)


def _fail(throttle: LoginThrottle, n: int, name: str = "rita", address: str = "10.0.0.1") -> None:
    for _ in range(n):
        throttle.record_failure(name, address)


def test_free_failures_then_a_lockout_that_ends_with_time() -> None:
    clock = ManualClock()
    throttle = LoginThrottle(free_per_name=5, free_per_address=100, clock=clock)
    _fail(throttle, 5)
    throttle.check("rita", "10.0.0.1")  # five failures are free
    _fail(throttle, 1)
    with pytest.raises(LoginThrottled) as refused:
        throttle.check("rita", "10.0.0.1")
    assert refused.value.code == "login_throttled" and refused.value.http_status == 429
    assert refused.value.retry_after_s == LOGIN_LOCKOUT_BASE_S
    clock.advance(LOGIN_LOCKOUT_BASE_S - 1)
    with pytest.raises(LoginThrottled) as refused:
        throttle.check("rita", "10.0.0.2")  # the name is locked from any address
    assert refused.value.retry_after_s == 1
    clock.advance(1)
    throttle.check("rita", "10.0.0.1")
    throttle.check("sam", "10.0.0.1")  # another name was never locked


def test_the_lockout_doubles_and_is_capped() -> None:
    clock = ManualClock()
    throttle = LoginThrottle(free_per_name=5, free_per_address=100, clock=clock)
    _fail(throttle, 5)
    waits = []
    for _ in range(10):
        _fail(throttle, 1)
        with pytest.raises(LoginThrottled) as refused:
            throttle.check("rita", "x")
        waits.append(refused.value.retry_after_s)
        clock.advance(refused.value.retry_after_s)
    assert waits[:4] == [30, 60, 120, 240]
    assert max(waits) == LOGIN_LOCKOUT_MAX_S == waits[-1]


def test_an_address_is_locked_across_names() -> None:
    clock = ManualClock()
    throttle = LoginThrottle(free_per_name=5, free_per_address=3, clock=clock)
    for i in range(4):
        throttle.record_failure(f"name-{i}", "10.0.0.9")
    with pytest.raises(LoginThrottled):
        throttle.check("someone-else", "10.0.0.9")
    throttle.check("someone-else", "10.0.0.8")


def test_success_clears_the_name_and_old_failures_are_forgotten() -> None:
    clock = ManualClock()
    throttle = LoginThrottle(free_per_name=5, free_per_address=100, clock=clock)
    _fail(throttle, 5)
    throttle.record_success("rita")
    _fail(throttle, 5)
    throttle.check("rita", "10.0.0.1")
    clock.advance(25 * 3600)
    _fail(throttle, 1)
    throttle.check("rita", "10.0.0.1")  # the earlier failures are a day old


def test_the_password_pool_refuses_beyond_its_capacity() -> None:
    pool = PasswordWorkPool(workers=2, queue=1)
    release = threading.Event()
    started = threading.Semaphore(0)
    outcomes: list[str] = []

    def work() -> str:
        started.release()
        release.wait(timeout=30)
        return "done"

    async def attempt() -> None:
        try:
            outcomes.append(await pool.run(work))
        except LoginBusy as exc:
            assert exc.http_status == 503 and exc.code == "login_busy"
            outcomes.append("busy")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(attempt)
            for _ in range(2):  # two workers are running; the third waits
                await anyio.to_thread.run_sync(started.acquire)
            await attempt()  # the fourth finds no place
            assert outcomes == ["busy"]
            release.set()
        assert sorted(outcomes) == ["busy", "done", "done", "done"]
        assert await pool.run(lambda: "again") == "again"

    # A thread of its own: another test in this worker process (the browser tests' sync
    # Playwright) may have left an event loop running in the main thread.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            anyio.run(main)
        except BaseException as exc:  # re-raised in the test's thread below
            errors.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    runner.join(60)
    assert not runner.is_alive()
    if errors:
        raise errors[0]
