# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Sans-I/O state machine for the reliable, ordered stream on an SSM data channel.

The transport owns the websocket and the clock. It feeds every received frame to
DataChannelState.receive(), sends whatever comes back, and calls due_resends() whenever
next_deadline() passes. Nothing here blocks, sleeps, reads a clock or touches a socket.

Behaviour follows AWS's two implementations (session-manager-plugin src/datachannel/streaming.go
for the client, amazon-ssm-agent agent/session/datachannel/datachannel.go for the agent):

* each direction numbers its stream messages from 0; every one is acknowledged by the receiver;
* the receiver handles only the expected sequence number, acknowledges and buffers later ones, and
  re-acknowledges earlier ones (the agent does; AWS's client stays silent, which leaves a sender whose
  ack was lost resending for minutes, so we follow the agent on both sides);
* the sender keeps unacknowledged messages and resends them after a retransmission timeout
  computed from measured round-trip times (smoothed RTT starts at 100 ms, variation at 0, timeout at
  200 ms; alpha 1/8, beta 1/4, clock granularity 10 ms, ceiling 1 s);
* pause_publication stops sending (new messages are queued) until start_publication, or until the
  peer is evidently back because a stream message or acknowledgement arrives (the agent's rule).

Two RFC 6298 rules AWS does not apply are applied here: a message that was retransmitted gives no RTT
sample (Karn's algorithm), and each timeout doubles the retransmission timeout (up to the 1 s ceiling)
until the next valid sample.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import time
import typing as t
import uuid

from .messages import (
    ACKNOWLEDGE,
    CHANNEL_CLOSED,
    FLAG_ACK,
    FLAG_NONE,
    FLAG_SYN,
    INPUT_STREAM_DATA,
    OUTPUT_STREAM_DATA,
    PAUSE_PUBLICATION,
    START_PUBLICATION,
    AgentMessage,
    PayloadType,
    SSMProtocolError,
)
from .payloads import (
    AcknowledgeContent,
    ChannelClosed,
    EncryptionChallenge,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    parse_acknowledge,
    parse_channel_closed,
    parse_encryption_challenge,
    parse_handshake_complete,
    parse_handshake_request,
    parse_handshake_response,
)

# Payload bytes per stream message (config.go StreamDataPayloadSize; AWS's shell reads stdin 1024 bytes at a time).
STREAM_DATA_PAYLOAD_SIZE = 1024

# Retransmission timing, in seconds (config.go in both repositories).
DEFAULT_ROUND_TRIP_TIME = 0.100
DEFAULT_ROUND_TRIP_TIME_VARIATION = 0.0
INITIAL_RETRANSMISSION_TIMEOUT = 0.200
RTT_ALPHA = 1.0 / 8.0
RTT_BETA = 1.0 / 4.0
CLOCK_GRANULARITY = 0.010
MAX_RETRANSMISSION_TIMEOUT = 1.0
# AWS's client gives up after 3000 resend attempts 100 ms apart: five minutes.
RESEND_GIVE_UP_AFTER = 300.0

# AWS's client holds 10000 messages each way (the agent 100000).
INCOMING_BUFFER_CAPACITY = 10000
OUTGOING_BUFFER_CAPACITY = 10000
# Our own flow control, which AWS's client lacks: at most this many stream messages in flight. Without
# it a large upload floods a busy agent, acks fall behind the retransmission timer, and the spurious
# resends (measured: two of every three input messages on an 8 MB copy) starve the channel further.
SEND_WINDOW = 256

# Acknowledgements of the current connection remembered (newest first kept) to send again after a reconnect.
ACK_MEMORY = INCOMING_BUFFER_CAPACITY

# Slack when comparing times, so a transport that wakes exactly at next_deadline() (or a test's decimal
# fake clock) finds the message due despite float rounding.
_TIME_SLACK = 1e-6


class Role(enum.Enum):
    """Which end of the data channel this state machine plays."""

    CLIENT = 'client'
    AGENT = 'agent'

    @property
    def send_type(self) -> str:
        """Message type of the stream messages this end sends."""
        return INPUT_STREAM_DATA if self is Role.CLIENT else OUTPUT_STREAM_DATA

    @property
    def receive_type(self) -> str:
        """Message type of the stream messages this end receives."""
        return OUTPUT_STREAM_DATA if self is Role.CLIENT else INPUT_STREAM_DATA


# Payload types each end handles itself (the handshake), which are never refused as "not ready".
_CONTROL_PAYLOADS = {
    Role.CLIENT: frozenset((PayloadType.HANDSHAKE_REQUEST, PayloadType.HANDSHAKE_COMPLETE, PayloadType.ENC_CHALLENGE_REQUEST)),
    Role.AGENT: frozenset((PayloadType.HANDSHAKE_RESPONSE, PayloadType.ENC_CHALLENGE_RESPONSE)),
}
# With KMS on, which payload types are sealed in each direction (streaming.go / datachannel.go).
_ENCRYPTED_SENT = {
    Role.CLIENT: frozenset((PayloadType.OUTPUT,)),
    Role.AGENT: frozenset((PayloadType.OUTPUT, PayloadType.STDERR, PayloadType.EXIT_CODE)),
}
_ENCRYPTED_RECEIVED = {
    Role.CLIENT: frozenset((PayloadType.OUTPUT, PayloadType.STDERR, PayloadType.EXIT_CODE)),
    Role.AGENT: frozenset((PayloadType.OUTPUT,)),
}


# ---------------------------------------------------------------------------------------------
# Events returned by receive()
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StreamData:
    """In-order stream payload for the application (terminal output, input, size, exit code...)."""

    payload_type: int
    payload: bytes = dataclasses.field(repr=False)
    sequence_number: int


@dataclasses.dataclass(frozen=True)
class HandshakeRequested:
    """The agent asked for a handshake; answer with a HandshakeResponse stream message."""

    request: HandshakeRequest
    sequence_number: int


@dataclasses.dataclass(frozen=True)
class HandshakeResponded:
    """The client answered the handshake (agent role)."""

    response: HandshakeResponse
    sequence_number: int


@dataclasses.dataclass(frozen=True)
class HandshakeCompleted:
    """The agent finished the handshake."""

    complete: HandshakeComplete
    sequence_number: int


@dataclasses.dataclass(frozen=True)
class EncryptionChallengeReceived:
    """An EncChallengeRequest (client role) or EncChallengeResponse (agent role) arrived."""

    payload_type: int
    challenge: EncryptionChallenge
    sequence_number: int


@dataclasses.dataclass(frozen=True)
class ChannelClosedEvent:
    """The gateway closed the channel: the session is over."""

    info: ChannelClosed


@dataclasses.dataclass(frozen=True)
class PublicationPaused:
    """The peer is unreachable for now; sending is held until it returns."""


@dataclasses.dataclass(frozen=True)
class PublicationStarted:
    """The peer is reachable again; held messages are returned by due_resends()."""


@dataclasses.dataclass(frozen=True)
class UnexpectedMessage:
    """A message type this end does not handle (AWS logs and ignores these)."""

    message_type: str


Event = t.Union[StreamData, HandshakeRequested, HandshakeResponded, HandshakeCompleted, EncryptionChallengeReceived,
                ChannelClosedEvent, PublicationPaused, PublicationStarted, UnexpectedMessage]


class ReceiveResult(t.NamedTuple):
    """What receive() produced: events for the application and messages to send (acknowledgements)."""

    events: list[Event]
    to_send: list[AgentMessage]


# ---------------------------------------------------------------------------------------------
# Retransmission timer
# ---------------------------------------------------------------------------------------------
class RetransmissionTimer:
    """Smoothed round-trip time and the retransmission timeout derived from it."""

    def __init__(self) -> None:
        self.srtt = DEFAULT_ROUND_TRIP_TIME
        self.rttvar = DEFAULT_ROUND_TRIP_TIME_VARIATION
        self.rto = INITIAL_RETRANSMISSION_TIMEOUT

    def sample(self, rtt: float) -> None:
        """Fold one measured round-trip time (seconds) into the estimate."""
        # Same order as AWS: the variation uses the previous smoothed value.
        self.rttvar = (1 - RTT_BETA) * self.rttvar + RTT_BETA * abs(self.srtt - rtt)
        self.srtt = (1 - RTT_ALPHA) * self.srtt + RTT_ALPHA * rtt
        self.rto = min(self.srtt + max(CLOCK_GRANULARITY, 4 * self.rttvar), MAX_RETRANSMISSION_TIMEOUT)

    def back_off(self) -> None:
        """Double the timeout after it expired (RFC 6298 5.5), within the ceiling."""
        self.rto = min(self.rto * 2, MAX_RETRANSMISSION_TIMEOUT)


@dataclasses.dataclass
class _Outgoing:
    message: AgentMessage
    first_sent: float | None
    last_sent: float | None
    retransmitted: bool = False
    attempts: int = 0


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------
# The state machine
# ---------------------------------------------------------------------------------------------
class DataChannelState:
    """Sequencing, acknowledgement, reordering and retransmission for one data channel.

    `now` arguments are seconds on any monotonic clock. `clock_ms` gives the wall-clock epoch
    milliseconds written into CreatedDate, and `new_message_id` the message ids; both are
    injectable so tests produce exact bytes.
    """

    def __init__(self, role: Role = Role.CLIENT, *, clock_ms: t.Callable[[], int] = _wall_clock_ms,
                 new_message_id: t.Callable[[], uuid.UUID] = uuid.uuid4, translate_lone_newline: bool = False,
                 payload_size: int = STREAM_DATA_PAYLOAD_SIZE, incoming_capacity: int = INCOMING_BUFFER_CAPACITY,
                 outgoing_capacity: int = OUTGOING_BUFFER_CAPACITY, give_up_after: float = RESEND_GIVE_UP_AFTER,
                 window: int = SEND_WINDOW) -> None:
        if payload_size < 1 or window < 1:
            raise ValueError('payload_size and window must be positive')
        self.role = role
        self._clock_ms = clock_ms
        self._new_message_id = new_message_id
        # AWS's client turns an input of exactly b"\n" into b"\r" (Enter in a Windows shell); off by default.
        self.translate_lone_newline = translate_lone_newline
        self.payload_size = payload_size
        self.incoming_capacity = incoming_capacity
        self.outgoing_capacity = outgoing_capacity
        self.give_up_after = give_up_after
        self.window = window
        self.timer = RetransmissionTimer()
        self.expected_sequence_number = 0
        self.next_sequence_number = 0
        self.paused = False
        self.closed = False
        # False while the application cannot take stream data yet (the agent before its PTY exists):
        # in-order data is then neither acknowledged nor consumed, so the sender resends it later.
        self.ready = True
        self._incoming: dict[int, AgentMessage] = {}
        # Unacknowledged messages: those sent at least once (by sequence number, oldest first) and those
        # held back by a pause or a full window (oldest first). Kept apart so the timers only ever
        # look at what is in flight, at most `window` messages, however large the upload.
        self._flight: dict[int, _Outgoing] = {}
        self._held: collections.deque[_Outgoing] = collections.deque()
        self._encrypt: t.Callable[[bytes], bytes] | None = None
        self._decrypt: t.Callable[[bytes], bytes] | None = None
        # What we acknowledged on the current connection, by sequence number: a lost connection may have lost
        # those acknowledgements too, and the peer would replay every such message (see reconnected()).
        self._acked: collections.OrderedDict[int, AcknowledgeContent] = collections.OrderedDict()

    # -- configuration -------------------------------------------------------------------------
    def set_cipher(self, encrypt: t.Callable[[bytes], bytes] | None, decrypt: t.Callable[[bytes], bytes] | None) -> None:
        """Install (or remove) the KMS session cipher applied per message to the payload types AWS encrypts."""
        self._encrypt = encrypt
        self._decrypt = decrypt

    def set_ready(self, ready: bool) -> list[Event]:
        """Say whether the application takes stream data; becoming ready returns buffered events."""
        self.ready = ready
        events: list[Event] = []
        if ready:
            self._drain(events)
        return events

    # -- state ---------------------------------------------------------------------------------
    @property
    def unacked_count(self) -> int:
        """Number of sent stream messages not yet acknowledged."""
        return len(self._flight) + len(self._held)

    @property
    def _outgoing(self) -> list[_Outgoing]:
        return [*self._flight.values(), *self._held]

    @property
    def buffered_count(self) -> int:
        """Number of received out-of-order stream messages waiting for a gap to fill."""
        return len(self._incoming)

    def unacked_messages(self) -> list[AgentMessage]:
        """Return the unacknowledged stream messages, oldest first."""
        return [item.message for item in self._outgoing]

    # -- sending -------------------------------------------------------------------------------
    def send(self, data: bytes, payload_type: int = PayloadType.OUTPUT, *, now: float) -> list[AgentMessage]:
        """Cut data into stream messages, remember them for retransmission and return those to send now."""
        if self.closed:
            raise SSMProtocolError('cannot send on a closed data channel')
        data = bytes(data)
        if not data:
            # The agent ignores empty stream payloads; sending one would only burn a sequence number.
            return []
        if self.translate_lone_newline and data == b'\n':
            data = b'\r'
        chunks = [data[start:start + self.payload_size] for start in range(0, len(data), self.payload_size)]
        if self.unacked_count + len(chunks) > self.outgoing_capacity:
            raise SSMProtocolError('outgoing buffer full: %d messages unacknowledged, capacity %d'
                                   % (self.unacked_count, self.outgoing_capacity))
        payload_type = int(payload_type)
        seal = self._encrypt if payload_type in _ENCRYPTED_SENT[self.role] else None
        ready: list[AgentMessage] = []
        for chunk in chunks:
            sequence = self.next_sequence_number
            message = AgentMessage(
                message_type=self.role.send_type,
                sequence_number=sequence,
                # The agent marks its first stream message SYN; AWS's client always sends 0.
                flags=FLAG_SYN if (self.role is Role.AGENT and sequence == 0) else FLAG_NONE,
                message_id=self._new_message_id(),
                payload_type=payload_type,
                payload=seal(chunk) if seal is not None else chunk,
                created_date=self._clock_ms(),
            )
            self.next_sequence_number += 1
            if self.paused or self._held or len(self._flight) >= self.window:
                # Held, not lost: due_resends() returns it once publication starts again / the window opens.
                self._held.append(_Outgoing(message, first_sent=None, last_sent=None))
            else:
                self._flight[sequence] = _Outgoing(message, first_sent=now, last_sent=now)
                ready.append(message)
        return ready

    next_input = send
    next_output = send

    def due_resends(self, now: float) -> list[AgentMessage]:
        """Return what to send now: the oldest message whose timeout expired, then held messages the window admits.

        Only the oldest expired message is resent per call, as TCP does: after a loss the later ones
        are usually fine, and resending all of them at once is what turns a slow agent into a stalled one.
        """
        if self.paused:
            return []
        due: list[AgentMessage] = []
        for item in self._flight.values():
            if now - t.cast(float, item.last_sent) + _TIME_SLACK >= self.timer.rto:
                item.retransmitted = True
                item.attempts += 1
                item.last_sent = now
                due.append(item.message)
                self.timer.back_off()
                break
            if not item.retransmitted:
                break  # everything behind it was sent later (see next_deadline)
        while self._held and len(self._flight) < self.window:
            item = self._held.popleft()
            item.first_sent = item.last_sent = now
            self._flight[item.message.sequence_number] = item
            due.append(item.message)
        return due

    def reconnected(self, now: float) -> list[AgentMessage]:
        """The transport came back on a new connection (ResumeSession): return the messages to send again now.

        Nothing is reset, as in AWS's client (streaming.go Reconnect keeps its buffers and numbers): the
        expected incoming sequence number stays, so the peer's replayed messages below it are duplicates
        (acknowledged again, never delivered twice), and new input goes on numbering where it stopped.

        First, the acknowledgements sent on the lost connection go out again (AWS's client does not do this):
        the agent resends only its oldest unacknowledged message, one per round trip, and closes a finished
        session after waiting 2 s for acknowledgements (datachannel.go PrepareToCloseChannel), so every ack the
        old connection swallowed would cost a round trip and could cost the end of the output. Duplicate acks
        are harmless: the agent matches them on the sequence number and ignores unknown ones.
        Then every message that was in flight goes out again with its original sequence number and bytes, so
        the agent drops the copies of input it already applied; held messages wait for the window as before.
        A pause belonged to the old connection: the service tells the new one again if the peer is still away.
        """
        self.paused = False
        remembered = list(self._acked.values())
        self._acked.clear()
        again = [self._ack_message(content) for content in remembered]
        for item in self._flight.values():
            item.retransmitted = True   # no RTT sample from a message sent on two connections (Karn)
            item.attempts += 1
            item.last_sent = now
            again.append(item.message)
        return again

    def next_deadline(self) -> float | None:
        """Return when due_resends() next has work (-inf: now), or None if nothing waits."""
        if self.paused or not (self._flight or self._held):
            return None
        if self._held and len(self._flight) < self.window:
            return float('-inf')
        deadline: float | None = None
        # Messages enter the flight in order, so only the retransmitted ones at its head can have been
        # sent later than a message behind them: the earliest last_sent is among the head up to the
        # first message never retransmitted. This keeps a 256-message window O(1) per call.
        for item in self._flight.values():
            candidate = t.cast(float, item.last_sent) + self.timer.rto
            if deadline is None or candidate < deadline:
                deadline = candidate
            if not item.retransmitted:
                break
        return deadline

    def stalled(self, now: float) -> bool:
        """True when the oldest unacknowledged message has waited longer than give_up_after."""
        if self.paused:
            return False
        # The head of the flight was sent first.
        oldest = next(iter(self._flight.values()), None)
        return oldest is not None and now - t.cast(float, oldest.first_sent) + _TIME_SLACK >= self.give_up_after

    # -- receiving -----------------------------------------------------------------------------
    def receive_bytes(self, data: bytes, now: float) -> ReceiveResult:
        """Decode one binary frame and receive it."""
        return self.receive(AgentMessage.decode(data), now)

    def receive(self, message: AgentMessage, now: float) -> ReceiveResult:
        """Process one received message; return events and the acknowledgements to send."""
        events: list[Event] = []
        to_send: list[AgentMessage] = []
        kind = message.message_type
        if kind == self.role.receive_type:
            # Anything from the peer proves it is reachable again (the agent's rule).
            self.paused = False
            self._receive_stream(message, events, to_send)
        elif kind == ACKNOWLEDGE:
            self.paused = False
            self._receive_ack(parse_acknowledge(message.payload), now)
        elif kind == CHANNEL_CLOSED:
            try:
                info = parse_channel_closed(message.payload)
            except SSMProtocolError:
                # AWS's client closes even when it cannot read the details.
                info = ChannelClosed()
            self.closed = True
            events.append(ChannelClosedEvent(info))
        elif kind == PAUSE_PUBLICATION:
            self.paused = True
            events.append(PublicationPaused())
        elif kind == START_PUBLICATION:
            self.paused = False
            events.append(PublicationStarted())
        else:
            events.append(UnexpectedMessage(kind))
        return ReceiveResult(events, to_send)

    def _receive_ack(self, content: AcknowledgeContent, now: float) -> None:
        # AWS matches acknowledgements on the sequence number alone.
        item = self._flight.pop(content.sequence_number, None)
        if item is not None and not item.retransmitted:
            self.timer.sample(max(0.0, now - t.cast(float, item.last_sent)))

    def _receive_stream(self, message: AgentMessage, events: list[Event], to_send: list[AgentMessage]) -> None:
        sequence = message.sequence_number
        if sequence == self.expected_sequence_number:
            produced = self._consume(message)
            if produced is None:
                return  # not ready: no ack, so the sender tries again
            to_send.append(self._ack_for(message))
            self.expected_sequence_number += 1
            events.extend(produced)
            self._drain(events)
        elif sequence > self.expected_sequence_number:
            if sequence in self._incoming:
                to_send.append(self._ack_for(message))
            elif len(self._incoming) < self.incoming_capacity:
                to_send.append(self._ack_for(message))
                self._incoming[sequence] = message
            # A full buffer drops the message unacknowledged; the sender resends it later.
        else:
            # Already processed: our acknowledgement was probably lost, so send it again.
            to_send.append(self._ack_for(message))

    def _drain(self, events: list[Event]) -> None:
        while self.expected_sequence_number in self._incoming:
            produced = self._consume(self._incoming[self.expected_sequence_number])
            if produced is None:
                return
            del self._incoming[self.expected_sequence_number]
            self.expected_sequence_number += 1
            events.extend(produced)

    def _consume(self, message: AgentMessage) -> list[Event] | None:
        payload_type = message.payload_type
        sequence = message.sequence_number
        if payload_type in _CONTROL_PAYLOADS[self.role]:
            if payload_type == PayloadType.HANDSHAKE_REQUEST:
                return [HandshakeRequested(parse_handshake_request(message.payload), sequence)]
            if payload_type == PayloadType.HANDSHAKE_COMPLETE:
                return [HandshakeCompleted(parse_handshake_complete(message.payload), sequence)]
            if payload_type == PayloadType.HANDSHAKE_RESPONSE:
                return [HandshakeResponded(parse_handshake_response(message.payload), sequence)]
            return [EncryptionChallengeReceived(payload_type, parse_encryption_challenge(message.payload), sequence)]
        if not self.ready:
            return None
        payload = message.payload
        if self._decrypt is not None and payload_type in _ENCRYPTED_RECEIVED[self.role]:
            payload = self._decrypt(payload)
        return [StreamData(payload_type, payload, sequence)]

    def _ack_for(self, message: AgentMessage) -> AgentMessage:
        content = AcknowledgeContent(
            message_type=message.message_type,
            message_id=str(message.message_id),
            sequence_number=message.sequence_number,
            is_sequential_message=True,
        )
        return self._ack_message(content)

    def _ack_message(self, content: AcknowledgeContent) -> AgentMessage:
        self._acked.pop(content.sequence_number, None)
        self._acked[content.sequence_number] = content
        if len(self._acked) > ACK_MEMORY:
            self._acked.popitem(last=False)
        # Acknowledgements are not sequenced: AWS sends them with sequence 0, flags 3, payload type 0.
        return AgentMessage(
            message_type=ACKNOWLEDGE,
            sequence_number=0,
            flags=FLAG_ACK,
            message_id=self._new_message_id(),
            payload_type=0,
            payload=content.to_json(),
            created_date=self._clock_ms(),
        )
