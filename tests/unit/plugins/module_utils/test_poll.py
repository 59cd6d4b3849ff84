# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, DeadlineExceeded
from ansible_collections.cloudexec.core.plugins.module_utils.poll import (
    API_RETRY, CLOUD_ASSISTANT_COMMAND, Backoff, Poller, WaitPolicy, done, pending,
)


class FakeClock:
    """A clock that only moves when the poller sleeps (or a probe says time passed)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, 'the poller must never sleep zero or negative time (a busy loop)'
        self.sleeps.append(seconds)
        self.now += seconds


def make_poller(clock: FakeClock, timeout: float = 30.0, rand: float = 0.0, backoff: Backoff | None = None, max_retries: int = 10,
                **kwargs) -> Poller:
    policy = WaitPolicy('test', backoff or Backoff(), max_retries)
    return Poller(timeout, policy=policy, clock=clock, sleep=clock.sleep, rand=lambda: rand, **kwargs)


def throttled() -> CloudExecError:
    return CloudExecError('Rate exceeded', code='Throttling.User', provider='alicloud', status=400)


def test_returns_value_without_sleeping_when_first_probe_is_done():
    clock = FakeClock()
    assert make_poller(clock).wait(lambda: done('ok')) == 'ok'
    assert clock.sleeps == []


def test_backoff_grows_exponentially_to_the_cap():
    clock = FakeClock()
    answers = iter([pending()] * 7 + [done(7)])
    poller = make_poller(clock, timeout=100, backoff=Backoff(initial=0.5, factor=2.0, cap=4.0, jitter=0.25))
    assert poller.wait(lambda: next(answers)) == 7
    # rand=0 means no jitter taken off: the ceilings themselves.
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert poller.probes == 8


@pytest.mark.parametrize('rand', [0.0, 0.5, 0.999999])
def test_jitter_stays_within_bounds(rand):
    backoff = Backoff(initial=1.0, factor=3.0, cap=20.0, jitter=0.4)
    for attempt in range(6):
        ceiling = min(20.0, 3.0 ** attempt)
        delay = backoff.delay(attempt, rand)
        assert ceiling * 0.6 <= delay <= ceiling
    assert backoff.delay(2, 0.5) == pytest.approx(9.0 * 0.8)


def test_progress_resets_backoff():
    clock = FakeClock()
    answers = iter([pending(), pending(), pending(progressed=True), pending(), done()])
    make_poller(clock, backoff=Backoff(initial=1.0, factor=2.0, cap=10.0)).wait(lambda: next(answers))
    assert clock.sleeps == [1.0, 2.0, 1.0, 2.0]


def test_deadline_cuts_last_sleep_and_reports_last_value():
    clock = FakeClock()
    calls = []

    def probe():
        calls.append(clock.now)
        return pending({'status': 'Running', 'n': len(calls)})

    poller = make_poller(clock, timeout=10, backoff=Backoff(initial=1.0, factor=2.0, cap=8.0), what='invocation t-1')
    with pytest.raises(DeadlineExceeded) as info:
        poller.wait(probe)
    # 1 + 2 + 4 = 7 s, then only 3 s remain of the 8 s step, then the deadline.
    assert clock.sleeps == [1.0, 2.0, 4.0, 3.0]
    assert clock.now == 1010.0
    assert info.value.last == {'status': 'Running', 'n': 5}
    assert 'invocation t-1' in str(info.value) and '10 seconds' in str(info.value)
    assert info.value.code == 'DeadlineExceeded'


def test_throttling_is_retried_with_backoff_then_succeeds():
    clock = FakeClock()
    answers = iter([throttled(), throttled(), done('finished')])

    def probe():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    events = []
    poller = make_poller(clock, backoff=Backoff(initial=0.5, factor=2.0, cap=10.0), on_progress=events.append)
    assert poller.wait(probe) == 'finished'
    assert clock.sleeps == [0.5, 1.0]
    assert poller.retried_errors == 2
    assert [e.error.code for e in events] == ['Throttling.User', 'Throttling.User']


def test_gives_up_after_max_retries_in_a_row():
    clock = FakeClock()
    count = 0

    def probe():
        nonlocal count
        count += 1
        raise throttled()

    with pytest.raises(CloudExecError) as info:
        make_poller(clock, timeout=1000, max_retries=3).wait(probe)
    assert info.value.code == 'Throttling.User'
    assert count == 4  # the first try and three retries


def test_non_retryable_error_is_raised_at_once():
    clock = FakeClock()

    def probe():
        raise CloudExecError('no such instance', code='InvalidInstance.NotFound', provider='alicloud', status=404)

    with pytest.raises(CloudExecError) as info:
        make_poller(clock).wait(probe)
    assert info.value.code == 'InvalidInstance.NotFound'
    assert clock.sleeps == []


def test_server_errors_count_as_retryable():
    assert CloudExecError('boom', code='Whatever', status=503).retryable
    assert CloudExecError('slow', code='ThrottlingException', status=400).throttling
    assert not CloudExecError('bad', code='InvalidParameter', status=400).retryable


def test_progress_hook_sees_every_pending_probe():
    clock = FakeClock()
    answers = iter([pending('a'), pending('b'), done('c')])
    events = []
    make_poller(clock, on_progress=events.append).wait(lambda: next(answers))
    assert [e.value for e in events] == ['a', 'b']
    assert [e.attempt for e in events] == [0, 1]
    assert events[1].elapsed == pytest.approx(0.5)


def test_call_retries_a_throttled_call_until_deadline():
    clock = FakeClock()

    def always_throttled():
        raise throttled()

    with pytest.raises(DeadlineExceeded) as info:
        make_poller(clock, timeout=5, max_retries=100).call(always_throttled)
    assert 'last error: Throttling.User' in str(info.value)
    assert sum(clock.sleeps) == pytest.approx(5.0)


def test_an_errors_own_retry_limit_caps_the_pollers():
    """A refused connection says "retry me twice": it is not retried for the caller's whole budget."""
    clock = FakeClock()
    count = 0

    def probe():
        nonlocal count
        count += 1
        raise CloudExecError('cannot connect', code='Connection.Refused', provider='alicloud', retryable=True, retry_limit=2)

    with pytest.raises(CloudExecError) as info:
        make_poller(clock, timeout=60, max_retries=10, backoff=Backoff(initial=0.5, factor=1.5, cap=5.0)).wait(probe)
    assert info.value.code == 'Connection.Refused'
    assert count == 3 and clock.sleeps == [0.5, 0.75]


def test_giving_up_names_the_last_error_and_its_remedy():
    clock = FakeClock()

    def reset():
        raise CloudExecError('the connection to https://ecs.example:443 failed (Connection reset by peer)', code='Connection.Error',
                             provider='alicloud', retryable=True, remedy='Check the network')

    with pytest.raises(DeadlineExceeded) as info:
        make_poller(clock, timeout=5, max_retries=100, what='the RunCommand API call').call(reset)
    text = str(info.value)
    assert text.startswith('DeadlineExceeded: Gave up waiting for the RunCommand API call after 5 seconds; last error: '
                           'Connection.Error: the connection to https://ecs.example:443 failed (Connection reset by peer)')
    assert info.value.remedy == 'Check the network'


@pytest.mark.parametrize('kwargs', [{'initial': 0}, {'factor': 0.5}, {'cap': 0.1, 'initial': 1}, {'jitter': 1.0}])
def test_invalid_backoff_is_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_the_default_policy_is_the_api_retry_one():
    poller = Poller(10)
    assert poller.policy is API_RETRY and poller.max_retries == 10


def test_a_tuned_policy_keeps_its_factor_and_never_caps_below_its_first_delay():
    tuned = CLOUD_ASSISTANT_COMMAND.tuned(initial=3.0, cap=1.0)
    assert (tuned.backoff.initial, tuned.backoff.cap, tuned.backoff.factor) == (3.0, 3.0, CLOUD_ASSISTANT_COMMAND.backoff.factor)
    assert CLOUD_ASSISTANT_COMMAND.tuned().backoff == CLOUD_ASSISTANT_COMMAND.backoff
