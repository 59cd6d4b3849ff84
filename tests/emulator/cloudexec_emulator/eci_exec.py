# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alibaba ECI ``ExecContainerCommand`` (2018-08-08) and the websocket behind its ``WebSocketUri``.

The API: RegionId, ContainerGroupId, ContainerName, Command (a JSON argv, at most 20 items of at most
256 characters), TTY, Stdin (default true), Sync (default false).

- ``Sync=true`` runs the argv (no shell) in the container's sandbox and answers ``SyncResponse``: stdout
  and stderr merged in arrival order, no exit code, the HTTP answer held until the command ends. It
  refuses ``TTY=true`` and an interactive shell (a lone ``sh``/``bash``... without ``-c``).
- Otherwise it answers ``WebSocketUri`` (``ws://HOST:PORT/eci-exec/<id>?token=...``: one connection,
  within ``alicloud.exec.token_ttl_seconds``) and ``HttpUrl`` (the console terminal; a URL only, not served).

The websocket speaks the Kubernetes ``channel.k8s.io`` framing, which is what the one public client of
this endpoint (eci-as-sandbox) speaks: every binary message starts with a channel byte. Client to
server: 0 stdin, 4 resize (``{"Width": W, "Height": H}``, honoured with a TTY), 255 close (payload: the
channel to close; ``b'\\x00'`` closes stdin, as in ``v5.channel.k8s.io``). Server to client: 1 stdout,
2 stderr (a PTY has only stdout), then one 3 (status) message with a ``metav1.Status`` JSON, then a
normal close. An empty stdin message is not an end of input (v4 has none); text messages are ignored.

A client that goes away (it closes the socket, or the connection drops) does not end the command: its
stdin reaches end of file and it runs on, as with a kubelet (kubernetes
staging/src/k8s.io/kubelet/pkg/cri/streaming/remotecommand/websocket.go: the stream copies end, nothing
signals the process) and containerd, which waits for an exec process to exit by itself. Only the
emulator's own shutdown kills what is left.

A refused connection (unknown, used or expired token) gets HTTP 403 before the upgrade, so clients
see a failed handshake rather than a socket that opens and closes.

Fault rules for ``ws``/``ali-eci`` (action ``*`` or ``ExecContainerCommand``): ``message_latency_ms``
and ``drop_after_bytes`` (the connection is aborted, no status and no close frame).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os.path
import secrets
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .ali_eci import ACTIONS, SERVICE
from .context import STATE_KEY, CallContext, EmulatorState
from .errors import ApiError
from .faults import WsPolicy
from .sandbox import SandboxProcess
from .world import ContainerGroup, EciContainer, EciExecSettings

LOG = logging.getLogger(__name__)

ROUTE = '/eci-exec/{session_id}'
EXTENSION_KEY = 'ali-eci-exec'
CHANNELS_KEY = 'ali-eci-exec-channels'
# Counter service name in GET /_emulator/calls ("ws" section).
WS_SERVICE = 'ali-eci-exec'

MAX_COMMAND_ITEMS = 20
MAX_COMMAND_ITEM_LENGTH = 256
# Programs that are an interactive shell when run without -c (Sync refuses them).
SHELLS = frozenset({'sh', 'bash', 'ash', 'dash', 'zsh', 'ksh', 'mksh', 'busybox'})

# Channels of the Kubernetes exec protocol.
STDIN = 0
STDOUT = 1
STDERR = 2
STATUS = 3
RESIZE = 4
CLOSE = 255

CHUNK = 32 * 1024
# Exec processes whose client went away, still running (killed at emulator shutdown).
ORPHANS_KEY = 'ali-eci-exec-orphans'

PTY_ROWS = 24
PTY_COLS = 80
CLOSE_FLUSH_SECONDS = 2.0


@dataclass
class EciExecSession:
    session_id: str
    token: str
    group: ContainerGroup
    container: EciContainer
    argv: list[str]
    tty: bool
    stdin: bool
    issued_at: float = field(default_factory=time.monotonic)
    connected: bool = False


class TokenRefused(Exception):
    """The websocket's token is unknown, already used or expired."""


class EciExecRegistry:
    def __init__(self, settings: EciExecSettings) -> None:
        self.settings = settings
        self.sessions: dict[str, EciExecSession] = {}

    def issue(self, group: ContainerGroup, container: EciContainer, argv: list[str], tty: bool, stdin: bool) -> EciExecSession:
        now = time.monotonic()
        # Forget spent and expired sessions so a long test run does not grow the table forever.
        self.sessions = {k: s for k, s in self.sessions.items()
                         if not s.connected and now - s.issued_at <= self.settings.token_ttl_seconds}
        session = EciExecSession(session_id=secrets.token_hex(16), token=secrets.token_urlsafe(32), group=group,
                                 container=container, argv=argv, tty=tty, stdin=stdin)
        self.sessions[session.session_id] = session
        return session

    def claim(self, session_id: str, token: str) -> EciExecSession:
        session = self.sessions.get(session_id)
        if session is None or not secrets.compare_digest(session.token.encode(), token.encode()):
            raise TokenRefused('invalid token')
        if session.connected:
            raise TokenRefused('token already used')
        if time.monotonic() - session.issued_at > self.settings.token_ttl_seconds:
            raise TokenRefused('token expired')
        session.connected = True
        return session


def registry(state: EmulatorState) -> EciExecRegistry:
    reg = state.extensions.get(EXTENSION_KEY)
    if reg is None:
        reg = state.extensions[EXTENSION_KEY] = EciExecRegistry(state.world.alicloud.eci_exec)
    return reg


def _bool(ctx: CallContext, name: str, default: bool) -> bool:
    value = ctx.param(name)
    if value is None:
        return default
    text = str(value).lower()
    if text not in ('true', 'false'):
        raise ApiError('InvalidParameter', f'The specified parameter {name} is not valid.', 400)
    return text == 'true'


def _command(ctx: CallContext) -> list[str]:
    raw = ctx.require('Command')
    try:
        argv = json.loads(raw)
    except ValueError as exc:
        raise ApiError('InvalidParameter', 'The specified parameter Command is not valid: it must be a JSON array of strings.', 400) from exc
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ApiError('InvalidParameter', 'The specified parameter Command is not valid: it must be a JSON array of strings.', 400)
    if len(argv) > MAX_COMMAND_ITEMS:
        raise ApiError('InvalidParameter.ValueExceeded',
                       f'The parameter Command exceeds the limit: at most {MAX_COMMAND_ITEMS} commands are allowed.', 400)
    if any(len(a) > MAX_COMMAND_ITEM_LENGTH for a in argv):
        raise ApiError('InvalidParameter.ValueExceeded',
                       f'The parameter Command exceeds the limit: each command may hold at most {MAX_COMMAND_ITEM_LENGTH} characters.', 400)
    return argv


def _interactive_shell(argv: list[str]) -> bool:
    return os.path.basename(argv[0]) in SHELLS and '-c' not in argv[1:]


def _target(ctx: CallContext) -> tuple[ContainerGroup, EciContainer]:
    region = str(ctx.require('RegionId'))
    group_id = str(ctx.require('ContainerGroupId'))
    name = str(ctx.require('ContainerName'))
    group = ctx.world.alicloud.container_group(group_id)
    if group is None or group.region != region:
        raise ApiError('InvalidContainerGroup.NotFound', f'The specified ContainerGroupId {group_id} is not found.', 404)
    if group.status != 'Running':
        raise ApiError('IncorrectStatus', f'The current status of ContainerGroup:{group_id} does not support this operation.', 403)
    container = group.container(name)
    if container is None:
        raise ApiError('InvalidContainerName.NotFound', f'The specified ContainerName {name} is not found in {group_id}.', 404)
    if container.state != 'Running':
        raise ApiError('IncorrectStatus', f'The current status of ContainerName:{name} does not support this operation.', 403)
    return group, container


@ACTIONS.register('ExecContainerCommand')
async def exec_container_command(ctx: CallContext) -> dict[str, Any]:
    # Parameters are checked before the target, as the service validates a request before it looks anything up.
    argv = _command(ctx)
    tty = _bool(ctx, 'TTY', False)
    stdin = _bool(ctx, 'Stdin', True)
    sync = _bool(ctx, 'Sync', False)
    group, container = _target(ctx)
    if container.sandbox is None:
        raise ApiError('InternalError', 'The container has no sandbox.', 500)
    if sync:
        if tty:
            raise ApiError('InvalidParameter', 'The specified parameter TTY must be false when Sync is true.', 400)
        if _interactive_shell(argv):
            raise ApiError('InvalidParameter', 'An interactive shell cannot be run with Sync; use the WebSocketUri instead.', 400)
        settings = ctx.state.world.alicloud.eci_exec
        try:
            result = await ctx.state.runner.run(container.sandbox, argv, timeout=settings.sync_timeout_seconds)
        except OSError as exc:
            # exec failed (no such program): the runtime's message is what the caller reads.
            return {'SyncResponse': f'OCI runtime exec failed: exec: "{argv[0]}": {exc.strerror or exc}'}
        return {'SyncResponse': result.output.decode('utf-8', errors='replace')}
    session = registry(ctx.state).issue(group, container, argv, tty, stdin)
    base = ctx.state.base_url
    ws_base = 'ws' + base[len('http'):] if base.startswith('http') else base
    return {
        'WebSocketUri': f'{ws_base}/eci-exec/{session.session_id}?token={session.token}',
        'HttpUrl': f'{base}/eci-terminal/{session.session_id}?token={session.token}',
    }


def status_payload(exit_code: int, message: str = '') -> bytes:
    """The metav1.Status the Kubernetes exec protocol sends on channel 3 when the command ended."""
    if exit_code == 0:
        return json.dumps({'metadata': {}, 'status': 'Success'}).encode()
    return json.dumps({
        'metadata': {}, 'status': 'Failure',
        'message': message or f'command terminated with non-zero exit code: error executing command, exit status {exit_code}',
        'reason': 'NonZeroExitCode',
        'details': {'causes': [{'reason': 'ExitCode', 'message': str(exit_code)}]},
    }).encode()


def _start_failure(message: str) -> bytes:
    return json.dumps({'metadata': {}, 'status': 'Failure', 'message': message, 'reason': 'InternalError'}).encode()


class ExecChannel:
    """One connected exec websocket; :meth:`run` returns when it is over."""

    def __init__(self, state: EmulatorState, request: web.Request, ws: web.WebSocketResponse, session: EciExecSession,
                 policy: WsPolicy) -> None:
        self.state = state
        self.request = request
        self.ws = ws
        self.session = session
        self.policy = policy
        self.process: SandboxProcess | None = None
        self.output_bytes = 0
        self.dropped = False
        self.done = asyncio.Event()
        self.shutting_down = False
        self._queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    def _count(self, event: str, amount: int = 1) -> None:
        self.state.stats.count_ws(WS_SERVICE, event, amount)

    def _enqueue(self, frame: bytes | None) -> None:
        """Frames leave in order, each delayed by the latency fault; None asks the sender to close."""
        self._queue.put_nowait((time.monotonic() + self.policy.message_latency_ms / 1000, frame))

    async def _sender(self) -> None:
        while True:
            due, frame = await self._queue.get()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if frame is None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.close()
                self.done.set()
                return
            try:
                if not self.ws.closed:
                    await self.ws.send_bytes(frame)
                    self._count('frames_out')
                    self._count('bytes_out', len(frame))
            except (ConnectionError, RuntimeError):
                self.done.set()
                return

    def _output(self, channel: int, data: bytes) -> None:
        for start in range(0, len(data), CHUNK):
            piece = data[start:start + CHUNK]
            if self.policy.drop_after_bytes is not None and self.output_bytes + len(piece) > self.policy.drop_after_bytes:
                self._drop()
                return
            self.output_bytes += len(piece)
            self._enqueue(bytes([channel]) + piece)

    def _drop(self) -> None:
        if self.dropped:
            return
        self.dropped = True
        self._count('drops')
        if self.request.transport is not None:
            self.request.transport.abort()
        self.done.set()

    async def _reader(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.BINARY:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
                self._count('frames_ignored')
                continue
            self._count('frames_in')
            self._count('bytes_in', len(msg.data))
            data: bytes = msg.data
            if not data:
                self._count('frames_invalid')
                continue
            channel, payload = data[0], data[1:]
            process = self.process
            if channel == STDIN:
                if process is not None and self.session.stdin and payload:
                    process.write(payload)
            elif channel == RESIZE:
                self._resize(payload)
            elif channel == CLOSE:
                if process is not None and payload[:1] == bytes([STDIN]):
                    process.close_stdin()
            else:
                self._count('frames_invalid')
        self.done.set()

    def _resize(self, payload: bytes) -> None:
        try:
            size = json.loads(payload)
            width, height = int(size['Width']), int(size['Height'])
        except (ValueError, KeyError, TypeError):
            self._count('frames_invalid')
            return
        if self.process is not None and 0 < width < 65536 and 0 < height < 65536:
            self.process.resize(height, width)

    async def _start(self) -> bool:
        """Start the command before any input is read, so stdin sent right after connecting reaches it."""
        session = self.session
        sandbox = session.container.sandbox
        assert sandbox is not None
        try:
            self.process = await self.state.runner.start(sandbox, session.argv, tty=session.tty, rows=PTY_ROWS, cols=PTY_COLS)
        except OSError as exc:
            self._enqueue(bytes([STATUS]) + _start_failure(f'OCI runtime exec failed: exec: "{session.argv[0]}": {exc.strerror or exc}'))
            self._enqueue(None)
            return False
        if not session.stdin:
            self.process.close_stdin()
        return True

    async def _pump(self) -> None:
        process = self.process
        assert process is not None
        while (item := await process.read()) is not None:
            stream, data = item
            self._output(STDERR if stream == 'stderr' else STDOUT, data)
            if self.dropped:
                return
        exit_code = await process.wait()
        # wait() gives 128+n for a death by signal n, as a shell would report it.
        self._enqueue(bytes([STATUS]) + status_payload(exit_code))
        self._count('status_sent')
        self._enqueue(None)

    async def run(self) -> None:
        channels: set[ExecChannel] = self.state.extensions.setdefault(CHANNELS_KEY, set())
        channels.add(self)
        self._count('sessions_opened')
        tasks = [asyncio.ensure_future(self._sender())]
        if await self._start():
            tasks += [asyncio.ensure_future(self._reader()), asyncio.ensure_future(self._pump())]
        try:
            await self.done.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.shutting_down:
                await self._stop_process()
            else:
                self._leave_running()
            if (self.shutting_down or self.dropped) and self.request.transport is not None:
                self.request.transport.abort()
            elif not self.ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.close()
            channels.discard(self)

    def _leave_running(self) -> None:
        """The client is gone: the command keeps running with its stdin at end of file (see the module docstring)."""
        process = self.process
        if process is None:
            return
        if process.returncode is not None:
            process.close()
            return
        process.close_stdin()
        self._count('left_running')
        orphans: set[asyncio.Task[None]] = self.state.extensions.setdefault(ORPHANS_KEY, set())
        task = asyncio.ensure_future(_drain_until_exit(process))
        orphans.add(task)
        task.add_done_callback(orphans.discard)

    async def _stop_process(self) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            process.kill(signal.SIGHUP)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 0.5)
        # Background children of the command go with the connection too.
        process.kill()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), 5)
        process.close()


async def _drain_until_exit(process: SandboxProcess) -> None:
    """Read (and drop) what an orphaned exec process prints, so it never blocks on a full pipe; kill it if cancelled."""
    try:
        while await process.read() is not None:
            pass
        await process.wait()
    except asyncio.CancelledError:
        process.kill()
        raise
    finally:
        if process.returncode is not None:
            process.close()


async def exec_socket(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    try:
        session = registry(state).claim(request.match_info['session_id'], request.query.get('token', ''))
    except TokenRefused as exc:
        state.stats.count_ws(WS_SERVICE, 'sessions_refused')
        return web.Response(status=403, text=f'Forbidden: {exc}')
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024, protocols=('v5.channel.k8s.io', 'v4.channel.k8s.io', 'channel.k8s.io'))
    await ws.prepare(request)
    policy = state.faults.ws_policy(SERVICE, 'ExecContainerCommand')
    await ExecChannel(state, request, ws, session, policy).run()
    return ws


async def _on_shutdown(app: web.Application) -> None:
    channels: set[ExecChannel] = app[STATE_KEY].extensions.get(CHANNELS_KEY, set())
    for channel in list(channels):
        channel.shutting_down = True
        channel.done.set()
    for orphan in list(app[STATE_KEY].extensions.get(ORPHANS_KEY, set())):
        orphan.cancel()
    deadline = time.monotonic() + 5
    while channels and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def add_routes(app: web.Application) -> None:
    app.router.add_get(ROUTE, exec_socket)
    app.on_shutdown.append(_on_shutdown)
