# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault injection: throttling, server errors, latency, and websocket degradation.

Rules come from the world file (``faults:``) and the admin API. A rule matches a service
(``aws-ecs``, ``aws-ssm``, ``aws-kms``, ``aws-ec2``, ``aws-sts``, ``aws-iam``, ``ali-ecs``, ``ali-eci``, ``ws`` or ``*``)
and an action (or ``*``) and carries one effect. Counted effects (``throttle: N``, ``server_error: N``) are consumed by the first N matching
calls, then the rule is spent; ``latency_ms`` applies to every matching call. Websocket code asks
:meth:`FaultSet.ws_policy` once per connection for ``message_latency_ms``, ``drop_after_bytes``, ``lose_ack``,
``duplicate_output`` and ``reorder_output`` (ECI exec, which has no acknowledgements or sequence numbers, uses only
the latency and the drop, for service ``ali-eci``).
"""
from __future__ import annotations

import asyncio
import itertools
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ApiError

# Service names as the counters know them: AWS JSON products, the query-protocol ones (aws_query.py), Alibaba's,
# and ``ws`` for data channels (ECS Exec's with action ExecuteCommand, SSM sessions' with action StartSession).
SERVICES = ('aws-ecs', 'aws-ssm', 'aws-kms', 'aws-ec2', 'aws-sts', 'aws-iam', 'ali-ecs', 'ali-eci', 'ws', '*')
_EFFECTS = ('throttle', 'server_error', 'latency_ms', 'message_latency_ms', 'drop_after_bytes', 'lose_ack', 'duplicate_output',
            'reorder_output')
# Effects that are switches rather than counts.
_BOOL_EFFECTS = ('duplicate_output', 'reorder_output')


class FaultError(ValueError):
    """A fault rule that cannot be understood."""


@dataclass
class FaultRule:
    rule_id: int
    service: str = '*'
    action: str = '*'
    throttle: int = 0
    server_error: int = 0
    # Status of injected server errors: 500 (InternalError/ServerException) or 503 (ServiceUnavailable).
    status: int = 500
    latency_ms: int = 0
    message_latency_ms: int = 0
    drop_after_bytes: int | None = None
    # Per websocket connection: the agent skips its first N acknowledgements.
    lose_ack: int = 0
    duplicate_output: bool = False
    reorder_output: bool = False

    def matches(self, service: str, action: str) -> bool:
        return self.service in ('*', service) and self.action in ('*', action)

    @property
    def spent(self) -> bool:
        """A counted rule with nothing left and no lasting effect can be forgotten."""
        lasting = (self.latency_ms or self.message_latency_ms or self.drop_after_bytes is not None or self.lose_ack
                   or self.duplicate_output or self.reorder_output)
        return not lasting and self.throttle <= 0 and self.server_error <= 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data['id'] = data.pop('rule_id')
        return data


@dataclass(frozen=True)
class WsPolicy:
    """What a websocket connection should suffer: delay per message, a drop after this many output bytes,
    lost acknowledgements, duplicated or reordered output messages."""
    message_latency_ms: int = 0
    drop_after_bytes: int | None = None
    lose_ack: int = 0
    duplicate_output: bool = False
    reorder_output: bool = False


# The answers the real services give when they throttle or fail. EC2 has codes of its own (EC2 API reference,
# "Error codes for the Amazon EC2 API": RequestLimitExceeded, InternalError, Unavailable).
def throttling_error(service: str) -> ApiError:
    if service == 'aws-ec2':
        return ApiError('RequestLimitExceeded', 'Request limit exceeded.', 503)
    if service.startswith('aws'):
        return ApiError('ThrottlingException', 'Rate exceeded', 400)
    return ApiError('Throttling.User', 'Request was denied due to user flow control.', 400)


def server_error(service: str, status: int) -> ApiError:
    if service == 'aws-ec2':
        if status == 503:
            return ApiError('Unavailable', 'The server is overloaded and can\'t handle the request.', 503)
        return ApiError('InternalError', 'An internal error has occurred.', status)
    if service.startswith('aws'):
        if status == 503:
            return ApiError('ServiceUnavailableException', 'Service is unavailable. Try again later.', 503)
        return ApiError('ServerException', 'An internal error occurred while processing the request.', status)
    if status == 503:
        return ApiError('ServiceUnavailable', 'The request has failed due to a temporary failure of the server.', 503)
    return ApiError('InternalError', 'The request processing has failed due to some unknown error, exception or failure.', status)


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FaultError(f'{name} must be a non-negative integer, got {value!r}')
    return value


class FaultSet:
    """The active rules. Not thread-safe: it lives on the server's event loop."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> FaultRule:
        if not isinstance(spec, dict):
            raise FaultError('a fault rule must be a mapping')
        unknown = set(spec) - {'service', 'action', 'status', *_EFFECTS}
        if unknown:
            raise FaultError(f'unknown fault key(s): {", ".join(sorted(unknown))}')
        service = str(spec.get('service', '*'))
        if service not in SERVICES:
            raise FaultError(f'service must be one of {", ".join(SERVICES)}, got {service!r}')
        effects = [e for e in _EFFECTS if spec.get(e) is not None]
        if len(effects) != 1:
            raise FaultError(f'a fault rule needs exactly one of {", ".join(_EFFECTS)}')
        status = _non_negative_int(spec.get('status', 500), 'status')
        if status not in (500, 502, 503, 504):
            raise FaultError('status must be 500, 502, 503 or 504')
        rule = FaultRule(rule_id=next(self._ids), service=service, action=str(spec.get('action', '*')), status=status)
        effect = effects[0]
        if effect in _BOOL_EFFECTS:
            if not isinstance(spec[effect], bool):
                raise FaultError(f'{effect} must be true or false, got {spec[effect]!r}')
            setattr(rule, effect, spec[effect])
        else:
            setattr(rule, effect, _non_negative_int(spec[effect], effect))
        self._rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        before = len(self._rules)
        self._rules = [r for r in self._rules if r.rule_id != rule_id]
        return len(self._rules) != before

    def clear(self) -> None:
        self._rules.clear()

    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    def take_error(self, service: str, action: str) -> ApiError | None:
        """Consume one throttle or server-error charge for this call, oldest rule first."""
        for rule in self._rules:
            if not rule.matches(service, action):
                continue
            if rule.throttle > 0:
                rule.throttle -= 1
                return throttling_error(service)
            if rule.server_error > 0:
                rule.server_error -= 1
                return server_error(service, rule.status)
        self._rules = [r for r in self._rules if not r.spent]
        return None

    def latency_ms(self, service: str, action: str) -> int:
        return sum(r.latency_ms for r in self._rules if r.matches(service, action))

    async def apply(self, service: str, action: str) -> None:
        """Run the call's faults: wait the added latency, then raise an injected error if one is due."""
        delay = self.latency_ms(service, action)
        if delay:
            await asyncio.sleep(delay / 1000)
        err = self.take_error(service, action)
        if err is not None:
            raise err

    def ws_policy(self, service: str = 'ws', action: str = '*') -> WsPolicy:
        """The websocket policy for a new connection (rules for ``ws`` or ``*``, and the given service)."""
        latency = lose_ack = 0
        drop: int | None = None
        duplicate = reorder = False
        for rule in self._rules:
            if rule.service in ('*', 'ws', service) and rule.action in ('*', action):
                latency += rule.message_latency_ms
                lose_ack += rule.lose_ack
                duplicate = duplicate or rule.duplicate_output
                reorder = reorder or rule.reorder_output
                if rule.drop_after_bytes is not None:
                    drop = rule.drop_after_bytes if drop is None else min(drop, rule.drop_after_bytes)
        return WsPolicy(message_latency_ms=latency, drop_after_bytes=drop, lose_ack=lose_ack, duplicate_output=duplicate,
                        reorder_output=reorder)
