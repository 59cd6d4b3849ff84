# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent end of a Session Manager data channel: what amazon-ssm-agent does for a session.

Two kinds of session share it, told apart by their :class:`aws_exec.ChannelSession`: ECS Exec's (the agent in
ECS container mode, an InteractiveCommands session; described below) and SSM StartSession's on a managed node
(``ssm_sessions.NodeSession``: a Standard_Stream shell, ``sh`` on a PTY with the shell profile typed in, or an
InteractiveCommands ``sh -c``, as the session user; KMS when the session's preferences name a key). What differs
is what :meth:`ChannelSession.launch` starts and the handshake's SessionType; the channel is the same.

``GET /v1/data-channel/{session_id}`` upgrades to a websocket. The first frame must be the TEXT
OpenDataChannel JSON carrying the session's token; a wrong, reused or expired token gets the socket
closed (code 1008, the reason in the close message). After that every frame is a binary agent message
(:mod:`ssm_wire`), and the agent:

- splits the command like a POSIX shell (the agent uses google/shlex) and runs it directly, no shell,
  in the container's sandbox on a PTY (echo and onlcr on, as a fresh terminal is) that has no size
  (0 x 0, the kernel's default) until the client sends one;
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
  PrepareToCloseChannel), sends ``channel_closed`` and closes the socket. A client that closes the socket
  (a close frame) or sends ``channel_closed`` ends the session and the command (the agent closes the PTY);
  no input or output for ``idle_timeout_seconds`` ends the session.

A session outlives its websocket. A connection that goes away without a close frame (the network, a
killed client, the ``drop_after_bytes`` fault) leaves the session running without a client, as the agent
is never told about the client's websocket: the agent only gets pause_publication from the service
(datachannel.go handlePausePublicationMessage) and then buffers new output without sending it and stops
reading the PTY (shell.go writePump, IsActive), so the command blocks once the terminal's buffer is full.
SSM ResumeSession (:mod:`aws_ssm`) hands out a new token; the websocket that presents it takes the session
over: the agent resends its unacknowledged output with the original sequence numbers and bytes, oldest
first, one message per retransmission timeout (ResendStreamDataMessageScheduler), and keeps its expected
input sequence number, so input the client sends again is acknowledged and dropped, never typed twice.
Until then, the idle timeout still runs.

Fault rules for service ``ws`` (action ``*`` or ``ExecuteCommand``) shape each connection (each websocket
takes the rules active when it opens), see :class:`faults.WsPolicy` and :class:`Connection`.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import signal
import time
import uuid
from typing import Any, cast

from aiohttp import WSMsgType, web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import aws_kms
from . import ssm_wire as wire
from .aws_exec import WS_SERVICE, ChannelSession, LaunchRefused, TokenRefused, registry
from .context import STATE_KEY, EmulatorState
from .faults import WsPolicy
from .sandbox import SandboxProcess

LOG = logging.getLogger(__name__)

ROUTE = '/v1/data-channel/{session_id}'
# With KMS, the payload types the agent seals (streaming.go): what it sends of the command.
_SEALED_OUT = frozenset((wire.OUTPUT, wire.STDERR, wire.EXIT_CODE))
# The agent starts the shell with pty.Start(cmd), i.e. StartWithSize(cmd, nil): no Setsize, so the terminal keeps the
# kernel's default window size, 0 x 0, until a Size message arrives (agent/session/shell/shell_unix.go
# StartCommandExecutor; vendor/github.com/creack/pty/start.go).
PTY_ROWS = 0
PTY_COLS = 0
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
# state.extensions key of the set of running AgentSessions, so shutdown can end them.
CHANNELS_KEY = 'aws-ecs-exec-channels'
# Size payloads are uint32 on the wire and narrowed to uint16 by the agent (shell_unix.go SetSize).
_UINT32 = 1 << 32


def _utf8_cut(data: bytes) -> int:
    """Where to cut ``data`` so no UTF-8 character is split: trailing bytes of an incomplete character stay behind."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return len(data) - back if need > back else len(data)
    return len(data)


class Connection:
    """One websocket of a session, and what the network does to the frames on it (the fault rules it opened with).

    Frames leave in order, each delayed by the latency fault without slowing the ones behind it. The
    ``drop_after_bytes`` fault puts a drop mark in the queue instead of the message that would pass the limit:
    every whole message queued before it still goes out, then the connection is aborted (no close frame).
    """

    def __init__(self, agent: AgentSession, request: web.Request, ws: web.WebSocketResponse, policy: WsPolicy) -> None:
        self.agent = agent
        self.request = request
        self.ws = ws
        self.policy = policy
        # (due time, frame); a None frame is the drop: abort once everything before it went out.
        self.queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        self.acks_lost = 0
        self.output_bytes = 0
        self.held: bytes | None = None
        # False once the connection is dropped or lost: nothing more is put on it.
        self.usable = True
        self.dropped = False
        # The client hung up on purpose (close frame or channel_closed): the session ends with it.
        self.clean_close = False
        self.ended = asyncio.Event()

    def _count(self, event: str, amount: int = 1) -> None:
        self.agent.state.stats.count_ws(self.agent.session.ws_service, event, amount)

    def enqueue(self, frame: bytes) -> None:
        if self.usable:
            self.queue.put_nowait((time.monotonic() + self.policy.message_latency_ms / 1000, frame))

    def send_new_output(self, frame: bytes, size: int) -> None:
        """A new output message (``size`` payload bytes): counted for the drop, duplicated or reordered by the faults."""
        limit = self.policy.drop_after_bytes
        if limit is not None and self.output_bytes + size > limit:
            self.drop()
            return
        self.output_bytes += size
        if self.policy.reorder_output:
            self._reorder(frame)
        else:
            self._emit(frame)

    def _emit(self, frame: bytes) -> None:
        self.enqueue(frame)
        if self.policy.duplicate_output:
            self.enqueue(frame)

    def _reorder(self, frame: bytes) -> None:
        """Swap adjacent pairs: hold a message until the next one has gone out (or a short while has passed)."""
        if self.held is None:
            self.held = frame
            asyncio.get_running_loop().call_later(REORDER_HOLD_SECONDS, self._release_held, frame)
            return
        held, self.held = self.held, None
        self._emit(frame)
        self._emit(held)

    def _release_held(self, frame: bytes) -> None:
        if self.held is frame:
            self.held = None
            self._emit(frame)

    def drop(self) -> None:
        """The drop_after_bytes fault: whole messages already queued go out, then the connection is aborted."""
        if not self.usable:
            return
        self.dropped = True
        self._count('drops')
        self.queue.put_nowait((time.monotonic() + self.policy.message_latency_ms / 1000, None))
        self.usable = False
        self.agent.connection_lost(self)

    def abort(self) -> None:
        """Cut the connection at once, without a close frame."""
        self.usable = False
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        self.ended.set()

    async def sender(self) -> None:
        while True:
            due, frame = await self.queue.get()
            try:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if frame is None:
                    self.abort()
                    return
                if not self.ws.closed:
                    await self.ws.send_bytes(frame)
                    self._count('frames_out')
                    self._count('bytes_out', len(frame))
            except (ConnectionError, RuntimeError):
                self.agent.connection_lost(self)
                self.ended.set()
                return
            finally:
                self.queue.task_done()

    async def reader(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.BINARY:
                if self.agent.on_frame(msg.data, self):
                    self.clean_close = True   # channel_closed from the client
                    break
            elif msg.type == WSMsgType.CLOSE:
                self.clean_close = True
                break
            elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break   # gone without a close frame: the network, or a client that died
            else:
                self._count('frames_invalid')
        self.ended.set()

    async def flush(self, timeout: float) -> None:
        """Wait until the frames queued so far went out (or the connection ended)."""
        with contextlib.suppress(asyncio.TimeoutError, ValueError):
            await asyncio.wait_for(self.queue.join(), timeout)


class AgentSession:
    """The agent side of one session: the command, both sequence spaces and the resend buffer.

    It lives from the first websocket until the session ends; :meth:`serve` runs one websocket at a time.
    """

    def __init__(self, state: EmulatorState, session: ChannelSession) -> None:
        self.state = state
        self.session = session
        self.settings = session.settings
        self.process: SandboxProcess | None = None
        self.out_seq = 0
        self.replied = False            # output sent since the last input (counts round trips: "turns")
        # sequence number -> [encoded frame, time last sent]; insertion order is sequence order.
        self.outgoing: dict[int, list[Any]] = {}
        self.expected_in = 0
        self.incoming: dict[int, wire.WireMessage] = {}
        self.rto = RTO_INITIAL
        self.srtt: float | None = None
        self.rttvar = 0.0
        # pause_publication from the service: hold output, stop reading the PTY.
        self.paused = False
        self.conn: Connection | None = None
        self.connections = 0
        self.last_activity = time.monotonic()
        self.handshake_pending = bool(session.kms_key_id)
        self.handshake_started = time.monotonic()
        self.done = asyncio.Event()
        # One channel_closed only, whoever ends the session first (command exit, idle timeout, handshake).
        self.closing = False
        # The agent could not start the session's program (DescribeSessions reports such a session Failed).
        self.failed = False
        # Set by server shutdown: no polite close handshake then (aiohttp no longer serves the peer's close reply).
        self.shutting_down = False
        self._tasks: list[asyncio.Future[Any]] = []
        self._pump_task: asyncio.Future[None] | None = None
        self._start_task: asyncio.Future[None] | None = None
        self._lifetime_task: asyncio.Future[None] | None = None
        # KMS: the agent seals what it sends with the data key's first half and opens input with the second.
        self._seal: AESGCM | None = None
        self._open: AESGCM | None = None
        # Current agents put a random Challenge in the KMS request (the key must be generated with it in the context)
        # and, once the key is agreed, check that the client can open and seal with it (EncChallengeRequest/Response).
        self.kms_challenge = base64.b64encode(os.urandom(32)).decode()
        self._enc_challenge: bytes | None = None

    # ---- counters

    def _count(self, event: str, amount: int = 1) -> None:
        self.state.stats.count_ws(self.session.ws_service, event, amount)

    # ---- lifetime

    def start(self) -> None:
        """Start the session's own work (the command or the handshake, resends, the idle watchdog)."""
        channels: set[AgentSession] = self.state.extensions.setdefault(CHANNELS_KEY, set())
        channels.add(self)
        self._count('sessions_opened')
        self._tasks = [asyncio.ensure_future(coro) for coro in (self._resender(), self._watchdog())]
        self._tasks.append(asyncio.ensure_future(self._handshake() if self.handshake_pending else self._start_command()))
        self._lifetime_task = asyncio.ensure_future(self._lifetime())

    async def _lifetime(self) -> None:
        try:
            await self.done.wait()
        finally:
            tasks = self._tasks + [task for task in (self._start_task, self._pump_task) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._stop_process()
            registry(self.state).close(self.session)
            self.state.extensions.get(CHANNELS_KEY, set()).discard(self)

    async def terminate(self) -> None:
        """TerminateSession: the agent cancels the session (the command is ended) and the client is told."""
        await self._close_channel('Session terminated', flush=False)
        self.done.set()
        if self._lifetime_task is not None:
            await asyncio.shield(self._lifetime_task)

    # ---- connections

    @property
    def flowing(self) -> bool:
        """Whether output can go to a client now (connected, and not paused by the service)."""
        return self.conn is not None and self.conn.usable and not self.paused

    def _flow_changed(self) -> None:
        # The agent's writePump reads the PTY only while the channel is active (not paused).
        if self.process is not None:
            if self.flowing:
                self.process.resume_reading()
            else:
                self.process.pause_reading()

    async def serve(self, request: web.Request, ws: web.WebSocketResponse, policy: WsPolicy) -> None:
        """Run one websocket of the session until it goes away or the session ends."""
        conn = Connection(self, request, ws, policy)
        if self.conn is not None:
            # The client came back on a new websocket before the old one was seen to die: that one is dead.
            self.conn.abort()
            self.connection_lost(self.conn)
        self.conn = conn
        self.connections += 1
        if self.connections > 1:
            self._count('resumed')
            self.last_activity = time.monotonic()
        self._flow_changed()
        tasks = [asyncio.ensure_future(conn.sender()), asyncio.ensure_future(conn.reader())]
        waits = [asyncio.ensure_future(conn.ended.wait()), asyncio.ensure_future(self.done.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            if self.done.is_set():
                if self.shutting_down:
                    conn.abort()
                elif not conn.dropped and not ws.closed:
                    # The session is over: what was queued (channel_closed) went out in _close_channel.
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.close()
            else:
                self.connection_lost(conn)
                if conn.clean_close:
                    # The client hung up on purpose: the agent closes the PTY (SIGHUP, then the kill).
                    self.done.set()
                else:
                    self._count('disconnects')
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.done.is_set() and self._lifetime_task is not None:
                await asyncio.shield(self._lifetime_task)

    def connection_lost(self, conn: Connection) -> None:
        """Nothing more goes onto ``conn``; the session waits for its client to resume (or for its end)."""
        conn.usable = False
        if self.conn is conn:
            self.conn = None
            self._flow_changed()

    # ---- sending

    def _send_control(self, message: wire.WireMessage) -> None:
        if self.conn is not None:
            self.conn.enqueue(message.encode())

    def _send_stream(self, payload_type: int, payload: bytes) -> None:
        """A new output_stream_data message: sequenced, kept for resending, subject to the output faults."""
        if not payload:
            return
        self.replied = True
        size = len(payload)
        if self._seal is not None and payload_type in _SEALED_OUT:
            nonce = os.urandom(12)
            payload = nonce + self._seal.encrypt(nonce, payload, None)
        message = wire.WireMessage(wire.OUTPUT_STREAM_DATA, payload=payload, payload_type=payload_type,
                                   sequence_number=self.out_seq, flags=wire.FLAG_SYN if self.out_seq == 0 else 0)
        frame = message.encode()
        self.outgoing[self.out_seq] = [frame, time.monotonic()]
        self.out_seq += 1
        self.last_activity = time.monotonic()
        if not self.flowing:
            # Kept in the buffer; the resend loop delivers it once a client is back and publication runs.
            return
        cast(Connection, self.conn).send_new_output(frame, size)

    async def _resender(self) -> None:
        while not self.done.is_set():
            await asyncio.sleep(RESEND_POLL_SECONDS)
            conn = self.conn
            if not self.flowing or conn is None or not self.outgoing:
                continue
            seq = next(iter(self.outgoing))
            entry = self.outgoing[seq]
            # A message held back by the reorder fault has not been sent yet: nothing to resend.
            if entry[0] is not conn.held and time.monotonic() - entry[1] > self.rto:
                entry[1] = time.monotonic()
                self._count('resends')
                conn.enqueue(entry[0])

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
        conn = self.conn
        if conn is None:
            return   # the connection the input came on is gone: so is its acknowledgement
        if conn.acks_lost < conn.policy.lose_ack:
            conn.acks_lost += 1
            self._count('acks_lost')
            return
        self._count('acks_out')
        conn.enqueue(wire.acknowledge(message).encode())

    # ---- receiving

    def on_frame(self, data: bytes, conn: Connection) -> bool:
        """Handle one binary frame of ``conn``; True when the client ended the session (channel_closed)."""
        self._count('frames_in')
        self._count('bytes_in', len(data))
        try:
            message = wire.WireMessage.decode(data)
        except wire.WireError as exc:
            # The agent logs and drops what it cannot parse; counting makes client bugs visible to tests.
            LOG.warning('session %s: bad frame: %s', self.session.session_id, exc)
            self._count('frames_invalid')
            return False
        if conn is not self.conn:
            return False   # a frame of a connection already replaced by a resumed one
        if message.message_type == wire.INPUT_STREAM_DATA:
            self._on_input(message)
        elif message.message_type == wire.ACKNOWLEDGE:
            self._set_paused(False)
            self._count('acks_in')
            self._acknowledged(message.payload)
        elif message.message_type == wire.PAUSE_PUBLICATION:
            self._set_paused(True)
        elif message.message_type == wire.START_PUBLICATION:
            self._set_paused(False)
        elif message.message_type == wire.CHANNEL_CLOSED:
            return True
        else:
            self._count('frames_ignored')
        return False

    def _set_paused(self, paused: bool) -> None:
        if paused != self.paused:
            self.paused = paused
            self._flow_changed()

    def _apply_input(self, message: wire.WireMessage) -> None:
        assert self.process is not None
        if message.payload_type == wire.OUTPUT:
            if self.replied:
                # Input after output: the client waited for the agent (a round trip on its critical path). Not a
                # behaviour of the agent: a counter for the benchmark and for tests that pin round trips per task.
                self.replied = False
                self._count('turns')
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
            if not (0 <= cols < _UINT32 and 0 <= rows < _UINT32):
                self._count('frames_invalid')   # does not unmarshal into SizeData's uint32 fields
                return
            # pty.Setsize(&Winsize{Rows: uint16(rows), Cols: uint16(cols)}): narrowed, as Go converts.
            self.process.resize(rows & 0xFFFF, cols & 0xFFFF)
        # Flag (TerminateSession, ConnectToPortError...) and other payloads mean nothing to a shell session.

    def _on_input(self, message: wire.WireMessage) -> None:
        self._set_paused(False)
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
            # Already applied (a resend whose acknowledgement was lost, or input sent again after a resume).
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
        if key_arn != self.session.kms_key_id or len(data_key) != 64:
            asyncio.ensure_future(self._close_channel('Encryption handshake failed: the data key is not a 64-byte key of the '
                                                      f'{self.session.kms_key_origin}'))
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

    # ---- the command

    async def _start_command(self) -> None:
        await asyncio.sleep(self.settings.agent_start_ms / 1000)
        try:
            launch = self.session.launch()
        except LaunchRefused as exc:
            self.failed = True
            await self._close_channel(str(exc))
            return
        try:
            self.process = await self.state.runner.start(launch.sandbox, launch.argv, tty=True, rows=PTY_ROWS, cols=PTY_COLS,
                                                         env=launch.env)
        except OSError as exc:
            # exec failed (no such program...): the agent reports it and the session ends.
            self.failed = True
            await self._close_channel(f'Unable to start command: {exc}')
            return
        self._flow_changed()
        self._pump_task = asyncio.ensure_future(self._pump(self.process))
        if launch.profile:
            # Standard_Stream: right after starting the output pump the agent types the shell profile into the shell,
            # newline added (amazon-ssm-agent agent/session/shell/shell.go executeCommandsWithPty, shell_unix.go
            # runShellProfile): the terminal echoes it and the shell runs it when it reads its first line.
            self.process.write(launch.profile.encode() + b'\n')

    async def _wait_flowing(self) -> None:
        """The agent's writePump does not read the PTY while the channel is paused (or its client is away)."""
        while not self.flowing and not self.done.is_set():
            await asyncio.sleep(RESEND_POLL_SECONDS)

    async def _pump(self, process: SandboxProcess) -> None:
        await asyncio.sleep(self.settings.output_delay_ms / 1000)
        pending = b''
        while True:
            await self._wait_flowing()
            item = await process.read()
            if item is None:
                break
            pending += item[1]
            # The writePump reads at most one message's worth at a time, each time only while the channel is active:
            # a pause (or a lost client) leaves the rest unread rather than turned into messages nobody gets.
            while len(pending) > STREAM_PAYLOAD_SIZE:
                cut = _utf8_cut(pending[:STREAM_PAYLOAD_SIZE]) or STREAM_PAYLOAD_SIZE
                await self._wait_flowing()
                self._send_stream(wire.OUTPUT, pending[:cut])
                pending = pending[cut:]
            cut = _utf8_cut(pending)
            await self._wait_flowing()
            self._send_stream(wire.OUTPUT, pending[:cut])
            pending = pending[cut:]
            if self.done.is_set():
                return
        await self._wait_flowing()
        self._send_stream(wire.OUTPUT, pending)
        await process.wait()
        await self._close_channel('')

    async def _close_channel(self, output: str, flush: bool = True) -> None:
        """Flush (wait for acknowledgements, 2 s at most), then channel_closed and a normal close.

        Without a client the flush just times out and the channel_closed goes nowhere, as the agent's
        PrepareToCloseChannel does: the session is over either way, and a later ResumeSession finds it gone.
        """
        if self.done.is_set() or self.closing:
            return
        self.closing = True
        deadline = time.monotonic() + CLOSE_FLUSH_SECONDS
        while flush and self.outgoing and time.monotonic() < deadline and not self.done.is_set():
            await asyncio.sleep(RESEND_POLL_SECONDS)
        if self.done.is_set():
            return
        created = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'
        message_id = uuid.uuid4()
        payload = wire.go_json({'MessageId': str(message_id), 'CreatedDate': created, 'DestinationId': self.session.target,
                                'SessionId': self.session.session_id, 'MessageType': wire.CHANNEL_CLOSED, 'SchemaVersion': 1,
                                'Output': output})
        conn = self.conn
        self._send_control(wire.WireMessage(wire.CHANNEL_CLOSED, payload=payload, message_id=message_id, flags=wire.CONTROL_FLAGS))
        self._count('channels_closed')
        if conn is not None:
            # Let the sender (and its latency) deliver everything queued before the close frame.
            await conn.flush(CLOSE_FLUSH_SECONDS + conn.policy.message_latency_ms / 1000)
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
            {'ActionType': 'KMSEncryption', 'ActionParameters': {'KMSKeyId': self.session.kms_key_id,
                                                                 'Challenge': self.kms_challenge}},
            {'ActionType': 'SessionType', 'ActionParameters': {'SessionType': self.session.plugin_name, 'Properties': None}},
        ]}
        self.handshake_started = time.monotonic()
        self._send_stream(wire.HANDSHAKE_REQUEST, wire.go_json(request))
        await asyncio.sleep(HANDSHAKE_TIMEOUT_SECONDS)
        if self.handshake_pending:
            await self._close_channel('Handshake timed out. Please ensure that you are using the latest session manager plugin.')

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
    session: ChannelSession | None = None
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
        known = registry(state).sessions.get(session_id)
        state.stats.count_ws(known.ws_service if known is not None else WS_SERVICE, 'sessions_refused')
        await ws.close(code=POLICY_VIOLATION, message=reason.encode())
        return ws
    policy = state.faults.ws_policy('ws', session.fault_action)
    agent = session.agent
    if agent is None:
        agent = session.agent = AgentSession(state, session)
        agent.start()
    await agent.serve(request, ws, policy)
    return ws


async def _on_shutdown(app: web.Application) -> None:
    """End every open session (command killed, socket closed) so the server can stop without waiting for clients."""
    channels: set[AgentSession] = app[STATE_KEY].extensions.get(CHANNELS_KEY, set())
    for channel in list(channels):
        channel.shutting_down = True
        if channel.conn is not None:
            channel.conn.abort()
        channel.done.set()
    deadline = time.monotonic() + 5
    while channels and time.monotonic() < deadline:
        await asyncio.sleep(RESEND_POLL_SECONDS)


def add_routes(app: web.Application) -> None:
    app.router.add_get(ROUTE, data_channel)
    app.on_shutdown.append(_on_shutdown)
