# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The emulator's own codec for the SSM agent message (the binary frame of the ECS Exec data channel).

Written apart from the collection's ``plugins/module_utils/ssm`` on purpose: the emulator is the
other end the collection is tested against, so two independent readings of AWS's layout check each
other. Layout (big-endian), as amazon-ssm-agent's ``agentmessage.go`` writes it::

    0   HeaderLength u32 (116: the offset of PayloadLength)
    4   MessageType, 32 bytes ASCII, space padded
    36  SchemaVersion u32
    40  CreatedDate u64, epoch milliseconds
    48  SequenceNumber i64
    56  Flags u64
    64  MessageId, 16 bytes: the UUID's bytes 8..15, then bytes 0..7
    80  PayloadDigest, SHA-256 of the payload
    112 PayloadType u32
    116 PayloadLength u32
    120 Payload
"""
from __future__ import annotations

import hashlib
import json
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

HEADER_LENGTH = 116
PAYLOAD_OFFSET = HEADER_LENGTH + 4
TYPE_FIELD_LENGTH = 32
# Everything up to the digest: length, type, schema, date, sequence, flags (the message id is packed apart).
_HEAD = struct.Struct('>I32sIQqQ')
_TAIL = struct.Struct('>II')

INPUT_STREAM_DATA = 'input_stream_data'
OUTPUT_STREAM_DATA = 'output_stream_data'
ACKNOWLEDGE = 'acknowledge'
CHANNEL_CLOSED = 'channel_closed'
START_PUBLICATION = 'start_publication'
PAUSE_PUBLICATION = 'pause_publication'

# Payload types (agent contracts: PayloadType).
OUTPUT = 1
ERROR = 2
SIZE = 3
PARAMETER = 4
HANDSHAKE_REQUEST = 5
HANDSHAKE_RESPONSE = 6
HANDSHAKE_COMPLETE = 7
ENC_CHALLENGE_REQUEST = 8
ENC_CHALLENGE_RESPONSE = 9
FLAG = 10
STDERR = 11
EXIT_CODE = 12

# Flags: the agent marks the first message of its stream SYN; acknowledgements and other control
# messages carry 3 (SYN|FIN), stream data otherwise 0.
FLAG_SYN = 1
FLAG_FIN = 2
CONTROL_FLAGS = 3


class WireError(ValueError):
    """A frame that is not a valid agent message."""


def uuid_to_wire(value: uuid.UUID) -> bytes:
    raw = value.bytes
    return raw[8:] + raw[:8]


def uuid_from_wire(raw: bytes) -> uuid.UUID:
    if len(raw) != 16:
        raise WireError(f'a message id is 16 bytes, got {len(raw)}')
    return uuid.UUID(bytes=raw[8:] + raw[:8])


def now_ms() -> int:
    return int(time.time() * 1000)


def go_json(value: Any) -> bytes:
    """JSON the way Go's encoding/json marshals a struct: no whitespace, HTML characters escaped."""
    text = json.dumps(value, separators=(',', ':'), ensure_ascii=False)
    return text.replace('<', '\\u003c').replace('>', '\\u003e').replace('&', '\\u0026').encode('utf-8')


@dataclass
class WireMessage:
    message_type: str
    payload: bytes = b''
    payload_type: int = 0
    sequence_number: int = 0
    flags: int = 0
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_date: int = field(default_factory=now_ms)
    schema_version: int = 1

    def encode(self) -> bytes:
        kind = self.message_type.encode('ascii')
        if not kind or len(kind) > TYPE_FIELD_LENGTH:
            raise WireError(f'message type must be 1..{TYPE_FIELD_LENGTH} bytes: {self.message_type!r}')
        head = _HEAD.pack(HEADER_LENGTH, kind.ljust(TYPE_FIELD_LENGTH, b' '), self.schema_version, self.created_date,
                          self.sequence_number, self.flags)
        digest = hashlib.sha256(self.payload).digest()
        return head + uuid_to_wire(self.message_id) + digest + _TAIL.pack(self.payload_type, len(self.payload)) + self.payload

    @classmethod
    def decode(cls, data: bytes, *, check_digest: bool = True) -> 'WireMessage':
        """Parse a frame; stricter than the agent (lengths and digest are checked) so client bugs show up."""
        if len(data) < PAYLOAD_OFFSET:
            raise WireError(f'frame of {len(data)} bytes is shorter than the {PAYLOAD_OFFSET}-byte header')
        header_length, kind, schema, created, sequence, flags = _HEAD.unpack_from(data, 0)
        if header_length != HEADER_LENGTH:
            raise WireError(f'header length {header_length}, expected {HEADER_LENGTH}')
        message_id = uuid_from_wire(data[64:80])
        digest = data[80:112]
        payload_type, payload_length = _TAIL.unpack_from(data, 112)
        payload = data[header_length + 4:]
        if payload_length != len(payload):
            raise WireError(f'payload length field says {payload_length}, frame carries {len(payload)} bytes')
        if check_digest and digest != hashlib.sha256(payload).digest():
            raise WireError('payload digest does not match the payload')
        # Go's reader trims NULs and then whitespace.
        message_type = kind.strip(b'\x00').decode('ascii', errors='replace').strip()
        if not message_type:
            raise WireError('message type is empty')
        if created == 0:
            raise WireError('created date is missing')
        return cls(message_type=message_type, payload=payload, payload_type=payload_type, sequence_number=sequence,
                   flags=flags, message_id=message_id, created_date=created, schema_version=schema)


def acknowledge_payload(acked: WireMessage) -> bytes:
    """The acknowledge content, field order and names as the agent's AcknowledgeContent struct."""
    return go_json({'AcknowledgedMessageType': acked.message_type, 'AcknowledgedMessageId': str(acked.message_id),
                    'AcknowledgedMessageSequenceNumber': acked.sequence_number, 'IsSequentialMessage': True})


def acknowledge(acked: WireMessage) -> WireMessage:
    return WireMessage(ACKNOWLEDGE, payload=acknowledge_payload(acked), flags=CONTROL_FLAGS)
