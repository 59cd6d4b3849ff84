# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent end of an ECS Exec data channel: what amazon-ssm-agent does for an InteractiveCommands session.

``GET /v1/data-channel/{session_id}`` upgrades to a websocket. The first frame must be the TEXT
OpenDataChannel JSON carrying the session's token; a wrong, reused or expired token gets the socket
closed (code 1008, the reason in the close message). After that every frame is a binary agent message
(:mod:`ssm_wire`), and the agent:

- splits the command like a POSIX shell (the agent uses google/shlex) and runs it directly, no shell,
  in the container's sandbox on a PTY (echo and onlcr on, as a fresh terminal is);
- sends the PTY's output as ``output_stream_data`` (payload type Output, at most 1024 bytes, never
  cutting a UTF-8 character, sequence numbers from 0, SYN on the first), keeps every message until the
  client acknowledges it and resends the oldest after an RFC 6298 style retransmission timeout;
- acknowledges each ``input_stream_data`` and applies them in sequence order (later ones buffered,
  earlier ones acknowledged again and dropped): Output is typed into the PTY, Size resizes it, Flag
  and anything else is ignored. Input that arrives before the command started is not acknowledged, so
  the client must resend it (the agent answers ErrHandlerNotReady there);
- skips the handshake (InteractiveCommands), unless the cluster has a KMS key: then it asks for
  KMSEncryption, has the emulator's KMS (aws_kms.py) open the client's data key with the session id and
  target id (and the request's random Challenge) as encryption context, checks with an encryption
  challenge that the client can open and seal with the key, answers HandshakeComplete and seals the
  command's Output, StdErr and ExitCode payloads with AES-GCM (first half of the key), opening input with
  the second half; a client that cannot give or use a key ends the session with the reason;
- once the command exited and its output is acknowledged (at most 2 s, as the agent's
  PrepareToCloseChannel), sends ``channel_closed`` and closes the socket. A closed socket kills the
  command (the agent closes the PTY); no input or output for ``idle_timeout_seconds`` ends the session.

Fault rules for service ``ws`` (action ``*`` or ``ExecuteCommand``) shape each connection, see :class:`faults.WsPolicy`.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import shlex
import signal
import time
import uuid
from typing import Any, cast

from aiohttp import WSMsgType, web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import aws_kms
from . import ssm_wire as wire
from .aws_exec import WS_SERVICE, ExecSession, TokenRefused, registry
from .context import STATE_KEY, EmulatorState
from .faults import WsPolicy
from .sandbox import SandboxProcess

LOG = logging.getLogger(__name__)

ROUTE = '/v1/data-channel/{session_id}'
# With KMS, the payload types the agent seals (streaming.go): what it sends of the command.
_SEALED_OUT = frozenset((wire.OUTPUT, wire.STDERR, wire.EXIT_CODE))
# A wide terminal, so the clients' long lines are not wrapped by programs that look at the size.
PTY_ROWS = 50
PTY_COLS = 250
STREAM_PAYLOAD_SIZE = 1024
INCOMING_BUFFER_CAPACITY = 10000
OPEN_TIMEOUT_SECONDS = 10.0
HANDSHAKE_TIMEOUT_SECONDS = 15.0
CLOSE_FLUSH_SECONDS = 2.0
# Retransmission timing (the agent's session config).
RTO_INITIAL = 0.2
RTO_MAX = 1.0
CLOCK_GRANULARITY = 0.01
RTT_ALPHA = 1 / 8
RTT_BETA = 1 / 4
RESEND_POLL_SECONDS = 0.01
# A message held back to be swapped with the next one (reorder fault) goes out alone after this.
REORDER_HOLD_SECONDS = 0.05
AGENT_VERSION = '3.3.1802.0'
POLICY_VIOLATION = 1008
# state.extensions key of the set of connected AgentSessions, so shutdown can end them.
CHANNELS_KEY = 'aws-ecs-exec-channels'


def _utf8_cut(data: bytes) -> int:
    """Where to cut ``data`` so no UTF-8 character is split: trailing bytes of an incomplete character stay behind."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return len(data) - back if need > back else len(data)
    return len(data)


class AgentSession:
    """One connected data channel; :meth:`run` returns when the session is over."""

    def __init__(self, state: EmulatorState, request: web.Request, ws: web.WebSocketResponse, session: ExecSession,
                 policy: WsPolicy) -> None:
        self.state = state
        self.request = request
        self.ws = ws
        self.session = session
        self.policy = policy
        self.settings = state.world.aws.exec_settings
        self.process: SandboxProcess | None = None
        self.out_seq = 0
        # sequence number -> [encoded frame, time last sent]; insertion order is sequence order.
        self.outgoing: dict[int, list[Any]] = {}
        self.expected_in = 0
        self.incoming: dict[int, wire.WireMessage] = {}
        self.rto = RTO_INITIAL
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.paused = False
        self.acks_lost = 0
        self.output_bytes = 0
        self.last_activity = time.monotonic()
        self.handshake_pending = bool(session.cluster.kms_key_id)
        self.handshake_started = time.monotonic()
        self.done = asyncio.Event()
        self.dropped = False
        # One channel_closed only, whoever ends the session first (command exit, idle timeout, handshake).
        self.closing = False
        # Set by server shutdown: no polite close handshake then (aiohttp no longer serves the peer's close reply).
        self.shutting_down = False
        self._send_queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._held: bytes | None = None
        self._pump_task: asyncio.Future[None] | None = None
        self._start_task: asyncio.Future[None] | None = None
        # KMS: the agent seals what it sends with the data key's first half and opens input with the second.
        self._seal: AESGCM | None = None
        self._open: AESGCM | None = None
        # Current agents put a random Challenge in the KMS request (the key must be generated with it in the context)
        # and, once the key is agreed, check that the client can open and seal with it (EncChallengeRequest/Response).
        self.kms_challenge = base64.b64encode(os.urandom(32)).decode()
        self._enc_challenge: bytes | None = None

    # ---- counters

    def _count(self, event: str, amount: int = 1) -> None:
        self.state.stats.count_ws(WS_SERVICE, event, amount)

    # ---- sending

    def _enqueue(self, frame: bytes) -> None:
        """Frames leave in order, each delayed by the latency fault without slowing the ones behind it."""
        self._send_queue.put_nowait((time.monotonic() + self.policy.message_latency_ms / 1000, frame))

    async def _sender(self) -> None:
        while True:
            due, frame = await self._send_queue.get()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if not self.ws.closed:
                    await self.ws.send_bytes(frame)
                    self._count('frames_out')
                    self._count('bytes_out', len(frame))
            except (ConnectionError, RuntimeError):
                self.done.set()
            finally:
                self._send_queue.task_done()

    def _send_control(self, message: wire.WireMessage) -> None:
        self._enqueue(message.encode())

    def _send_stream(self, payload_type: int, payload: bytes) -> None:
        """A new output_stream_data message: sequenced, kept for resending, subject to the output faults."""
        if not payload:
            return
        if self.policy.drop_after_bytes is not None and self.output_bytes + len(payload) > self.policy.drop_after_bytes:
            self._drop()
            return
        self.output_bytes += len(payload)
        if self._seal is not None and payload_type in _SEALED_OUT:
            nonce = os.urandom(12)
            payload = nonce + self._seal.encrypt(nonce, payload, None)
        message = wire.WireMessage(wire.OUTPUT_STREAM_DATA, payload=payload, payload_type=payload_type,
                                   sequence_number=self.out_seq, flags=wire.FLAG_SYN if self.out_seq == 0 else 0)
        frame = message.encode()
        self.outgoing[self.out_seq] = [frame, time.monotonic()]
        self.out_seq += 1
        self.last_activity = time.monotonic()
        if self.paused:
            # Kept in the buffer; the resend loop delivers it once the client starts publication again.
            return
        if self.policy.reorder_output:
            self._reorder(frame)
        else:
            self._emit(frame)

    def _emit(self, frame: bytes) -> None:
        self._enqueue(frame)
        if self.policy.duplicate_output:
            self._enqueue(frame)

    def _reorder(self, frame: bytes) -> None:
        """Swap adjacent pairs: hold a message until the next one has gone out (or a short while has passed)."""
        if self._held is None:
            self._held = frame
            asyncio.get_running_loop().call_later(REORDER_HOLD_SECONDS, self._release_held, frame)
            return
        held, self._held = self._held, None
        self._emit(frame)
        self._emit(held)

    def _release_held(self, frame: bytes) -> None:
        if self._held is frame:
            self._held = None
            self._emit(frame)

    def _drop(self) -> None:
        """The drop_after_bytes fault: the connection goes away without a close frame."""
        if self.dropped:
            return
        self.dropped = True
        self._count('drops')
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        self.done.set()

    async def _resender(self) -> None:
        while not self.done.is_set():
            await asyncio.sleep(RESEND_POLL_SECONDS)
            if self.paused or not self.outgoing:
                continue
            seq = next(iter(self.outgoing))
            entry = self.outgoing[seq]
            # A message held back by the reorder fault has not been sent yet: nothing to resend.
            if entry[0] is not self._held and time.monotonic() - entry[1] > self.rto:
                entry[1] = time.monotonic()
                self._count('resends')
                self._enqueue(entry[0])

    def _acknowledged(self, payload: bytes) -> None:
        try:
            content = json.loads(payload)
            seq = int(content['AcknowledgedMessageSequenceNumber'])
        except (ValueError, KeyError, TypeError):
            self._count('frames_invalid')
            return
        entry = self.outgoing.pop(seq, None)
        if entry is None:
            return
        # RFC 6298 from the last send of the acknowledged message, as the agent measures it.
        rtt = time.monotonic() - entry[1]
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = (1 - RTT_BETA) * self.rttvar + RTT_BETA * abs(self.srtt - rtt)
            self.srtt = (1 - RTT_ALPHA) * self.srtt + RTT_ALPHA * rtt
        self.rto = min(RTO_MAX, self.srtt + max(CLOCK_GRANULARITY, 4 * self.rttvar))

    def _ack(self, message: wire.WireMessage) -> None:
        if self.acks_lost < self.policy.lose_ack:
            self.acks_lost += 1
            self._count('acks_lost')
            return
        self._count('acks_out')
        self._send_control(wire.acknowledge(message))

    # ---- receiving

    def _apply_input(self, message: wire.WireMessage) -> None:
        assert self.process is not None
        if message.payload_type == wire.OUTPUT:
            payload = message.payload
            if self._open is not None:
                try:
                    payload = self._open.decrypt(payload[:12], payload[12:], None)
                except (InvalidTag, ValueError):
                    LOG.warning('session %s: input that does not open with the session key', self.session.session_id)
                    self._count('frames_invalid')
                    return
            self.process.write(payload)
        elif message.payload_type == wire.SIZE:
            try:
                size = json.loads(message.payload)
                cols, rows = int(size['cols']), int(size['rows'])
            except (ValueError, KeyError, TypeError):
                self._count('frames_invalid')
                return
            if 0 < cols < 65536 and 0 < rows < 65536:
                self.process.resize(rows, cols)
        # Flag (TerminateSession, ConnectToPortError...) and other payloads mean nothing to a shell session.

    def _on_input(self, message: wire.WireMessage) -> None:
        self.paused = False
        if self._enc_challenge is not None and message.sequence_number == self.expected_in:
            self._ack(message)
            self.expected_in += 1
            if message.payload_type == wire.ENC_CHALLENGE_RESPONSE:
                self._challenge_answered(message.payload)
            return   # other input before the challenge is met is acknowledged and dropped
        if self.handshake_pending:
            if message.payload_type == wire.HANDSHAKE_RESPONSE and message.sequence_number == self.expected_in:
                self._ack(message)
                self.expected_in += 1
                self._handshake_answered(message.payload)
                return
            # Input during the handshake is acknowledged and dropped; a later sequence waits as usual.
            if message.sequence_number == self.expected_in:
                self._ack(message)
                self.expected_in += 1
                return
        if message.sequence_number == self.expected_in:
            if self.process is None:
                # The command is not running yet: not acknowledged, the client has to send it again.
                self._count('inputs_not_ready')
                return
            self.last_activity = time.monotonic()
            self._apply_input(message)
            self._ack(message)
            self.expected_in += 1
            while (buffered := self.incoming.pop(self.expected_in, None)) is not None:
                self._apply_input(buffered)
                self.expected_in += 1
        elif message.sequence_number > self.expected_in:
            if len(self.incoming) < INCOMING_BUFFER_CAPACITY:
                self._ack(message)
                self.incoming[message.sequence_number] = message
        else:
            self._count('duplicates_in')
            self._ack(message)

    def _handshake_answered(self, payload: bytes) -> None:
        """The client's data key: KMS opens it with the session's encryption context, then the command starts."""
        self.handshake_pending = False
        try:
            answer = json.loads(payload)
            actions = answer.get('ProcessedClientActions') or []
            kms = next((a for a in actions if a.get('ActionType') == 'KMSEncryption'), {})
            result = kms.get('ActionResult') or {}
            blob = base64.b64decode(result.get('KMSCipherTextKey') or '') if kms.get('ActionStatus') == 1 else b''
        except (ValueError, AttributeError, TypeError):
            asyncio.ensure_future(self._close_channel('Encryption handshake failed: the handshake response is not valid JSON'))
            return
        if not blob:
            reason = kms.get('Error') or 'the client did not send a data key'
            asyncio.ensure_future(self._close_channel(f'Encryption handshake failed: {reason}'))
            return
        context = {'aws:ssm:SessionId': self.session.session_id, 'aws:ssm:TargetId': self.session.target}
        if result.get('ChallengeAcknowledgement') is True:
            context['aws:ssm:RandomChallenge'] = self.kms_challenge
        try:
            key_arn, data_key = aws_kms.unseal(self.state, blob, context)
        except aws_kms.InvalidCiphertext as exc:
            asyncio.ensure_future(self._close_channel(f'Encryption handshake failed: KMS Decrypt refused the data key ({exc})'))
            return
        if key_arn != self.session.cluster.kms_key_id or len(data_key) != 64:
            asyncio.ensure_future(self._close_channel('Encryption handshake failed: the data key is not a 64-byte key of the '
                                                      'cluster KMS key'))
            return
        self._seal, self._open = AESGCM(data_key[:32]), AESGCM(data_key[32:])
        self._enc_challenge = os.urandom(64)
        nonce = os.urandom(12)
        sealed = nonce + self._seal.encrypt(nonce, self._enc_challenge, None)
        self._send_stream(wire.ENC_CHALLENGE_REQUEST, wire.go_json({'Challenge': base64.b64encode(sealed).decode()}))

    def _challenge_answered(self, payload: bytes) -> None:
        """The client opened our sealed challenge and sealed it back with its half of the key: the session can start."""
        expected, self._enc_challenge = self._enc_challenge, None
        try:
            sealed = base64.b64decode(json.loads(payload)['Challenge'])
            answer = cast(AESGCM, self._open).decrypt(sealed[:12], sealed[12:], None)
        except (ValueError, KeyError, TypeError, InvalidTag):
            answer = b''
        if answer != expected:
            asyncio.ensure_future(self._close_channel('Encryption challenge failed: the client could not use the data key'))
            return
        self._count('kms_sessions')
        elapsed = int((time.monotonic() - self.handshake_started) * 1e9)
        self._send_stream(wire.HANDSHAKE_COMPLETE, wire.go_json({'HandshakeTimeToComplete': elapsed, 'CustomerMessage': ''}))
        self._start_task = asyncio.ensure_future(self._start_command())

    async def _reader(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.BINARY:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
                self._count('frames_invalid')
                continue
            self._count('frames_in')
            self._count('bytes_in', len(msg.data))
            try:
                message = wire.WireMessage.decode(msg.data)
            except wire.WireError as exc:
                # The agent logs and drops what it cannot parse; counting makes client bugs visible to tests.
                LOG.warning('session %s: bad frame: %s', self.session.session_id, exc)
                self._count('frames_invalid')
                continue
            if message.message_type == wire.INPUT_STREAM_DATA:
                self._on_input(message)
            elif message.message_type == wire.ACKNOWLEDGE:
                self.paused = False
                self._count('acks_in')
                self._acknowledged(message.payload)
            elif message.message_type == wire.PAUSE_PUBLICATION:
                self.paused = True
            elif message.message_type == wire.START_PUBLICATION:
                self.paused = False
            elif message.message_type == wire.CHANNEL_CLOSED:
                break
            else:
                self._count('frames_ignored')
        self.done.set()

    # ---- the command

    async def _start_command(self) -> None:
        await asyncio.sleep(self.settings.agent_start_ms / 1000)
        try:
            argv = shlex.split(self.session.command, posix=True)
        except ValueError as exc:
            await self._close_channel(f'Failed to parse commands input: {exc}')
            return
        sandbox = self.session.container.sandbox
        if not argv or sandbox is None:
            await self._close_channel('Unable to start command: no command')
            return
        try:
            self.process = await self.state.runner.start(sandbox, argv, tty=True, rows=PTY_ROWS, cols=PTY_COLS)
        except OSError as exc:
            # exec failed (no such program...): the agent reports it and the session ends.
            await self._close_channel(f'Unable to start command: {exc}')
            return
        self._pump_task = asyncio.ensure_future(self._pump(self.process))

    async def _pump(self, process: SandboxProcess) -> None:
        await asyncio.sleep(self.settings.output_delay_ms / 1000)
        pending = b''
        while True:
            item = await process.read()
            if item is None:
                break
            pending += item[1]
            while len(pending) > STREAM_PAYLOAD_SIZE:
                cut = _utf8_cut(pending[:STREAM_PAYLOAD_SIZE]) or STREAM_PAYLOAD_SIZE
                self._send_stream(wire.OUTPUT, pending[:cut])
                pending = pending[cut:]
            cut = _utf8_cut(pending)
            self._send_stream(wire.OUTPUT, pending[:cut])
            pending = pending[cut:]
            if self.done.is_set():
                return
        self._send_stream(wire.OUTPUT, pending)
        await process.wait()
        await self._close_channel('')

    async def _close_channel(self, output: str) -> None:
        """Flush (wait for acknowledgements, 2 s at most), then channel_closed and a normal close."""
        if self.done.is_set() or self.closing:
            return
        self.closing = True
        deadline = time.monotonic() + CLOSE_FLUSH_SECONDS
        while self.outgoing and time.monotonic() < deadline and not self.done.is_set():
            await asyncio.sleep(RESEND_POLL_SECONDS)
        if self.done.is_set():
            return
        created = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'
        message_id = uuid.uuid4()
        payload = wire.go_json({'MessageId': str(message_id), 'CreatedDate': created, 'DestinationId': self.session.target,
                                'SessionId': self.session.session_id, 'MessageType': wire.CHANNEL_CLOSED, 'SchemaVersion': 1,
                                'Output': output})
        self._send_control(wire.WireMessage(wire.CHANNEL_CLOSED, payload=payload, message_id=message_id, flags=wire.CONTROL_FLAGS))
        self._count('channels_closed')
        # Let the sender (and its latency) deliver everything queued before the close frame.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._send_queue.join(), CLOSE_FLUSH_SECONDS + self.policy.message_latency_ms / 1000)
        self.done.set()

    async def _watchdog(self) -> None:
        while not self.done.is_set():
            idle = time.monotonic() - self.last_activity
            if idle >= self.settings.idle_timeout_seconds:
                self._count('idle_timeouts')
                await self._close_channel('Session terminated due to idle timeout')
                return
            await asyncio.sleep(min(1.0, self.settings.idle_timeout_seconds - idle + 0.01))

    async def _handshake(self) -> None:
        request = {'AgentVersion': AGENT_VERSION, 'RequestedClientActions': [
            {'ActionType': 'KMSEncryption', 'ActionParameters': {'KMSKeyId': self.session.cluster.kms_key_id,
                                                                 'Challenge': self.kms_challenge}},
            {'ActionType': 'SessionType', 'ActionParameters': {'SessionType': 'InteractiveCommands', 'Properties': None}},
        ]}
        self.handshake_started = time.monotonic()
        self._send_stream(wire.HANDSHAKE_REQUEST, wire.go_json(request))
        await asyncio.sleep(HANDSHAKE_TIMEOUT_SECONDS)
        if self.handshake_pending:
            await self._close_channel('Handshake timed out. Please ensure that you are using the latest session manager plugin.')

    async def run(self) -> None:
        channels: set[AgentSession] = self.state.extensions.setdefault(CHANNELS_KEY, set())
        channels.add(self)
        self._count('sessions_opened')
        tasks = [asyncio.ensure_future(coro) for coro in (self._sender(), self._reader(), self._resender(), self._watchdog())]
        tasks.append(asyncio.ensure_future(self._handshake() if self.handshake_pending else self._start_command()))
        try:
            await self.done.wait()
        finally:
            tasks += [task for task in (self._start_task, self._pump_task) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._stop_process()
            if self.shutting_down and self.request.transport is not None:
                self.request.transport.abort()
            elif not self.ws.closed and not self.dropped:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.close()
            registry(self.state).close(self.session)
            channels.discard(self)

    async def _stop_process(self) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            # The agent closes the PTY (the command gets SIGHUP) and then kills it.
            process.kill(signal.SIGHUP)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 0.5)
            process.kill()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 5)
        else:
            # Background children of a finished command go with the session too.
            process.kill()
        process.close()


async def data_channel(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    session_id = request.match_info['session_id']
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    try:
        first = await ws.receive(timeout=OPEN_TIMEOUT_SECONDS)
    except asyncio.TimeoutError:
        await ws.close(code=POLICY_VIOLATION, message=b'OpenDataChannel not received')
        return ws
    reason = ''
    session: ExecSession | None = None
    if first.type != WSMsgType.TEXT:
        reason = 'expected the OpenDataChannel text frame first'
    else:
        try:
            opening = json.loads(first.data)
            token = opening['TokenValue']
            if not isinstance(token, str):
                raise TypeError('TokenValue must be a string')
            session = registry(state).claim(session_id, token)
        except (ValueError, KeyError, TypeError):
            reason = 'malformed OpenDataChannel request'
        except TokenRefused as exc:
            reason = f'Authentication failed: {exc}'
    if session is None:
        state.stats.count_ws(WS_SERVICE, 'sessions_refused')
        await ws.close(code=POLICY_VIOLATION, message=reason.encode())
        return ws
    policy = state.faults.ws_policy('ws', 'ExecuteCommand')
    await AgentSession(state, request, ws, session, policy).run()
    return ws


async def _on_shutdown(app: web.Application) -> None:
    """End every open session (command killed, socket closed) so the server can stop without waiting for clients."""
    channels: set[AgentSession] = app[STATE_KEY].extensions.get(CHANNELS_KEY, set())
    for channel in list(channels):
        channel.shutting_down = True
        channel.done.set()
    deadline = time.monotonic() + 5
    while channels and time.monotonic() < deadline:
        await asyncio.sleep(RESEND_POLL_SECONDS)


def add_routes(app: web.Application) -> None:
    app.router.add_get(ROUTE, data_channel)
    app.on_shutdown.append(_on_shutdown)
