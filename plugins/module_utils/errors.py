# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one error type every cloudexec.core module and plugin raises and reports.

Each cloud's client code (aws.py, alicloud.py) turns its SDK's exceptions into a CloudExecError,
so modules, connection plugins and the poller handle one shape: a provider, the provider's own
error code, what went wrong, and what the user should do about it.
"""

from __future__ import annotations

import typing as t

# Error codes that mean "slow down and try again" on either cloud. The poller retries these.
THROTTLING_CODES = frozenset((
    # AWS (botocore's own standard-mode list, plus the ones ECS and SSM send)
    'Throttling', 'ThrottlingException', 'ThrottledException', 'RequestThrottledException',
    'TooManyRequestsException', 'ProvisionedThroughputExceededException', 'TransactionInProgressException',
    'RequestLimitExceeded', 'BandwidthLimitExceeded', 'LimitExceededException', 'RequestThrottled',
    'SlowDown', 'PriorRequestNotComplete', 'EC2ThrottledException',
    # Alibaba Cloud
    'Throttling.User', 'Throttling.Api', 'Throttling.Resource', 'Rejected.Throttling', 'ServiceUnavailable',
    'Throttling.Concurrent',
))

# Codes that mean the service had a transient problem: retried like throttling.
TRANSIENT_CODES = frozenset((
    'InternalError', 'InternalFailure', 'ServiceUnavailable', 'ServiceUnavailableException',
    'ServerException', 'InternalServerError', 'RequestTimeout', 'RequestTimeoutException',
    'UnknownError', 'Connection.Error',
))


class CloudExecError(Exception):
    """An error from a cloud API or from our own validation, with a remedy for the user."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        provider: str | None = None,
        remedy: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        retry_limit: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.provider = provider
        self.remedy = remedy
        self.status = status
        self.request_id = request_id
        if retryable is None:
            retryable = is_retryable_code(code, status)
        self.retryable = retryable
        # At most this many retries in a row for this kind of error, whatever the caller's own limit
        # (a refused connection is retried twice, not for a minute); None: the caller's limit.
        self.retry_limit = retry_limit

    @property
    def throttling(self) -> bool:
        """True when the service asked us to slow down."""
        return self.code in THROTTLING_CODES

    def __str__(self) -> str:
        parts = []
        if self.code:
            parts.append(f'{self.code}: ')
        parts.append(self.message.rstrip('.') + '.')
        if self.remedy:
            parts.append(' ' + self.remedy.rstrip('.') + '.')
        if self.request_id:
            parts.append(f' (request id {self.request_id})')
        return ''.join(parts)

    def to_result(self) -> dict[str, t.Any]:
        """The fields a module puts into its failure result (no secrets ever live here)."""
        return {
            'error': {
                'provider': self.provider,
                'code': self.code,
                'message': self.message,
                'remedy': self.remedy,
                'status': self.status,
                'request_id': self.request_id,
            }
        }


class ValidationError(CloudExecError):
    """Bad input found before any API call: names the parameter and the limit."""

    def __init__(self, parameter: str, problem: str, *, remedy: str | None = None) -> None:
        super().__init__(f'Invalid value for {parameter}: {problem}', code='InvalidParameter', provider='cloudexec',
                         remedy=remedy, retryable=False)
        self.parameter = parameter


class DeadlineExceeded(CloudExecError):
    """A wait ran out of time; carries the last state seen so callers can report it."""

    def __init__(self, message: str, *, last: t.Any = None, remedy: str | None = None) -> None:
        super().__init__(message, code='DeadlineExceeded', provider='cloudexec', remedy=remedy, retryable=False)
        self.last = last


class SessionClosed(CloudExecError):
    """An exec session ended by itself: its shell exited, or the service ended it. Output before it was delivered.

    One type for every transport (the SSM data channel's channel_closed, the end of an ECI exec stream).
    input_acknowledged is False when the transport knows that nothing of the last command reached the target.
    """

    def __init__(self, message: str, *, provider: str | None = None, remedy: str | None = None, output: str = '',
                 exit_code: int | None = None, input_acknowledged: bool | None = None) -> None:
        super().__init__(message, code='SessionClosed', provider=provider, remedy=remedy, retryable=False)
        self.output = output
        self.exit_code = exit_code
        self.input_acknowledged = input_acknowledged


class RemoteFileNotFound(CloudExecError):
    """The file to fetch does not exist on the target, or cannot be read there (every transport raises this one)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code='FileNotFound', provider='cloudexec', retryable=False)

    @classmethod
    def of(cls, path: str, where: str) -> RemoteFileNotFound:
        """The error for path on where."""
        return cls(f'{path} does not exist or is not a readable file on {where}')


class CommandAbandoned(CloudExecError):
    """The caller of a running command went away (or asked to stop): the command must be ended, not waited for."""

    def __init__(self, reason: str, started: bool) -> None:
        super().__init__(f'the command was abandoned: {reason}', code='CommandAbandoned', provider='cloudexec', retryable=False)
        self.reason = reason
        self.started = started


def is_retryable_code(code: str | None, status: int | None = None) -> bool:
    """Whether an error code (or a bare 5xx / 429 status) is worth retrying later."""
    if code in THROTTLING_CODES or code in TRANSIENT_CODES:
        return True
    return status is not None and (status == 429 or status >= 500)
