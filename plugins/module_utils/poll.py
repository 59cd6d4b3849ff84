# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one place where cloudexec.core waits: deadlines, back-off with jitter, throttling retries.

Every module and plugin that polls a result (Cloud Assistant invocations, an agent coming up, a
session becoming ready) or retries a throttled call goes through Poller, so the behaviour is the
same everywhere and is tested once, with a fake clock. How each kind of wait backs off is a named
WaitPolicy below: a caller picks a policy, never figures, so changing a figure here changes every
wait of that kind.
"""

from __future__ import annotations

import random
import time
import typing as t
from dataclasses import dataclass, replace

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, DeadlineExceeded

T = t.TypeVar('T')


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off: initial * factor**attempt, capped, minus up to `jitter` of itself.

    Jitter only ever shortens a delay (a delay lies in [d * (1 - jitter), d]) so the cap is a true
    upper bound, while many hosts polling the same API still spread out instead of moving in step.
    """

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 10.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.cap < self.initial or not 0 <= self.jitter < 1:
            raise ValueError(f'Invalid back-off settings: {self!r}')

    def ceiling(self, attempt: int) -> float:
        """The delay before jitter for the attempt-th wait (0-based)."""
        # Bound the exponent so a long poll never builds a huge float; the cap wins long before.
        return min(self.cap, self.initial * self.factor ** min(attempt, 64))

    def delay(self, attempt: int, rand: float) -> float:
        """The delay for the attempt-th wait, given a random number in [0, 1)."""
        ceiling = self.ceiling(attempt)
        return ceiling - ceiling * self.jitter * rand


@dataclass(frozen=True)
class WaitPolicy:
    """How one kind of wait backs off between probes, and how many retryable errors in a row it accepts."""

    name: str
    backoff: Backoff
    max_retries: int = 10

    def tuned(self, *, initial: float | None = None, cap: float | None = None) -> WaitPolicy:
        """The same policy with a user's own first delay or longest delay (connection options)."""
        initial = self.backoff.initial if initial is None else initial
        cap = max(self.backoff.cap if cap is None else cap, initial)
        return replace(self, backoff=replace(self.backoff, initial=initial, cap=cap))


# Every kind of wait in the collection. Why each has its figures:
# A throttled or failing API call (5xx, resets): AWS's and Alibaba's own SDK back-off, half a second doubling.
API_RETRY = WaitPolicy('api-retry', Backoff(initial=0.5, factor=2.0, cap=10.0))
# Alibaba Cloud keeps refusing a throttled API for the rest of the minute (per account and API): wait longer between
# tries of an ECI call, give up after 8.
ECI_API = WaitPolicy('eci-api', Backoff(initial=1.0, factor=2.0, cap=8.0), max_retries=8)
# ExecuteCommand's TargetNotConnectedException while the agent starts, or until a session worker frees: it is
# only retryable because the agent is expected to come; the deadline (not a count) bounds it.
ECS_EXEC_AGENT = WaitPolicy('ecs-exec-agent', Backoff(initial=1.0, factor=1.5, cap=4.0), max_retries=1000)
# SSM ResumeSession after a lost websocket: AWS's session-manager-plugin waits 100-200 ms, doubling to 5 s,
# for 5 retries (sessionhandler.go / retryer.go).
SSM_RESUME = WaitPolicy('ssm-resume', Backoff(initial=0.2, factor=2.0, cap=5.0, jitter=0.5), max_retries=5)
# Cloud Assistant invocations of the module (many instances), and its calls retried when throttled: quick first
# checks, then the agent's ~3-5 s rhythm (it reports every few seconds, and Alibaba's own tools poll every 3 to 5 s).
CLOUD_ASSISTANT_INVOCATIONS = WaitPolicy('cloud-assistant-invocations', Backoff(initial=0.5, factor=1.5, cap=5.0, jitter=0.2))
# SSM Run Command invocations (aws_ssm_command): the agent reports a plugin's end at once, but the service shows new
# invocations only after a moment (eventual consistency), so the first look is early; then up to 5 s, as the AWS CLI's
# command_executed waiter polls (every 5 s).
SSM_COMMAND = WaitPolicy('ssm-command', Backoff(initial=0.5, factor=1.5, cap=5.0, jitter=0.2))
# One ali_assist command: most are short, so the first check is early; the connection's poll_initial and poll_max
# options tune the first and longest delays (WaitPolicy.tuned).
CLOUD_ASSISTANT_COMMAND = WaitPolicy('cloud-assistant-command', Backoff(initial=0.2, factor=1.6, cap=2.0, jitter=0.2))


@dataclass(frozen=True)
class PollStep(t.Generic[T]):
    """What a probe saw: finished or not, the state it read, and whether things moved on."""

    done: bool
    value: T | None = None
    progressed: bool = False


def done(value: t.Any = None) -> PollStep:
    """The probe's answer when the wait is over."""
    return PollStep(True, value)


def pending(value: t.Any = None, progressed: bool = False) -> PollStep:
    """The probe's answer when it must be asked again; progressed=True resets the back-off."""
    return PollStep(False, value, progressed)


@dataclass(frozen=True)
class PollEvent:
    """Passed to the progress hook after every probe and every retried error."""

    attempt: int
    elapsed: float
    value: t.Any
    next_delay: float | None
    error: CloudExecError | None = None


class Poller:
    """Waits for a probe to report done, or retries a call, within one deadline.

    - `timeout` seconds from the first call of wait()/call() is the deadline; the last sleep is cut
      short to end on it, and DeadlineExceeded carries the last value seen.
    - Retryable CloudExecErrors (throttling, 5xx) back off and try again, at most `max_retries`
      times in a row (or the error's own, smaller `retry_limit`); any other error goes straight to
      the caller.
    - clock, sleep and rand are injectable so tests run on a fake clock.
    """

    def __init__(
        self,
        timeout: float,
        *,
        policy: WaitPolicy = API_RETRY,
        what: str = 'the operation',
        on_progress: t.Callable[[PollEvent], None] | None = None,
        clock: t.Callable[[], float] = time.monotonic,
        sleep: t.Callable[[float], None] = time.sleep,
        rand: t.Callable[[], float] = random.random,
    ) -> None:
        if timeout <= 0:
            raise ValueError('timeout must be positive')
        self.timeout = timeout
        self.policy = policy
        self.backoff = policy.backoff
        self.max_retries = policy.max_retries
        self.what = what
        self.on_progress = on_progress
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self.probes = 0
        self.retried_errors = 0

    def wait(self, probe: t.Callable[[], PollStep]) -> t.Any:
        """Call probe until it reports done; return its value."""
        start = self._clock()
        deadline = start + self.timeout
        attempt = 0
        errors_in_row = 0
        last: t.Any = None
        while True:
            error: CloudExecError | None = None
            try:
                self.probes += 1
                step = probe()
            except CloudExecError as exc:
                if not exc.retryable:
                    raise
                errors_in_row += 1
                self.retried_errors += 1
                limit = self.max_retries if exc.retry_limit is None else min(self.max_retries, exc.retry_limit)
                if errors_in_row > limit:
                    raise
                error = exc
            else:
                errors_in_row = 0
                last = step.value
                if step.done:
                    return step.value
                if step.progressed:
                    attempt = 0

            now = self._clock()
            remaining = deadline - now
            delay = None if remaining <= 0 else min(self.backoff.delay(attempt, self._rand()), remaining)
            if self.on_progress is not None:
                self.on_progress(PollEvent(attempt=attempt, elapsed=now - start, value=last, next_delay=delay, error=error))
            if delay is None:
                message = f'Gave up waiting for {self.what} after {self.timeout:g} seconds'
                remedy = 'Raise the timeout if the work needs longer, or check why it does not finish'
                if error is not None:
                    # The last error is the real reason: name it whole, with its own remedy.
                    message += f'; last error: {error.code}: {error.message}'
                    remedy = error.remedy or remedy
                raise DeadlineExceeded(message, last=last, remedy=remedy) from error
            self._sleep(delay)
            attempt += 1

    def call(self, func: t.Callable[[], T]) -> T:
        """Call func once, retrying only throttling/transient errors within the deadline."""
        return self.wait(lambda: done(func()))
