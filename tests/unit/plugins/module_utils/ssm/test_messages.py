# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Byte-exact tests of the data channel frame.

Expected bytes are written out field by field from the layout in AWS's sources
(aws/session-manager-plugin src/message/clientmessage.go + messageparser.go, and
aws/amazon-ssm-agent agent/session/contracts/agentmessage.go), never produced by our encoder.
"""

from __future__ import annotations

import uuid

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils.ssm.messages import (
    ACKNOWLEDGE,
    HEADER_LENGTH,
    INPUT_STREAM_DATA,
    OUTPUT_STREAM_DATA,
    PAUSE_PUBLICATION,
    PAYLOAD_OFFSET,
    AgentMessage,
    PayloadType,
    PayloadTypeFlag,
    SSMProtocolError,
    message_id_from_wire,
    message_id_to_wire,
    pad_message_type,
    payload_digest,
)

# --- Vector 1: the inputs of messageparser_test.go TestSerializeAndDeserializeClientMessage ------
# messageId "dd01e56b-ff48-483e-a508-b5f073f31b16", messageType input_stream_data, schemaVersion 1,
# createdDate 1503434274948, SequenceNumber 1, Flags 2, payload "payload", PayloadType unset (0).
AWS_TEST_MESSAGE_ID = uuid.UUID('dd01e56b-ff48-483e-a508-b5f073f31b16')
AWS_TEST_MESSAGE_HEX = (
    '00000074'                                                             # HeaderLength = 116
    '696e7075745f73747265616d5f64617461' + '20' * 15 +                     # "input_stream_data" + 15 spaces = 32 bytes
    '00000001'                                                             # SchemaVersion = 1
    '0000015e0baa7884'                                                     # CreatedDate = 1503434274948 ms
    '0000000000000001'                                                     # SequenceNumber = 1
    '0000000000000002'                                                     # Flags = 2
    'a508b5f073f31b16'                                                     # MessageId bytes 8..15 first ...
    'dd01e56bff48483e'                                                     # ... then bytes 0..7
    '239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5'     # SHA-256("payload")
    '00000000'                                                             # PayloadType = 0
    '00000007'                                                             # PayloadLength = 7
    '7061796c6f6164'                                                       # "payload"
)

# --- Vector 2: our own, with a message id whose halves are easy to see swapped ------------------
SWAP_MESSAGE_ID = uuid.UUID('01020304-0506-0708-090a-0b0c0d0e0f10')
OUTPUT_MESSAGE_HEX = (
    '00000074'                                                             # HeaderLength = 116
    '6f75747075745f73747265616d5f64617461' + '20' * 14 +                   # "output_stream_data" + 14 spaces
    '00000001'                                                             # SchemaVersion = 1
    '0000018bcfe56800'                                                     # CreatedDate = 1700000000000 ms
    '0000000000000000'                                                     # SequenceNumber = 0
    '0000000000000000'                                                     # Flags = 0
    '090a0b0c0d0e0f10'                                                     # UUID bytes 8..15
    '0102030405060708'                                                     # UUID bytes 0..7
    'cd2eca3535741f27a8ae40c31b0c41d4057a7a7b912b33b9aed86485d1c84676'     # SHA-256("hello\r\n")
    '00000001'                                                             # PayloadType = 1 (Output)
    '00000007'                                                             # PayloadLength = 7
    '68656c6c6f0d0a'                                                       # "hello\r\n"
)


def _aws_test_message() -> AgentMessage:
    return AgentMessage(message_type=INPUT_STREAM_DATA, sequence_number=1, flags=2, message_id=AWS_TEST_MESSAGE_ID,
                        payload=b'payload', created_date=1503434274948)


def test_encode_matches_hand_assembled_aws_test_vector():
    assert _aws_test_message().encode().hex() == AWS_TEST_MESSAGE_HEX


def test_decode_aws_test_vector_gives_every_field():
    message = AgentMessage.decode(bytes.fromhex(AWS_TEST_MESSAGE_HEX))
    assert message.message_type == 'input_stream_data'
    assert message.schema_version == 1
    assert message.created_date == 1503434274948
    assert message.sequence_number == 1
    assert message.flags == 2
    assert str(message.message_id) == 'dd01e56b-ff48-483e-a508-b5f073f31b16'
    assert message.payload_type == 0
    assert message.payload == b'payload'


def test_encode_output_message_with_swapped_id_halves():
    message = AgentMessage(message_type=OUTPUT_STREAM_DATA, sequence_number=0, flags=0, message_id=SWAP_MESSAGE_ID,
                           payload_type=PayloadType.OUTPUT, payload=b'hello\r\n', created_date=1700000000000)
    assert message.encode().hex() == OUTPUT_MESSAGE_HEX
    assert AgentMessage.decode(bytes.fromhex(OUTPUT_MESSAGE_HEX)) == message


def test_message_id_wire_form():
    assert message_id_to_wire(SWAP_MESSAGE_ID).hex() == '090a0b0c0d0e0f10' '0102030405060708'
    assert message_id_from_wire(bytes.fromhex('090a0b0c0d0e0f100102030405060708')) == SWAP_MESSAGE_ID
    with pytest.raises(SSMProtocolError, match='16 bytes'):
        message_id_from_wire(b'\x00' * 15)


def test_message_type_is_space_padded_to_32_bytes():
    assert pad_message_type(ACKNOWLEDGE) == b'acknowledge' + b' ' * 21
    assert pad_message_type('x' * 32) == b'x' * 32
    with pytest.raises(SSMProtocolError, match='33 bytes'):
        pad_message_type('x' * 33)
    with pytest.raises(SSMProtocolError, match='empty'):
        pad_message_type('')


def test_message_type_trimmed_of_nuls_and_spaces_on_read():
    # A NUL-padded type (what a zeroed buffer gives) must read the same as a space-padded one.
    data = bytearray.fromhex(AWS_TEST_MESSAGE_HEX)
    data[4:36] = b'input_stream_data'.ljust(32, b'\x00')
    assert AgentMessage.decode(bytes(data)).message_type == 'input_stream_data'
    # Go trims NULs from both ends first, then whitespace (bytes.Trim + strings.TrimSpace).
    data[4:36] = b'  input_stream_data'.ljust(30, b' ') + b'\x00\x00'
    assert AgentMessage.decode(bytes(data)).message_type == 'input_stream_data'


def test_integer_fields_use_the_byte_vectors_of_awss_tests():
    # messageparser_test.go: longToBytes(5747283) = 00 00 00 00 00 57 b2 53, putLong(92837273) =
    # 00 00 00 00 05 88 95 99, putInteger(324) = 00 00 01 44, getLong(00 00 00 00 00 5a 05 66) = 5899622.
    raw = AgentMessage(message_type=INPUT_STREAM_DATA, sequence_number=5747283, flags=5899622, created_date=92837273,
                       payload_type=324, message_id=SWAP_MESSAGE_ID).encode()
    assert raw[48:56].hex() == '000000000057b253'
    assert raw[40:48].hex() == '0000000005889599'
    assert raw[112:116].hex() == '00000144'
    assert raw[56:64].hex() == '00000000005a0566'


def test_negative_sequence_number_is_twos_complement():
    raw = AgentMessage(message_type=INPUT_STREAM_DATA, sequence_number=-1, created_date=1, message_id=SWAP_MESSAGE_ID).encode()
    assert raw[48:56] == b'\xff' * 8
    assert AgentMessage.decode(raw).sequence_number == -1


def test_empty_payload_encodes_digest_of_nothing():
    raw = AgentMessage(message_type=ACKNOWLEDGE, created_date=1, message_id=SWAP_MESSAGE_ID).encode()
    assert len(raw) == PAYLOAD_OFFSET == 120
    assert raw[80:112].hex() == 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    assert raw[116:120] == b'\x00\x00\x00\x00'


def test_payload_digest_is_sha256():
    assert payload_digest(b'payload').hex() == '239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5'


def test_constants_match_aws():
    assert HEADER_LENGTH == 116
    assert [int(p) for p in PayloadType] == list(range(1, 13))
    assert PayloadType.HANDSHAKE_REQUEST == 5 and PayloadType.FLAG == 10 and PayloadType.EXIT_CODE == 12
    assert PayloadTypeFlag.TERMINATE_SESSION == 2


# --- validation ---------------------------------------------------------------------------------
def test_decode_rejects_short_input():
    with pytest.raises(SSMProtocolError, match='too short: 119 bytes'):
        AgentMessage.decode(bytes.fromhex(AWS_TEST_MESSAGE_HEX)[:119])


def test_decode_rejects_small_header_length():
    data = bytearray.fromhex(AWS_TEST_MESSAGE_HEX)
    data[0:4] = (100).to_bytes(4, 'big')
    with pytest.raises(SSMProtocolError, match='header length is 100, expected 116'):
        AgentMessage.decode(bytes(data))


def test_decode_rejects_header_length_past_end():
    data = bytearray.fromhex(AWS_TEST_MESSAGE_HEX)
    data[0:4] = (1000).to_bytes(4, 'big')
    with pytest.raises(SSMProtocolError, match='points past the end'):
        AgentMessage.decode(bytes(data))


def test_decode_rejects_payload_length_mismatch():
    data = bytearray.fromhex(AWS_TEST_MESSAGE_HEX)
    data[116:120] = (8).to_bytes(4, 'big')
    with pytest.raises(SSMProtocolError, match='payload length field says 8 bytes, the message carries 7'):
        AgentMessage.decode(bytes(data))


def test_decode_rejects_digest_mismatch():
    data = bytearray.fromhex(AWS_TEST_MESSAGE_HEX)
    data[-1] ^= 0x01  # "payloae"
    with pytest.raises(SSMProtocolError, match='payload digest mismatch in a input_stream_data message'):
        AgentMessage.decode(bytes(data))


def test_decode_rejects_missing_created_date():
    data = bytearray.fromhex(AWS_TEST_MESSAGE_HEX)
    data[40:48] = b'\x00' * 8
    with pytest.raises(SSMProtocolError, match='created date is missing'):
        AgentMessage.decode(bytes(data))


def test_decode_rejects_missing_message_type():
    data = bytearray.fromhex(AWS_TEST_MESSAGE_HEX)
    data[4:36] = b' ' * 32
    with pytest.raises(SSMProtocolError, match='message type is missing'):
        AgentMessage.decode(bytes(data))


def test_publication_messages_skip_validation_like_aws():
    # AWS's client Validate() returns early for start/pause_publication: no digest or date checks.
    raw = bytearray(AgentMessage(message_type=PAUSE_PUBLICATION, payload=b'x', message_id=SWAP_MESSAGE_ID).encode())
    raw[80:112] = b'\x00' * 32
    message = AgentMessage.decode(bytes(raw))
    assert message.message_type == PAUSE_PUBLICATION
    assert message.created_date == 0


def test_empty_payload_digest_not_checked_like_aws():
    raw = bytearray(AgentMessage(message_type=ACKNOWLEDGE, created_date=5, message_id=SWAP_MESSAGE_ID).encode())
    raw[80:112] = b'\x00' * 32
    assert AgentMessage.decode(bytes(raw)).payload == b''


def test_longer_header_length_is_skipped_like_awss_reader():
    # AWS's readers start the payload at HeaderLength + 4; extra header bytes are ignored.
    base = bytearray.fromhex(AWS_TEST_MESSAGE_HEX)
    data = bytearray(base[:120]) + b'\xee\xee' + base[120:]
    data[0:4] = (118).to_bytes(4, 'big')
    assert AgentMessage.decode(bytes(data)).payload == b'payload'


def test_encode_range_checks():
    with pytest.raises(SSMProtocolError, match='sequence number'):
        AgentMessage(message_type=INPUT_STREAM_DATA, sequence_number=1 << 63).encode()
    with pytest.raises(SSMProtocolError, match='payload type -1 is out of range'):
        AgentMessage(message_type=INPUT_STREAM_DATA, payload_type=-1).encode()


def test_repr_never_shows_payload():
    message = AgentMessage(message_type=OUTPUT_STREAM_DATA, payload=b'secret-token-bytes', message_id=SWAP_MESSAGE_ID)
    for text in (repr(message), str(message)):
        assert 'secret' not in text
        assert '<18 bytes>' in text
