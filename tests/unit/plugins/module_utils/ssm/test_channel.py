# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Tests of the sans-I/O data channel state machine with a fake clock and fixed message ids."""

from __future__ import annotations

import itertools
import uuid

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils.ssm.channel import (
    ChannelClosedEvent,
    DataChannelState,
    EncryptionChallengeReceived,
    HandshakeCompleted,
    HandshakeRequested,
    HandshakeResponded,
    PublicationPaused,
    PublicationStarted,
    RetransmissionTimer,
    Role,
    StreamData,
    UnexpectedMessage,
)
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.messages import (
    ACKNOWLEDGE,
    CHANNEL_CLOSED,
    INPUT_STREAM_DATA,
    OUTPUT_STREAM_DATA,
    PAUSE_PUBLICATION,
    START_PUBLICATION,
    AgentMessage,
    PayloadType,
    SSMProtocolError,
)
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.payloads import (
    AcknowledgeContent,
    ChannelClosed,
    HandshakeComplete,
    HandshakeResponse,
    ProcessedClientAction,
    parse_acknowledge,
)

CREATED_MS = 1700000000123
ACK_ID = uuid.UUID('11111111-2222-3333-4444-555555555555')
PEER_ID = uuid.UUID('dd01e56b-ff48-483e-a508-b5f073f31b16')

# An acknowledge frame byte for byte: these are the bytes AWS's own SerializeClientMessageWithAcknowledgeContent
# produces for this id and date (checked by compiling session-manager-plugin's src/message locally).
ACK_FRAME_HEX = (
    '00000074'                                                             # HeaderLength 116
    '61636b6e6f776c65646765' + '20' * 21 +                                 # "acknowledge" + 21 spaces
    '00000001'                                                             # SchemaVersion 1
    '0000018bcfe5687b'                                                     # CreatedDate 1700000000123
    '0000000000000000'                                                     # SequenceNumber 0 (acks are not sequenced)
    '0000000000000003'                                                     # Flags 3
    '4444555555555555' '1111111122223333'                                  # MessageId, halves swapped
    '826149d35e09fb655b0de7148dac393b940c08944aeccbefab44cbd86c9be050'     # SHA-256 of the JSON below
    '00000000'                                                             # PayloadType 0
    '000000b0'                                                             # PayloadLength 176
) + (b'{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16",'
     b'"AcknowledgedMessageSequenceNumber":2,"IsSequentialMessage":true}').hex()


def _ids(start: int = 1):
    counter = itertools.count(start)
    return lambda: uuid.UUID(int=next(counter))


def _state(role: Role = Role.CLIENT, **kwargs) -> DataChannelState:
    kwargs.setdefault('new_message_id', _ids())
    return DataChannelState(role, clock_ms=lambda: CREATED_MS, **kwargs)


def _output(seq: int, payload: bytes = b'x', payload_type: int = PayloadType.OUTPUT, kind: str = OUTPUT_STREAM_DATA,
            message_id: uuid.UUID | None = None) -> AgentMessage:
    return AgentMessage(message_type=kind, sequence_number=seq, payload_type=payload_type, payload=payload,
                        created_date=CREATED_MS, message_id=message_id or uuid.UUID(int=1000 + seq))


def _ack(seq: int, kind: str = INPUT_STREAM_DATA) -> AgentMessage:
    content = AcknowledgeContent(kind, str(uuid.UUID(int=seq + 1)), seq, True)
    return AgentMessage(message_type=ACKNOWLEDGE, flags=3, payload=content.to_json(), created_date=CREATED_MS)


def _acked_sequences(messages: list[AgentMessage]) -> list[int]:
    assert all(m.message_type == ACKNOWLEDGE for m in messages)
    return [parse_acknowledge(m.payload).sequence_number for m in messages]


# --- sending -------------------------------------------------------------------------------------
def test_input_is_cut_at_1024_bytes_with_sequence_numbers_from_zero():
    state = _state()
    data = bytes(range(256)) * 9 + b'tail'  # 2308 bytes
    sent = state.next_input(data, now=0.0)
    assert [len(m.payload) for m in sent] == [1024, 1024, 260]
    assert [m.sequence_number for m in sent] == [0, 1, 2]
    assert b''.join(m.payload for m in sent) == data
    assert {m.message_type for m in sent} == {INPUT_STREAM_DATA}
    assert {m.flags for m in sent} == {0}
    assert {m.payload_type for m in sent} == {1}
    assert state.next_input(b'more', PayloadType.SIZE, now=0.0)[0].sequence_number == 3
    assert state.unacked_count == 4


def test_first_input_message_bytes_are_exact():
    state = _state(new_message_id=lambda: uuid.UUID('01020304-0506-0708-090a-0b0c0d0e0f10'))
    (message,) = state.next_input(b'ls\r', now=0.0)
    assert message.encode().hex() == (
        '00000074'                                                         # HeaderLength 116
        '696e7075745f73747265616d5f64617461' + '20' * 15 +                 # "input_stream_data", space-padded
        '00000001'                                                         # SchemaVersion 1
        '0000018bcfe5687b'                                                 # CreatedDate 1700000000123
        '0000000000000000'                                                 # SequenceNumber 0
        '0000000000000000'                                                 # Flags 0 (AWS's client)
        '090a0b0c0d0e0f10' '0102030405060708'                              # MessageId, halves swapped
        '1d887ce0f8672e4914d9000e801cd74ecd805dd9366c0bc42dc16adc0197dc2f'  # SHA-256("ls\r")
        '00000001'                                                         # PayloadType 1 (Output)
        '00000003'                                                         # PayloadLength 3
        '6c730d')                                                          # "ls\r"


def test_empty_input_sends_nothing():
    state = _state()
    assert state.next_input(b'', now=0.0) == []
    assert state.next_sequence_number == 0


def test_lone_newline_translation_is_opt_in():
    assert _state().next_input(b'\n', now=0.0)[0].payload == b'\n'
    state = _state(translate_lone_newline=True)
    assert state.next_input(b'\n', now=0.0)[0].payload == b'\r'
    assert state.next_input(b'a\n', now=0.0)[0].payload == b'a\n'


def test_agent_role_sends_output_with_syn_on_first_message():
    state = _state(Role.AGENT)
    first, second = state.send(b'a' * 1025, PayloadType.OUTPUT, now=0.0)
    assert (first.message_type, first.flags, first.sequence_number) == (OUTPUT_STREAM_DATA, 1, 0)
    assert (second.message_type, second.flags, second.sequence_number) == (OUTPUT_STREAM_DATA, 0, 1)


def test_outgoing_capacity_is_enforced_before_anything_changes():
    state = _state(outgoing_capacity=2)
    state.next_input(b'a', now=0.0)
    with pytest.raises(SSMProtocolError, match='outgoing buffer full: 1 messages unacknowledged, capacity 2'):
        state.next_input(b'b' * 1025, now=0.0)
    assert state.next_sequence_number == 1 and state.unacked_count == 1


# --- acknowledging what we receive ---------------------------------------------------------------
def test_ack_frame_bytes_are_exactly_awss():
    state = _state(new_message_id=lambda: ACK_ID)
    state.expected_sequence_number = 2
    events, to_send = state.receive(_output(2, b'hi', message_id=PEER_ID), now=0.0)
    assert events == [StreamData(1, b'hi', 2)]
    assert [m.encode().hex() for m in to_send] == [ACK_FRAME_HEX]


def test_in_order_output_is_delivered_and_acked():
    state = _state()
    events, to_send = state.receive(_output(0, b'hello'), now=0.0)
    assert events == [StreamData(PayloadType.OUTPUT, b'hello', 0)]
    assert _acked_sequences(to_send) == [0]
    ack = parse_acknowledge(to_send[0].payload)
    assert ack == AcknowledgeContent(OUTPUT_STREAM_DATA, str(uuid.UUID(int=1000)), 0, True)
    assert (to_send[0].flags, to_send[0].sequence_number, to_send[0].payload_type) == (3, 0, 0)
    assert state.expected_sequence_number == 1


def test_reordering_buffers_later_messages_and_drains_in_order():
    state = _state()
    events, to_send = state.receive(_output(2, b'c'), now=0.0)
    assert events == [] and _acked_sequences(to_send) == [2]
    events, to_send = state.receive(_output(1, b'b'), now=0.0)
    assert events == [] and _acked_sequences(to_send) == [1]
    assert state.buffered_count == 2
    events, to_send = state.receive(_output(0, b'a'), now=0.0)
    assert [(e.sequence_number, e.payload) for e in events] == [(0, b'a'), (1, b'b'), (2, b'c')]
    assert _acked_sequences(to_send) == [0]
    assert state.expected_sequence_number == 3 and state.buffered_count == 0


def test_duplicates_are_acked_again_and_dropped():
    state = _state()
    state.receive(_output(0, b'a'), now=0.0)
    events, to_send = state.receive(_output(0, b'a'), now=0.0)
    assert events == [] and _acked_sequences(to_send) == [0]
    state.receive(_output(2, b'c'), now=0.0)
    events, to_send = state.receive(_output(2, b'c'), now=0.0)
    assert events == [] and _acked_sequences(to_send) == [2] and state.buffered_count == 1
    events = state.receive(_output(1, b'b'), now=0.0).events
    assert [e.payload for e in events] == [b'b', b'c']


def test_full_incoming_buffer_drops_without_ack():
    state = _state(incoming_capacity=1)
    assert _acked_sequences(state.receive(_output(1), now=0.0).to_send) == [1]
    assert state.receive(_output(2), now=0.0).to_send == []
    assert state.buffered_count == 1


def test_not_ready_receiver_neither_acks_nor_consumes_in_order_data():
    # The agent before its PTY exists: in-order input is refused so the client resends it.
    state = _state(Role.AGENT)
    state.ready = False
    events, to_send = state.receive(_output(0, b'a', kind=INPUT_STREAM_DATA), now=0.0)
    assert events == [] and to_send == [] and state.expected_sequence_number == 0
    events, to_send = state.receive(_output(1, b'b', kind=INPUT_STREAM_DATA), now=0.0)
    assert events == [] and _acked_sequences(to_send) == [1]
    assert state.set_ready(True) == []  # sequence 0 is still missing
    events, to_send = state.receive(_output(0, b'a', kind=INPUT_STREAM_DATA), now=0.0)
    assert [e.payload for e in events] == [b'a', b'b'] and _acked_sequences(to_send) == [0]


def test_set_ready_drains_buffered_messages():
    state = _state(Role.AGENT)
    state.receive(_output(0, b'a', kind=INPUT_STREAM_DATA), now=0.0)
    state.ready = False
    state.receive(_output(2, b'c', kind=INPUT_STREAM_DATA), now=0.0)
    state.receive(_output(1, b'b', kind=INPUT_STREAM_DATA), now=0.0)  # in order but refused
    assert state.expected_sequence_number == 1
    state.receive(_output(1, b'b', kind=INPUT_STREAM_DATA), now=0.0)
    events = state.set_ready(True)
    assert events == []  # 1 was never buffered, 2 waits for it
    events = state.receive(_output(1, b'b', kind=INPUT_STREAM_DATA), now=0.0).events
    assert [e.payload for e in events] == [b'b', b'c']


# --- acknowledgements of what we sent, RTT and resends -----------------------------------------
def test_ack_removes_message_and_measures_rtt_like_awss_test():
    # streaming_test.go TestCalculateRetransmissionTimeout: a 140 ms round trip from the defaults
    # gives RTT 105 ms, variation 10 ms, timeout 145 ms.
    state = _state()
    state.next_input(b'a', now=10.0)
    state.next_input(b'b', now=10.0)
    state.receive(_ack(0), now=10.140)
    assert state.unacked_count == 1
    assert state.unacked_messages()[0].sequence_number == 1
    assert round(state.timer.srtt, 9) == 0.105
    assert round(state.timer.rttvar, 9) == 0.010
    assert round(state.timer.rto, 9) == 0.145


def test_retransmission_timer_formula():
    timer = RetransmissionTimer()
    assert (timer.srtt, timer.rttvar, timer.rto) == (0.1, 0.0, 0.2)
    timer.sample(0.1)  # no variation: the 10 ms clock granularity is the floor
    assert round(timer.rto, 9) == 0.110
    for dummy in range(50):
        timer.sample(3.0)
    assert timer.rto == 1.0  # ceiling
    timer = RetransmissionTimer()
    timer.back_off()
    timer.back_off()
    timer.back_off()
    assert timer.rto == 1.0


def test_unknown_ack_is_ignored():
    state = _state()
    state.next_input(b'a', now=0.0)
    state.receive(_ack(5), now=0.1)
    assert state.unacked_count == 1


def test_resend_timing_with_fake_clock():
    state = _state()
    (message,) = state.next_input(b'a', now=100.0)
    assert state.next_deadline() == pytest.approx(100.2)
    assert state.due_resends(100.199) == []
    assert state.due_resends(100.2) == [message]
    assert state.timer.rto == pytest.approx(0.4)  # backed off
    assert state.due_resends(100.599) == []
    assert state.due_resends(100.6) == [message]
    assert state.timer.rto == pytest.approx(0.8)
    assert state.due_resends(101.4) == [message]
    assert state.timer.rto == 1.0
    assert state.due_resends(102.399) == []
    assert state.due_resends(102.4) == [message]


def test_resent_message_gives_no_rtt_sample():
    state = _state()
    state.next_input(b'a', now=0.0)
    state.due_resends(0.2)
    state.receive(_ack(0), now=0.25)
    assert state.unacked_count == 0
    assert (state.timer.srtt, state.timer.rttvar) == (0.1, 0.0)  # Karn: unchanged
    assert state.timer.rto == pytest.approx(0.4)  # the back-off stays until a valid sample
    state.next_input(b'b', now=1.0)
    state.receive(_ack(1), now=1.1)
    assert round(state.timer.rto, 9) == 0.110


def test_only_expired_messages_are_resent():
    state = _state()
    (first,) = state.next_input(b'a', now=0.0)
    (second,) = state.next_input(b'b', now=0.15)
    assert state.due_resends(0.2) == [first]
    # rto is now 0.4: second (sent 0.15) is due at 0.55, first (resent 0.2) at 0.6
    assert state.next_deadline() == pytest.approx(0.55)
    assert state.due_resends(0.55) == [second]


def test_only_the_oldest_expired_message_is_resent_per_call():
    state = _state()
    sent = state.next_input(b'a' * 3072, now=0.0)
    assert [m.sequence_number for m in sent] == [0, 1, 2]
    # All three expired together; like TCP, resend the oldest and wait for news before the rest.
    assert [m.sequence_number for m in state.due_resends(0.2)] == [0]
    state.receive(_ack(0), now=0.25)
    state.receive(_ack(1), now=0.25)
    # Message 1's ack was a valid sample (rto now 0.26875); message 2, sent at 0.0, is due then.
    assert round(state.timer.rto, 9) == 0.26875
    assert state.next_deadline() == pytest.approx(0.26875)
    assert [m.sequence_number for m in state.due_resends(0.26875)] == [2]


def test_send_window_holds_messages_until_acks_open_it():
    state = _state(window=2)
    sent = state.next_input(b'x' * 5 * 1024, now=0.0)
    assert [m.sequence_number for m in sent] == [0, 1]
    assert state.unacked_count == 5
    # Held messages are not due while the window is full: no busy loop, the next wake-up is the timer.
    assert state.next_deadline() == pytest.approx(0.2)
    assert state.due_resends(0.1) == []
    state.receive(_ack(0), now=0.1)
    assert state.next_deadline() == float('-inf')
    assert [m.sequence_number for m in state.due_resends(0.1)] == [2]
    state.receive(_ack(1), now=0.1)
    state.receive(_ack(2), now=0.1)
    assert [m.sequence_number for m in state.due_resends(0.1)] == [3, 4]
    # Later input queues behind held input, never ahead of it.
    state2 = _state(window=1)
    state2.next_input(b'a', now=0.0)
    assert state2.next_input(b'b', now=0.0) == []
    state2.receive(_ack(0), now=0.01)
    assert [m.payload for m in state2.due_resends(0.01)] == [b'b']


def test_reconnect_keeps_both_sequence_spaces_and_resends_in_flight_input_byte_for_byte():
    """Across a ResumeSession reconnect: in-flight input goes out again with its original numbers and bytes, held
    input keeps waiting for the window, the peer's replayed output is acknowledged again and never delivered twice,
    and new input goes on numbering where it stopped."""
    state = _state(window=2, new_message_id=lambda: ACK_ID)
    first, second = state.next_input(b'one' + b'x' * 1021 + b'two', now=0.0)   # seq 0 and 1, in flight
    assert state.next_input(b'three', now=0.0) == []                           # seq 2, held by the window
    state.receive(_ack(0), now=0.01)
    (third,) = state.due_resends(0.01)                                          # the window takes seq 2 in
    sent = {m.sequence_number: m.encode() for m in (first, second, third)}
    assert state.next_input(b'four', now=0.02) == []                            # seq 3, held
    delivered = []
    for seq, payload, message_id in ((0, b'out-0', None), (1, b'out-1', None), (2, b'hi', PEER_ID)):
        delivered += [e.payload for e in state.receive(_output(seq, payload, message_id=message_id), now=0.03).events]
    assert delivered == [b'out-0', b'out-1', b'hi']
    state.receive(AgentMessage(message_type=PAUSE_PUBLICATION, created_date=CREATED_MS), now=0.04)
    srtt, rto = state.timer.srtt, state.timer.rto

    # The connection is lost (our acks of the outputs and the agent's acks of input 1 and 2 with it), then comes back.
    again = state.reconnected(now=5.0)
    # First our acknowledgements of that connection again (exact frames), then the input that was in flight, byte for byte.
    assert _acked_sequences(again[:3]) == [0, 1, 2] and again[2].encode().hex() == ACK_FRAME_HEX
    assert [m.encode() for m in again[3:]] == [sent[1], sent[2]]
    assert not state.paused and state.expected_sequence_number == 3 and state.next_sequence_number == 4
    assert state.timer.rto == rto   # a reconnect is not a timeout: no back-off
    # The agent replays output 2: acknowledged again, byte for byte as AWS's client would, and not delivered twice.
    events, to_send = state.receive(_output(2, b'hi', message_id=PEER_ID), now=5.1)
    assert events == [] and [m.encode().hex() for m in to_send] == [ACK_FRAME_HEX]
    events, to_send = state.receive(_output(3, b'out-3'), now=5.1)
    assert [e.payload for e in events] == [b'out-3'] and _acked_sequences(to_send) == [3]
    # A second loss sends again what this connection acknowledged: the re-sent acks included, each once.
    assert _acked_sequences([m for m in state.reconnected(now=5.15) if m.message_type == ACKNOWLEDGE]) == [0, 1, 2, 3]
    # Acks of the messages sent on both connections clear them without an RTT sample (Karn); the held one follows.
    state.receive(_ack(1), now=5.1)
    assert [m.sequence_number for m in state.due_resends(5.1)] == [3]
    state.receive(_ack(2), now=5.1)
    assert state.timer.srtt == srtt and state.unacked_count == 1
    (fifth,) = state.next_input(b'five', now=5.3)
    assert fifth.sequence_number == 4


def test_stalled_after_five_minutes():
    state = _state()
    assert not state.stalled(1000.0)
    state.next_input(b'a', now=0.0)
    state.due_resends(299.0)
    assert not state.stalled(299.999)
    assert state.stalled(300.0)


# --- pause / start publication -------------------------------------------------------------------
def test_pause_holds_messages_until_start():
    state = _state()
    events = state.receive(AgentMessage(message_type=PAUSE_PUBLICATION), now=0.0).events
    assert events == [PublicationPaused()] and state.paused
    assert state.next_input(b'held', now=0.1) == []
    assert state.unacked_count == 1
    assert state.due_resends(5.0) == [] and state.next_deadline() is None and not state.stalled(1000.0)
    events = state.receive(AgentMessage(message_type=START_PUBLICATION), now=6.0).events
    assert events == [PublicationStarted()] and not state.paused
    assert state.next_deadline() == float('-inf')
    (message,) = state.due_resends(6.0)
    assert message.payload == b'held' and message.sequence_number == 0
    assert state.timer.rto == 0.2  # a first send, not a timeout
    state.receive(_ack(0), now=6.05)
    assert round(state.timer.srtt, 9) == round(0.875 * 0.1 + 0.125 * 0.05, 9)


def test_traffic_from_peer_ends_a_pause():
    state = _state()
    state.receive(AgentMessage(message_type=PAUSE_PUBLICATION), now=0.0)
    state.receive(_output(0), now=0.1)
    assert not state.paused


# --- the rest of the message types ---------------------------------------------------------------
def test_handshake_events_for_client():
    state = _state()
    request = (b'{"AgentVersion":"3.3.0.0","RequestedClientActions":[{"ActionType":"SessionType",'
               b'"ActionParameters":{"SessionType":"Standard_Stream","Properties":null}}]}')
    events, to_send = state.receive(_output(0, request, PayloadType.HANDSHAKE_REQUEST), now=0.0)
    assert len(events) == 1 and isinstance(events[0], HandshakeRequested)
    assert events[0].request.agent_version == '3.3.0.0' and _acked_sequences(to_send) == [0]
    response = HandshakeResponse('1.2.650.0', [ProcessedClientAction('SessionType', 1)]).to_json()
    (sent,) = state.next_input(response, PayloadType.HANDSHAKE_RESPONSE, now=0.0)
    assert sent.payload_type == 6 and sent.payload == response
    events = state.receive(_output(1, HandshakeComplete(5, 'hi').to_json(), PayloadType.HANDSHAKE_COMPLETE), now=0.0).events
    assert events == [HandshakeCompleted(HandshakeComplete(5, 'hi'), 1)]
    events = state.receive(_output(2, b'{"Challenge":"AAE="}', PayloadType.ENC_CHALLENGE_REQUEST), now=0.0).events
    assert isinstance(events[0], EncryptionChallengeReceived) and events[0].challenge.challenge == b'\x00\x01'


def test_handshake_is_processed_even_when_not_ready():
    state = _state(Role.AGENT)
    state.ready = False
    payload = HandshakeResponse('1', []).to_json()
    events, to_send = state.receive(_output(0, payload, PayloadType.HANDSHAKE_RESPONSE, kind=INPUT_STREAM_DATA), now=0.0)
    assert isinstance(events[0], HandshakeResponded) and _acked_sequences(to_send) == [0]


def test_bad_handshake_payload_raises_without_ack():
    state = _state()
    with pytest.raises(SSMProtocolError, match='HandshakeRequest payload is not valid JSON'):
        state.receive(_output(0, b'nope', PayloadType.HANDSHAKE_REQUEST), now=0.0)
    assert state.expected_sequence_number == 0


def test_channel_closed():
    state = _state()
    closed = ChannelClosed(session_id='s-1', output='bye', message_type=CHANNEL_CLOSED, schema_version=1)
    events, to_send = state.receive(AgentMessage(message_type=CHANNEL_CLOSED, payload=closed.to_json(),
                                                 created_date=CREATED_MS), now=0.0)
    assert events == [ChannelClosedEvent(closed)] and to_send == [] and state.closed
    with pytest.raises(SSMProtocolError, match='closed'):
        state.next_input(b'a', now=0.0)
    events = _state().receive(AgentMessage(message_type=CHANNEL_CLOSED, payload=b'garbage', created_date=1), now=0.0).events
    assert events == [ChannelClosedEvent(ChannelClosed())]


def test_wrong_direction_stream_is_unexpected():
    events, to_send = _state().receive(_output(0, kind=INPUT_STREAM_DATA), now=0.0)
    assert events == [UnexpectedMessage(INPUT_STREAM_DATA)] and to_send == []


def test_receive_bytes_rejects_digest_mismatch():
    state = _state()
    raw = bytearray(_output(0, b'hello').encode())
    raw[-1] ^= 0xFF
    with pytest.raises(SSMProtocolError, match='payload digest mismatch'):
        state.receive_bytes(bytes(raw), now=0.0)
    assert state.expected_sequence_number == 0
    events = state.receive_bytes(_output(0, b'hello').encode(), now=0.0).events
    assert events == [StreamData(1, b'hello', 0)]


def test_cipher_hooks_apply_per_message_to_the_types_aws_encrypts():
    state = _state()
    state.set_cipher(lambda b: b'E(' + b + b')', lambda b: b[2:-1])
    sent = state.next_input(b'x' * 1025, now=0.0)
    assert [m.payload for m in sent] == [b'E(' + b'x' * 1024 + b')', b'E(x)']
    (size,) = state.next_input(b'{"cols":1,"rows":1}', PayloadType.SIZE, now=0.0)
    assert size.payload == b'{"cols":1,"rows":1}'
    events = state.receive(_output(0, b'D(out)'), now=0.0).events
    assert events == [StreamData(1, b'out', 0)]
    events = state.receive(_output(1, b'D(7)', PayloadType.EXIT_CODE), now=0.0).events
    assert events == [StreamData(12, b'7', 1)]
    events = state.receive(_output(2, b'raw', PayloadType.ERROR), now=0.0).events
    assert events == [StreamData(2, b'raw', 2)]


def test_stream_data_repr_hides_payload():
    assert 'secret' not in repr(StreamData(1, b'secret', 0))
