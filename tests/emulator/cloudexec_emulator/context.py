# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared state of a running emulator, the per-call context handlers get, and action tables.

Each product module (aws_ecs, ali_ecs, ali_eci) owns an :class:`ActionTable`; later features add
actions to it with the ``register`` decorator without touching the server::

    from .ali_eci import ACTIONS

    @ACTIONS.register('ExecContainerCommand')
    async def exec_container_command(ctx: CallContext) -> dict: ...
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from .alisign import NonceCache
from .errors import ApiError
from .faults import FaultSet
from .sandbox import SandboxRunner
from .stats import CallStats
from .world import AliCredential, AwsCredential, World


@dataclass
class EmulatorState:
    """Everything one emulator process holds; stored on the aiohttp app as ``app[STATE_KEY]``."""
    world: World
    state_dir: Path
    faults: FaultSet = field(default_factory=FaultSet)
    stats: CallStats = field(default_factory=CallStats)
    runner: SandboxRunner = field(default_factory=SandboxRunner)
    nonces: NonceCache = field(default_factory=NonceCache)
    # Filled in once the server listens, e.g. "http://127.0.0.1:40123"; handlers that hand out
    # URLs (websocket exec endpoints) build them from it.
    base_url: str = ''
    # Room for later features (exec sessions, invocations...) to keep their own state.
    extensions: dict[str, Any] = field(default_factory=dict)


STATE_KEY: web.AppKey[EmulatorState] = web.AppKey('cloudexec_emulator_state', EmulatorState)


@dataclass
class CallContext:
    """One authenticated API call, as handed to an action handler."""
    state: EmulatorState
    request: web.Request
    service: str
    action: str
    params: dict[str, Any]
    request_id: str
    credential: AwsCredential | AliCredential
    # The region the call is for: SigV4's signed region on AWS, the RegionId parameter on Alibaba.
    region: str | None = None

    @property
    def world(self) -> World:
        return self.state.world

    def param(self, name: str, default: Any = None) -> Any:
        value = self.params.get(name)
        return default if value is None or value == '' else value

    def require(self, name: str) -> Any:
        value = self.params.get(name)
        if value is None or value == '':
            raise self.missing(name)
        return value

    def missing(self, name: str) -> ApiError:
        if self.service.startswith('aws'):
            return ApiError('InvalidParameterException', f'{name} is required.', 400)
        return ApiError(f'Missing{name}', f'{name} is mandatory for this action.', 400)


Handler = Callable[[CallContext], Awaitable[dict[str, Any]]]


class ActionTable(dict[str, Handler]):
    """action name -> coroutine returning the response body (without RequestId)."""

    def register(self, name: str) -> Callable[[Handler], Handler]:
        def decorate(func: Handler) -> Handler:
            if name in self:
                raise ValueError(f'action {name} registered twice')
            self[name] = func
            return func
        return decorate
