# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alibaba ECI ``ExecContainerCommand`` (2018-08-08) and the websocket behind its ``WebSocketUri``.

Sources named below: ECISDK (``alibabacloud_eci20180808`` 2.1.0 models), ECIDOC (the ExecContainerCommand API
reference and its older error table, doc-detail/111003), and for the websocket, which Alibaba does not document,
the Kubernetes code a kubelet-style exec endpoint runs: KUBELET (``k8s.io/kubelet`` pkg/cri/streaming/remotecommand
``websocket.go``, ``httpstream.go``, ``exec.go``), APIMACH (``k8s.io/apimachinery`` pkg/util/httpstream/wsstream
``conn.go``), CTRD (containerd ``internal/cri/server/streaming.go``, ``container_execsync.go``). The facts, with
line numbers, are in research notes issue9-alibaba.md sections C and D.

The API (ECISDK ``ExecContainerCommandRequest``): RegionId, ContainerGroupId, ContainerName, Command (a JSON argv, at
most 20 items of at most 256 characters), TTY, Stdin (default true), Sync (default false).

- ``Sync=true`` runs the argv (no shell) in the container's sandbox and answers ``SyncResponse``: stdout and stderr
  merged in arrival order, no exit code, the HTTP answer held until the command ends. No server-side time limit is
  documented (the SDK's 10 s is its own read timeout), so by default none is applied: a client that stops waiting
  leaves the command running. It refuses ``TTY=true`` and an interactive shell (a lone ``sh``/``bash``... without
  ``-c``).
- Otherwise it answers ``WebSocketUri``, ``ws://HOST:PORT/exec/?s=<token>`` on a listener of its own (the real one
  is ``wss://eci-<region>.aliyun.com/exec/?s=<token>``, ECIDOC: a host other than the API's), good for one
  connection within ``alicloud.exec.token_ttl_seconds``, and ``HttpUrl`` (the console terminal; a URL only).

The websocket behaves as a kubelet's CRI streaming server (the variant ``kubelet``, the default):

- Subprotocols (KUBELET websocket.go 29-40; APIMACH conn.go ``handshake``): none requested gives none; otherwise
  the first requested of ``channel.k8s.io``, ``base64.channel.k8s.io``, ``v4.channel.k8s.io``,
  ``v4.base64.channel.k8s.io``; only unsupported ones (``v5.channel.k8s.io`` among them: only the API server's
  stream translator speaks v5) get HTTP 403 before the upgrade (x/net/websocket answers a failed handshake so).
- Framing (APIMACH conn.go 38-66): binary messages ``<channel byte><data>``; with a ``base64.`` protocol, text
  messages ``<'0'+channel><base64 data>``. Channels: 0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize. The
  server reads text and binary messages alike; empty messages and channels >= 5 (255, v5's close, among them) are
  ignored, so there is no half-close: stdin ends only when the socket does.
- Right after the upgrade, an empty "ready" write on stdout, the lowest output channel (KUBELET websocket.go
  104-113): the single byte ``\\x01``.
- When the command exits: with no subprotocol, ``channel.k8s.io`` or ``base64.channel.k8s.io``, nothing on channel
  3 on success and the plain text of the Status message on failure (KUBELET httpstream.go ``v1WriteStatusFunc``);
  with a ``v4.`` protocol, the ``metav1.Status`` JSON (``v4WriteStatusFunc``), success included. The failure
  text: ``command terminated with non-zero exit code: error executing command [<argv>], exit code <n>``
  (KUBELET exec.go 54-69, CTRD streaming.go 92-95); a program that cannot start gets an ``InternalError``
  (exec.go 70-74) whose text carries runc's "OCI runtime exec failed" message. Then a normal close.
- A client that goes away (it closes the socket, or the connection drops) does not end the command: its stdin
  reaches end of file and it runs on (APIMACH conn.go 306-315, 337-339: closing only closes the pipes; CTRD
  container_execsync.go 259-270 waits for the exec process to exit by itself). Only the emulator's own shutdown
  kills what is left.

Other behaviours the evidence allows, per group (``exec_stream``) or for all (``alicloud.exec.stream``), so that
the client is tested against each:

- ``v4_status``: the v4 JSON status whatever was negotiated, success included (a front that speaks v4 to the
  kubelet and passes the status on).
- ``no_status``: nothing ever on the status channel; the stream just closes when the command ends.
- ``swapped_channels``: channel 3 is resize and 4 the exit status, as one public client of this endpoint numbers
  them (the reverse of Kubernetes); the status's content is as for ``kubelet``.

A refused connection (unknown, used or expired token) gets HTTP 403 before the upgrade, so clients see a failed
handshake rather than a socket that opens and closes.

Fault rules for ``ws``/``ali-eci`` (action ``*`` or ``ExecContainerCommand``): ``message_latency_ms`` and
``drop_after_bytes`` (the connection is aborted, no status and no close frame).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
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

# The stream listener's one path; the token travels in ?s= (ECIDOC's WebSocketUri example).
EXEC_PATH = '/exec/'
EXTENSION_KEY = 'ali-eci-exec'
CHANNELS_KEY = 'ali-eci-exec-channels'
LISTENER_KEY = 'ali-eci-exec-listener'
# Counter service name in GET /_emulator/calls ("ws" section).
WS_SERVICE = 'ali-eci-exec'

MAX_COMMAND_ITEMS = 20
MAX_COMMAND_ITEM_LENGTH = 256
# Programs that are an interactive shell when run without -c (Sync refuses them).
SHELLS = frozenset({'sh', 'bash', 'ash', 'dash', 'zsh', 'ksh', 'mksh', 'busybox'})

# Channels of the Kubernetes exec protocol (apimachinery pkg/util/remotecommand/constants.go).
STDIN = 0
STDOUT = 1
STDERR = 2
STATUS = 3
RESIZE = 4
# A kubelet makes five channels (KUBELET websocket.go createChannels): input on any other number is ignored.
CHANNEL_COUNT = 5

# Subprotocols a kubelet accepts besides none (KUBELET websocket.go 29-40), in its order of preference.
PROTOCOLS = ('channel.k8s.io', 'base64.channel.k8s.io', 'v4.channel.k8s.io', 'v4.base64.channel.k8s.io')
V4_PROTOCOLS = frozenset({'v4.channel.k8s.io', 'v4.base64.channel.k8s.io'})
BASE64_PROTOCOLS = frozenset({'base64.channel.k8s.io', 'v4.base64.channel.k8s.io'})

# The variants of world.ECI_STREAM_VARIANTS.
KUBELET = 'kubelet'
V4_STATUS = 'v4_status'
NO_STATUS = 'no_status'
SWAPPED = 'swapped_channels'

CHUNK = 32 * 1024
# Exec processes whose client went away, still running (killed at emulator shutdown).
ORPHANS_KEY = 'ali-eci-exec-orphans'

PTY_ROWS = 24
PTY_COLS = 80


@dataclass
class EciExecSession:
    token: str
    group: ContainerGroup
    container: EciContainer
    argv: list[str]
    tty: bool
    stdin: bool
    variant: str
    issued_at: float = field(default_factory=time.monotonic)
    connected: bool = False
    # The runtime's exec id, named in start-failure messages.
    exec_id: str = field(default_factory=lambda: secrets.token_hex(32))


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
        session = EciExecSession(token=secrets.token_urlsafe(32), group=group, container=container, argv=argv, tty=tty,
                                 stdin=stdin, variant=group.exec_stream or self.settings.stream)
        self.sessions[session.token] = session
        return session

    def claim(self, token: str) -> EciExecSession:
        session = self.sessions.get(token) if token else None
        if session is None:
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
    # ECISDK says "256 characters" without saying how they are counted: the stricter reading, UTF-8 bytes, is
    # applied (an "é" counts 2), so a client that passes here passes whatever the service counts.
    if any(len(a.encode('utf-8', 'surrogatepass')) > MAX_COMMAND_ITEM_LENGTH for a in argv):
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
    # IncorrectStatus is a 400 in ECIDOC's error table (doc-detail/111003).
    if group.status != 'Running':
        raise ApiError('IncorrectStatus', f'The current status of ContainerGroup:{group_id} does not support this operation.', 400)
    container = group.container(name)
    if container is None:
        raise ApiError('InvalidContainerName.NotFound', f'The specified ContainerName {name} is not found in {group_id}.', 404)
    if container.state != 'Running':
        raise ApiError('IncorrectStatus', f'The current status of ContainerName:{name} does not support this operation.', 400)
    return group, container


def runc_exec_error(program: str, exc: OSError) -> str:
    """runc's words for a program it cannot exec (what containerd passes on as the exec's start error)."""
    if exc.errno == errno.ENOENT:
        why = f'stat {program}: no such file or directory' if '/' in program else 'executable file not found in $PATH'
    elif exc.errno == errno.EACCES:
        why = 'permission denied'
    else:
        why = (exc.strerror or str(exc)).lower()
    return f'OCI runtime exec failed: exec failed: unable to start container process: exec: "{program}": {why}: unknown'


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
            # The answer waits for the command, however long (no documented limit; the client may give up first).
            result = await ctx.state.runner.run(container.sandbox, argv, timeout=settings.sync_timeout_seconds)
        except OSError as exc:
            # exec failed (no such program): the runtime's message is what the caller reads.
            return {'SyncResponse': runc_exec_error(argv[0], exc)}
        return {'SyncResponse': result.output.decode('utf-8', errors='replace')}
    session = registry(ctx.state).issue(group, container, argv, tty, stdin)
    stream_base = await ensure_listener(ctx.state, ctx.request)
    base = ctx.state.base_url
    return {
        'WebSocketUri': f'{stream_base}{EXEC_PATH}?s={session.token}',
        # The console terminal (ECIDOC: usable for 30 s); not served, and its token is not the stream's.
        'HttpUrl': f'{base}/terminal?param={secrets.token_urlsafe(16)}',
    }


# ---------------------------------------------------------------------------------------------------- status texts

def _go_argv(argv: list[str]) -> str:
    """An argv as Go's %v prints a []string."""
    return '[' + ' '.join(argv) + ']'


def nonzero_exit_status(argv: list[str], exit_code: int) -> dict[str, Any]:
    """The metav1.Status of a command that exited non-zero (KUBELET exec.go 54-69, CTRD streaming.go 92-95)."""
    return {
        'metadata': {}, 'status': 'Failure',
        'message': f'command terminated with non-zero exit code: error executing command {_go_argv(argv)}, exit code {exit_code}',
        'reason': 'NonZeroExitCode',
        'details': {'causes': [{'reason': 'ExitCode', 'message': str(exit_code)}]},
    }


def start_failure_status(exec_id: str, program: str, exc: OSError) -> dict[str, Any]:
    """apierrors.NewInternalError of the exec's start error (KUBELET exec.go 70-74; containerd's wording)."""
    cause = (f'error executing command in container: failed to exec in container: failed to start exec "{exec_id}": '
             f'{runc_exec_error(program, exc)}')
    return {'metadata': {}, 'status': 'Failure', 'message': f'Internal error occurred: {cause}', 'reason': 'InternalError',
            'details': {'causes': [{'message': cause}]}, 'code': 500}


SUCCESS_STATUS: dict[str, Any] = {'metadata': {}, 'status': 'Success'}


# ---------------------------------------------------------------------------------------------------- the stream

class ExecChannel:
    """One connected exec websocket; :meth:`run` returns when it is over."""

    def __init__(self, state: EmulatorState, request: web.Request, ws: web.WebSocketResponse, session: EciExecSession,
                 policy: WsPolicy, protocol: str) -> None:
        self.state = state
        self.request = request
        self.ws = ws
        self.session = session
        self.policy = policy
        self.protocol = protocol
        self.base64 = protocol in BASE64_PROTOCOLS
        swapped = session.variant == SWAPPED
        self.status_channel = RESIZE if swapped else STATUS
        self.resize_channel = STATUS if swapped else RESIZE
        self.process: SandboxProcess | None = None
        self.output_bytes = 0
        self.dropped = False
        self.replied = False
        self.done = asyncio.Event()
        self.shutting_down = False
        self._queue: asyncio.Queue[tuple[float, bytes | str | None]] = asyncio.Queue()

    def _count(self, event: str, amount: int = 1) -> None:
        self.state.stats.count_ws(WS_SERVICE, event, amount)

    def _encode(self, channel: int, data: bytes) -> bytes | str:
        """One message (APIMACH conn.go ``write``): raw binary, or text of '0'+channel and base64."""
        if self.base64:
            return chr(ord('0') + channel) + base64.b64encode(data).decode('ascii')
        return bytes([channel]) + data

    def _enqueue(self, message: bytes | str | None) -> None:
        """Messages leave in order, each delayed by the latency fault; None asks the sender to close."""
        self._queue.put_nowait((time.monotonic() + self.policy.message_latency_ms / 1000, message))

    async def _sender(self) -> None:
        while True:
            due, message = await self._queue.get()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if message is None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.close()
                self.done.set()
                return
            try:
                if not self.ws.closed:
                    if isinstance(message, str):
                        await self.ws.send_str(message)
                    else:
                        await self.ws.send_bytes(message)
                    self._count('frames_out')
                    self._count('bytes_out', len(message))
            except (ConnectionError, RuntimeError):
                self.done.set()
                return

    def _output(self, channel: int, data: bytes) -> None:
        self.replied = self.replied or bool(data)
        for start in range(0, len(data), CHUNK):
            piece = data[start:start + CHUNK]
            if self.policy.drop_after_bytes is not None and self.output_bytes + len(piece) > self.policy.drop_after_bytes:
                self._drop()
                return
            self.output_bytes += len(piece)
            self._enqueue(self._encode(channel, piece))

    def _drop(self) -> None:
        if self.dropped:
            return
        self.dropped = True
        self._count('drops')
        if self.request.transport is not None:
            self.request.transport.abort()
        self.done.set()

    def _decode(self, data: bytes) -> tuple[int, bytes] | None:
        """(channel, payload) of a client message; None when it is ignored (APIMACH conn.go 357-378)."""
        if not data:
            return None
        channel, payload = data[0], data[1:]
        if self.base64:
            channel -= ord('0')
            try:
                payload = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                return None
        if not 0 <= channel < CHANNEL_COUNT:
            return None
        return channel, payload

    async def _reader(self) -> None:
        async for msg in self.ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            # websocket.Message.Receive into []byte: a text message is data like a binary one.
            data: bytes = msg.data if msg.type == WSMsgType.BINARY else msg.data.encode('utf-8')
            self._count('frames_in')
            self._count('bytes_in', len(data))
            decoded = self._decode(data)
            if decoded is None:
                self._count('frames_ignored')
                continue
            channel, payload = decoded
            process = self.process
            if channel == STDIN:
                if self.replied and payload:
                    # Input after output: the client waited for the container (a round trip on its critical path). A
                    # counter for the benchmark and for tests that pin round trips per task, not a kubelet behaviour.
                    self.replied = False
                    self._count('turns')
                # An empty stdin message writes nothing: before v5 there is no end of input but the socket's end.
                if process is not None and self.session.stdin and payload:
                    process.write(payload)
            elif channel == self.resize_channel:
                self._resize(payload)
            else:
                # Output and status channels are write-only: input on them is dropped.
                self._count('frames_ignored')
        self.done.set()

    def _resize(self, payload: bytes) -> None:
        # A stream of TerminalSize JSON objects, honoured only with a TTY (KUBELET httpstream.go handleResizeEvents).
        try:
            size = json.loads(payload)
            width, height = int(size['Width']), int(size['Height'])
        except (ValueError, KeyError, TypeError):
            self._count('frames_invalid')
            return
        if self.process is not None and self.session.tty and 0 < width < 65536 and 0 < height < 65536:
            self.process.resize(height, width)

    def _status(self, status: dict[str, Any]) -> None:
        """Write the exit status the way this variant and protocol do, then close."""
        variant = self.session.variant
        if variant != NO_STATUS:
            if variant == V4_STATUS or self.protocol in V4_PROTOCOLS:
                payload: bytes | None = json.dumps(status, separators=(',', ':')).encode()
            else:
                # v1WriteStatusFunc: nothing on success, status.Error() (the message) as plain text on failure.
                payload = None if status['status'] == 'Success' else status['message'].encode()
            if payload is not None:
                self._enqueue(self._encode(self.status_channel, payload))
                self._count('status_sent')
        self._enqueue(None)

    async def _start(self) -> bool:
        """Start the command before any input is read, so stdin sent right after connecting reaches it."""
        session = self.session
        sandbox = session.container.sandbox
        assert sandbox is not None
        try:
            self.process = await self.state.runner.start(sandbox, session.argv, tty=session.tty, rows=PTY_ROWS, cols=PTY_COLS)
        except OSError as exc:
            self._status(start_failure_status(session.exec_id, session.argv[0], exc))
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
        # wait() gives 128+n for a death by signal n, as runc reports it.
        self._status(SUCCESS_STATUS if exit_code == 0 else nonzero_exit_status(self.session.argv, exit_code))

    async def run(self) -> None:
        channels: set[ExecChannel] = self.state.extensions.setdefault(CHANNELS_KEY, set())
        channels.add(self)
        self._count('sessions_opened')
        self._count(f'subprotocol:{self.protocol or "none"}')
        tasks = [asyncio.ensure_future(self._sender())]
        # The "ready" message: an empty write on stdout before anything else (KUBELET websocket.go 104-113).
        self._enqueue(self._encode(STDOUT, b''))
        self._count('ready_sent')
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
        """Emulator shutdown only: end the command and its background children."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            process.kill(signal.SIGHUP)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 0.5)
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


def _choose_protocol(request: web.Request) -> str | None:
    """The subprotocol a kubelet would pick: '' when none is requested, None when none requested is supported."""
    offered = [p.strip() for value in request.headers.getall('Sec-WebSocket-Protocol', []) for p in value.split(',') if p.strip()]
    if not offered:
        return ''
    return next((p for p in offered if p in PROTOCOLS), None)


async def exec_socket(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    try:
        session = registry(state).claim(request.query.get('s', ''))
    except TokenRefused as exc:
        state.stats.count_ws(WS_SERVICE, 'sessions_refused')
        return web.Response(status=403, text=f'Forbidden: {exc}')
    protocol = _choose_protocol(request)
    if protocol is None:
        # The handshake fails (APIMACH conn.go handshake: "requested protocol(s) are not supported"), and
        # x/net/websocket answers a failed handshake with 403. The token is spent all the same.
        state.stats.count_ws(WS_SERVICE, 'sessions_refused')
        return web.Response(status=403, text='Forbidden: requested protocol(s) are not supported')
    # No permessage-deflate: x/net/websocket does not implement it.
    ws = web.WebSocketResponse(max_msg_size=32 * 1024 * 1024, compress=False, protocols=(protocol,) if protocol else ())
    await ws.prepare(request)
    policy = state.faults.ws_policy(SERVICE, 'ExecContainerCommand')
    await ExecChannel(state, request, ws, session, policy, protocol).run()
    return ws


# ---------------------------------------------------------------------------------------------------- the listener

class _Listener:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.runner: web.AppRunner | None = None
        self.base = ''


async def ensure_listener(state: EmulatorState, request: web.Request) -> str:
    """The stream listener's ws:// base, started on first use on the address the API was reached on."""
    listener: _Listener = state.extensions.setdefault(LISTENER_KEY, _Listener())
    async with listener.lock:
        if listener.runner is None:
            sockname = request.transport.get_extra_info('sockname') if request.transport is not None else None
            host = sockname[0] if sockname else '127.0.0.1'
            app = web.Application()
            app[STATE_KEY] = state
            app.router.add_get(EXEC_PATH, exec_socket)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, host, 0).start()
            bound, port = runner.addresses[0][:2]
            listener.runner = runner
            listener.base = f'ws://[{bound}]:{port}' if ':' in bound else f'ws://{bound}:{port}'
    return listener.base


async def _on_shutdown(app: web.Application) -> None:
    state = app[STATE_KEY]
    channels: set[ExecChannel] = state.extensions.get(CHANNELS_KEY, set())
    for channel in list(channels):
        channel.shutting_down = True
        channel.done.set()
    for orphan in list(state.extensions.get(ORPHANS_KEY, set())):
        orphan.cancel()
    deadline = time.monotonic() + 5
    while channels and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    listener: _Listener | None = state.extensions.get(LISTENER_KEY)
    if listener is not None and listener.runner is not None:
        await listener.runner.cleanup()
        listener.runner = None


def add_routes(app: web.Application) -> None:
    """Nothing on the API port: the stream has a listener of its own; only its shutdown is hooked here."""
    app.on_shutdown.append(_on_shutdown)
