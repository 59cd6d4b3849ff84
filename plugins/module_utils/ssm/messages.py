# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The binary frame of the SSM Session Manager data channel ("agent message" / "client message").

Every websocket BINARY frame on the data channel carries exactly one of these. The layout is
big-endian with a fixed 116-byte header (the header length field counts the bytes before the
payload length field):

    offset  size  field
         0     4  HeaderLength   (u32, always 116 when written)
         4    32  MessageType    (UTF-8, right-padded with spaces)
        36     4  SchemaVersion  (u32, 1)
        40     8  CreatedDate    (u64, epoch milliseconds)
        48     8  SequenceNumber (i64)
        56     8  Flags          (u64)
        64    16  MessageId      (UUID with its two 8-byte halves swapped)
        80    32  PayloadDigest  (SHA-256 of the payload)
       112     4  PayloadType    (u32)
       116     4  PayloadLength  (u32)
       120     n  Payload        (starts at HeaderLength + 4)

Checked against aws/session-manager-plugin src/message/{clientmessage,messageparser}.go and
aws/amazon-ssm-agent agent/session/contracts/agentmessage.go.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import struct
import uuid

# ---------------------------------------------------------------------------------------------
# Message types (the 32-byte text field)
# ---------------------------------------------------------------------------------------------
INPUT_STREAM_DATA = 'input_stream_data'
OUTPUT_STREAM_DATA = 'output_stream_data'
ACKNOWLEDGE = 'acknowledge'
CHANNEL_CLOSED = 'channel_closed'
START_PUBLICATION = 'start_publication'
PAUSE_PUBLICATION = 'pause_publication'

STREAM_MESSAGE_TYPES = frozenset((INPUT_STREAM_DATA, OUTPUT_STREAM_DATA))

# Publication control messages come from the gateway, not the peer; AWS's client skips every
# validation for them (messageparser.go Validate), so we do the same.
PUBLICATION_MESSAGE_TYPES = frozenset((START_PUBLICATION, PAUSE_PUBLICATION))


class PayloadType(enum.IntEnum):
    """What the payload of a stream message holds (clientmessage.go PayloadType)."""

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


class PayloadTypeFlag(enum.IntEnum):
    """Values carried (as a big-endian u32) in a FLAG payload."""

    DISCONNECT_TO_PORT = 1
    TERMINATE_SESSION = 2
    CONNECT_TO_PORT_ERROR = 3


# Header flags. AWS's client sends stream data with 0 and acknowledgements with 3; the agent sets
# SYN on its first stream message (sequence 0). Nobody acts on them when receiving.
FLAG_NONE = 0
FLAG_SYN = 1
FLAG_FIN = 2
FLAG_ACK = FLAG_SYN | FLAG_FIN

SCHEMA_VERSION = 1

# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------
MESSAGE_TYPE_LENGTH = 32
HEADER_LENGTH = 116
PAYLOAD_LENGTH_OFFSET = HEADER_LENGTH
PAYLOAD_OFFSET = HEADER_LENGTH + 4
MIN_MESSAGE_LENGTH = PAYLOAD_OFFSET

# Everything from offset 0 to 120 except the variable-width pieces handled separately.
_HEADER = struct.Struct('>I32sIQqQ16s32sII')

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
_UINT32_MAX = (1 << 32) - 1


class SSMProtocolError(Exception):
    """A data channel frame or payload is malformed, or a protocol rule was broken."""


def message_id_to_wire(message_id: uuid.UUID) -> bytes:
    """Return the 16 wire bytes of a message id: UUID bytes 8..15 first, then bytes 0..7."""
    # AWS writes the "least significant" long first (messageparser.go putUuid).
    raw = message_id.bytes
    return raw[8:] + raw[:8]


def message_id_from_wire(wire: bytes) -> uuid.UUID:
    """Return the UUID encoded by 16 wire bytes (the inverse of message_id_to_wire)."""
    if len(wire) != 16:
        raise SSMProtocolError('message id must be 16 bytes, got %d' % len(wire))
    return uuid.UUID(bytes=wire[8:] + wire[:8])


def payload_digest(payload: bytes) -> bytes:
    """Return the SHA-256 digest carried in the header for this payload."""
    return hashlib.sha256(payload).digest()


def pad_message_type(message_type: str) -> bytes:
    """Return the 32-byte, space-padded wire form of a message type."""
    raw = message_type.encode('utf-8')
    if not raw:
        raise SSMProtocolError('message type is empty')
    if len(raw) > MESSAGE_TYPE_LENGTH:
        raise SSMProtocolError('message type is %d bytes, the field holds %d' % (len(raw), MESSAGE_TYPE_LENGTH))
    return raw.ljust(MESSAGE_TYPE_LENGTH, b' ')


def _unpad_message_type(raw: bytes) -> str:
    # AWS trims NULs first, then whitespace (bytes.Trim + strings.TrimSpace); a peer may pad either way.
    return raw.strip(b'\x00').decode('utf-8', errors='replace').strip()


@dataclasses.dataclass
class AgentMessage:
    """One data channel frame; encode() and decode() convert to and from the wire bytes."""

    message_type: str
    sequence_number: int = 0
    flags: int = FLAG_NONE
    message_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    payload_type: int = 0
    payload: bytes = b''
    created_date: int = 0
    schema_version: int = SCHEMA_VERSION

    def __repr__(self) -> str:
        # Payloads carry terminal input/output and key material: show their size, never their bytes.
        return ('AgentMessage(message_type=%r, sequence_number=%d, flags=%d, message_id=%s, payload_type=%d, '
                'payload=<%d bytes>, created_date=%d)' % (
                    self.message_type, self.sequence_number, self.flags, self.message_id, self.payload_type,
                    len(self.payload), self.created_date))

    __str__ = __repr__

    def encode(self) -> bytes:
        """Return the wire bytes of this message."""
        payload = bytes(self.payload)
        if not _INT64_MIN <= self.sequence_number <= _INT64_MAX:
            raise SSMProtocolError('sequence number %d does not fit a signed 64-bit field' % self.sequence_number)
        for name, value, top in (('flags', self.flags, _UINT64_MAX), ('created date', self.created_date, _UINT64_MAX),
                                 ('schema version', self.schema_version, _UINT32_MAX),
                                 ('payload type', self.payload_type, _UINT32_MAX),
                                 ('payload length', len(payload), _UINT32_MAX)):
            if not 0 <= value <= top:
                raise SSMProtocolError('%s %d is out of range' % (name, value))
        header = _HEADER.pack(
            HEADER_LENGTH,
            pad_message_type(self.message_type),
            self.schema_version,
            self.created_date,
            self.sequence_number,
            self.flags,
            message_id_to_wire(self.message_id),
            payload_digest(payload),
            self.payload_type,
            len(payload),
        )
        return header + payload

    @classmethod
    def decode(cls, data: bytes) -> AgentMessage:
        """Parse wire bytes into a message, raising SSMProtocolError if they are malformed."""
        data = bytes(data)
        if len(data) < MIN_MESSAGE_LENGTH:
            raise SSMProtocolError('message too short: %d bytes, the header alone is %d' % (len(data), MIN_MESSAGE_LENGTH))
        (header_length, raw_type, schema_version, created_date, sequence_number, flags, raw_id, digest,
         payload_type, payload_length) = _HEADER.unpack_from(data)
        # AWS's readers take every field at a fixed offset and only use HeaderLength to find the
        # payload, so a smaller value cannot be honoured; a larger one would mean extra header bytes,
        # which the readers skip, and so do we.
        if header_length < HEADER_LENGTH:
            raise SSMProtocolError('header length is %d, expected %d' % (header_length, HEADER_LENGTH))
        payload_start = header_length + 4
        if payload_start > len(data):
            raise SSMProtocolError('header length %d points past the end of a %d-byte message' % (header_length, len(data)))
        payload = data[payload_start:]
        if payload_length != len(payload):
            raise SSMProtocolError('payload length field says %d bytes, the message carries %d' % (payload_length, len(payload)))
        message_type = _unpad_message_type(raw_type)
        if message_type not in PUBLICATION_MESSAGE_TYPES:
            # Mirrors the checks in AWS's client (messageparser.go Validate).
            if not message_type:
                raise SSMProtocolError('message type is missing')
            if created_date == 0:
                raise SSMProtocolError('created date is missing (zero) in a %s message' % message_type)
            # AWS only checks the digest of a non-empty payload.
            if payload and payload_digest(payload) != digest:
                raise SSMProtocolError('payload digest mismatch in a %s message (sequence %d): SHA-256 of the %d-byte '
                                       'payload is not the header digest' % (message_type, sequence_number, len(payload)))
        return cls(
            message_type=message_type,
            sequence_number=sequence_number,
            flags=flags,
            message_id=message_id_from_wire(raw_id),
            payload_type=payload_type,
            payload=payload,
            created_date=created_date,
            schema_version=schema_version,
        )
