# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Builders and parsers for the payloads carried on the SSM data channel.

JSON is written the way Go's encoding/json writes AWS's structs (field declaration order, no
spaces, HTML characters escaped), so our bytes match what AWS's client and agent send. Parsing
follows Go's rules too: object keys match case-insensitively, missing fields take their zero value,
and a value of the wrong JSON type is an error.

Error messages never quote payload contents: payloads carry the session token, terminal data and
key material.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import re
import struct
import typing as t
import uuid

from .messages import PayloadTypeFlag, SSMProtocolError

MESSAGE_SCHEMA_VERSION = '1.0'

# Session types named in the SessionType handshake action (config.go in AWS's client).
STANDARD_STREAM = 'Standard_Stream'
INTERACTIVE_COMMANDS = 'InteractiveCommands'
NON_INTERACTIVE_COMMANDS = 'NonInteractiveCommands'
PORT = 'Port'
SHELL_SESSION_TYPES = frozenset((STANDARD_STREAM, INTERACTIVE_COMMANDS, NON_INTERACTIVE_COMMANDS))
KNOWN_SESSION_TYPES = SHELL_SESSION_TYPES | {PORT}

# Handshake action types.
ACTION_SESSION_TYPE = 'SessionType'
ACTION_KMS_ENCRYPTION = 'KMSEncryption'

EXIT_CODE_PREFIX = 'EXIT_CODE: '
_EXIT_CODE_RE = re.compile(rb'\s*EXIT_CODE:\s*(-?[0-9]+)\s*')

_REDACTED = '<redacted>'


class ActionStatus(enum.IntEnum):
    """Outcome of one handshake action, as reported in the HandshakeResponse."""

    SUCCESS = 1
    FAILED = 2
    UNSUPPORTED = 3


# ---------------------------------------------------------------------------------------------
# JSON helpers with Go semantics
# ---------------------------------------------------------------------------------------------
_GO_ESCAPES = (('<', '\\u003c'), ('>', '\\u003e'), ('&', '\\u0026'), ('\u2028', '\\u2028'), ('\u2029', '\\u2029'))


def go_json(value: t.Any) -> bytes:
    """Serialize like Go's json.Marshal: compact, UTF-8, with <, >, & and U+2028/9 escaped."""
    text = json.dumps(value, separators=(',', ':'), ensure_ascii=False, allow_nan=False)
    # These characters can only occur inside JSON strings, so a plain replace is safe.
    for char, escaped in _GO_ESCAPES:
        text = text.replace(char, escaped)
    return text.encode('utf-8')


def _b64(data: bytes | None) -> str | None:
    # Go marshals []byte as standard base64, and a nil slice as null.
    return None if data is None else base64.b64encode(data).decode('ascii')


_MISSING = object()


def _load_object(payload: bytes | str, what: str) -> dict[str, t.Any]:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        value = _MISSING
    if value is _MISSING:
        # Raised outside the handler so no JSONDecodeError (which keeps the whole document in .doc,
        # token included) rides along as __context__.
        raise SSMProtocolError('%s payload is not valid JSON' % what)
    if not isinstance(value, dict):
        raise SSMProtocolError('%s payload is a JSON %s, expected an object' % (what, type(value).__name__))
    return value


def _lookup(obj: dict[str, t.Any], key: str) -> t.Any:
    # Go's decoder prefers an exact key match and otherwise accepts a case-insensitive one.
    if key in obj:
        return obj[key]
    folded = key.casefold()
    for name, value in obj.items():
        if name.casefold() == folded:
            return value
    return _MISSING


def _str(obj: dict[str, t.Any], key: str, what: str) -> str:
    value = _lookup(obj, key)
    if value is _MISSING or value is None:
        return ''
    if not isinstance(value, str):
        raise SSMProtocolError('%s field %s must be a string' % (what, key))
    return value


def _int(obj: dict[str, t.Any], key: str, what: str) -> int:
    value = _lookup(obj, key)
    if value is _MISSING or value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise SSMProtocolError('%s field %s must be an integer' % (what, key))
    return value


def _bool(obj: dict[str, t.Any], key: str, what: str) -> bool:
    value = _lookup(obj, key)
    if value is _MISSING or value is None:
        return False
    if not isinstance(value, bool):
        raise SSMProtocolError('%s field %s must be a boolean' % (what, key))
    return value


def _bytes(obj: dict[str, t.Any], key: str, what: str) -> bytes | None:
    value = _lookup(obj, key)
    if value is _MISSING or value is None:
        return None
    if not isinstance(value, str):
        raise SSMProtocolError('%s field %s must be a base64 string' % (what, key))
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SSMProtocolError('%s field %s is not valid base64' % (what, key)) from None


def _any(obj: dict[str, t.Any], key: str) -> t.Any:
    value = _lookup(obj, key)
    return None if value is _MISSING else value


# ---------------------------------------------------------------------------------------------
# OpenDataChannel: the first (TEXT) websocket frame
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class OpenDataChannelRequest:
    """The JSON text frame that authenticates a new data channel websocket."""

    token_value: str = dataclasses.field(repr=False)
    client_id: str = ''
    request_id: str = ''
    client_version: str | None = None
    client_instance_id: str | None = None
    message_schema_version: str = MESSAGE_SCHEMA_VERSION

    def __repr__(self) -> str:
        # The token authenticates the session: it must never reach a log.
        return ('OpenDataChannelRequest(token_value=%s, client_id=%r, request_id=%r, client_version=%r, '
                'client_instance_id=%r)' % (_REDACTED, self.client_id, self.request_id, self.client_version,
                                            self.client_instance_id))

    __str__ = __repr__

    def to_json(self) -> str:
        """Return the frame text (field order as AWS's service.go / the agent's api.go)."""
        body: dict[str, t.Any] = {
            'MessageSchemaVersion': self.message_schema_version,
            'RequestId': self.request_id,
            'TokenValue': self.token_value,
        }
        # The agent's variant carries ClientInstanceId before ClientId and no ClientVersion.
        if self.client_instance_id is not None:
            body['ClientInstanceId'] = self.client_instance_id
        body['ClientId'] = self.client_id
        if self.client_version is not None:
            body['ClientVersion'] = self.client_version
        return go_json(body).decode('utf-8')


def build_open_data_channel(token_value: str, client_id: str, client_version: str, request_id: str | None = None) -> str:
    """Return the OpenDataChannel text frame a client sends first; a fresh RequestId if none given."""
    if not token_value:
        raise SSMProtocolError('token value is empty')
    return OpenDataChannelRequest(
        token_value=token_value,
        client_id=client_id,
        request_id=request_id if request_id is not None else str(uuid.uuid4()),
        client_version=client_version,
    ).to_json()


def parse_open_data_channel(text: str | bytes) -> OpenDataChannelRequest:
    """Parse an OpenDataChannel text frame (used by the agent side / the emulator)."""
    what = 'OpenDataChannel'
    obj = _load_object(text, what)
    token = _str(obj, 'TokenValue', what)
    if not token:
        raise SSMProtocolError('OpenDataChannel frame has no TokenValue')
    version = _lookup(obj, 'ClientVersion')
    instance = _lookup(obj, 'ClientInstanceId')
    return OpenDataChannelRequest(
        token_value=token,
        client_id=_str(obj, 'ClientId', what),
        request_id=_str(obj, 'RequestId', what),
        client_version=None if version is _MISSING else _str(obj, 'ClientVersion', what),
        client_instance_id=None if instance is _MISSING else _str(obj, 'ClientInstanceId', what),
        message_schema_version=_str(obj, 'MessageSchemaVersion', what),
    )


# ---------------------------------------------------------------------------------------------
# Acknowledge
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AcknowledgeContent:
    """Payload of an `acknowledge` message: which stream message was received."""

    message_type: str
    message_id: str
    sequence_number: int
    is_sequential_message: bool = True

    def to_json(self) -> bytes:
        """Return the payload bytes exactly as AWS's client and agent write them."""
        return go_json({
            'AcknowledgedMessageType': self.message_type,
            'AcknowledgedMessageId': self.message_id,
            'AcknowledgedMessageSequenceNumber': self.sequence_number,
            'IsSequentialMessage': self.is_sequential_message,
        })


def parse_acknowledge(payload: bytes) -> AcknowledgeContent:
    """Parse the payload of an `acknowledge` message."""
    what = 'acknowledge'
    obj = _load_object(payload, what)
    return AcknowledgeContent(
        message_type=_str(obj, 'AcknowledgedMessageType', what),
        message_id=_str(obj, 'AcknowledgedMessageId', what),
        sequence_number=_int(obj, 'AcknowledgedMessageSequenceNumber', what),
        is_sequential_message=_bool(obj, 'IsSequentialMessage', what),
    )


# ---------------------------------------------------------------------------------------------
# Handshake
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SessionTypeRequest:
    """Parameters of the SessionType action."""

    session_type: str
    properties: t.Any = None

    def to_dict(self) -> dict[str, t.Any]:
        """Return the JSON object form."""
        return {'SessionType': self.session_type, 'Properties': self.properties}


@dataclasses.dataclass
class KMSEncryptionRequest:
    """Parameters of the KMSEncryption action (Challenge is sent by agents from late 2024 on)."""

    kms_key_id: str
    challenge: str = ''

    def to_dict(self) -> dict[str, t.Any]:
        """Return the JSON object form."""
        return {'KMSKeyId': self.kms_key_id, 'Challenge': self.challenge}


@dataclasses.dataclass
class RequestedClientAction:
    """One action the agent asks the client to perform."""

    action_type: str
    action_parameters: t.Any = None

    def session_type_request(self) -> SessionTypeRequest:
        """Interpret the parameters as a SessionType request."""
        params = self.action_parameters if isinstance(self.action_parameters, dict) else {}
        return SessionTypeRequest(session_type=_str(params, 'SessionType', 'SessionType action'),
                                  properties=_any(params, 'Properties'))

    def kms_encryption_request(self) -> KMSEncryptionRequest:
        """Interpret the parameters as a KMSEncryption request."""
        params = self.action_parameters if isinstance(self.action_parameters, dict) else {}
        return KMSEncryptionRequest(kms_key_id=_str(params, 'KMSKeyId', 'KMSEncryption action'),
                                    challenge=_str(params, 'Challenge', 'KMSEncryption action'))


@dataclasses.dataclass
class HandshakeRequest:
    """Payload type 5, sent by the agent."""

    agent_version: str
    requested_client_actions: list[RequestedClientAction] = dataclasses.field(default_factory=list)

    def action(self, action_type: str) -> RequestedClientAction | None:
        """Return the first requested action of this type, if any."""
        for item in self.requested_client_actions:
            if item.action_type == action_type:
                return item
        return None

    def to_json(self) -> bytes:
        """Return the payload as the agent writes it."""
        actions = []
        for item in self.requested_client_actions:
            params = item.action_parameters
            if isinstance(params, (SessionTypeRequest, KMSEncryptionRequest)):
                params = params.to_dict()
            actions.append({'ActionType': item.action_type, 'ActionParameters': params})
        return go_json({'AgentVersion': self.agent_version, 'RequestedClientActions': actions})


def parse_handshake_request(payload: bytes) -> HandshakeRequest:
    """Parse a HandshakeRequest payload."""
    what = 'HandshakeRequest'
    obj = _load_object(payload, what)
    raw_actions = _any(obj, 'RequestedClientActions') or []
    if not isinstance(raw_actions, list):
        raise SSMProtocolError('HandshakeRequest field RequestedClientActions must be a list')
    actions = []
    for raw in raw_actions:
        if not isinstance(raw, dict):
            raise SSMProtocolError('HandshakeRequest action must be an object')
        actions.append(RequestedClientAction(action_type=_str(raw, 'ActionType', what),
                                             action_parameters=_any(raw, 'ActionParameters')))
    return HandshakeRequest(agent_version=_str(obj, 'AgentVersion', what), requested_client_actions=actions)


@dataclasses.dataclass
class ProcessedClientAction:
    """The client's answer to one requested action."""

    action_type: str
    action_status: int
    action_result: t.Any = None
    error: str = ''

    def to_dict(self) -> dict[str, t.Any]:
        """Return the JSON object form (field order of AWS's struct)."""
        return {'ActionType': self.action_type, 'ActionStatus': int(self.action_status),
                'ActionResult': self.action_result, 'Error': self.error}


@dataclasses.dataclass
class HandshakeResponse:
    """Payload type 6, sent by the client."""

    client_version: str
    processed_client_actions: list[ProcessedClientAction] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> bytes:
        """Return the payload bytes; no errors is written as null, as Go writes a nil slice."""
        return go_json({
            'ClientVersion': self.client_version,
            'ProcessedClientActions': [item.to_dict() for item in self.processed_client_actions],
            'Errors': list(self.errors) if self.errors else None,
        })


def parse_handshake_response(payload: bytes) -> HandshakeResponse:
    """Parse a HandshakeResponse payload (used by the agent side / the emulator)."""
    what = 'HandshakeResponse'
    obj = _load_object(payload, what)
    raw_actions = _any(obj, 'ProcessedClientActions') or []
    raw_errors = _any(obj, 'Errors') or []
    if not isinstance(raw_actions, list) or not isinstance(raw_errors, list):
        raise SSMProtocolError('HandshakeResponse fields ProcessedClientActions and Errors must be lists')
    actions = []
    for raw in raw_actions:
        if not isinstance(raw, dict):
            raise SSMProtocolError('HandshakeResponse action must be an object')
        actions.append(ProcessedClientAction(action_type=_str(raw, 'ActionType', what),
                                             action_status=_int(raw, 'ActionStatus', what),
                                             action_result=_any(raw, 'ActionResult'),
                                             error=_str(raw, 'Error', what)))
    if not all(isinstance(item, str) for item in raw_errors):
        raise SSMProtocolError('HandshakeResponse field Errors must hold strings')
    return HandshakeResponse(client_version=_str(obj, 'ClientVersion', what), processed_client_actions=actions,
                             errors=list(raw_errors))


def kms_encryption_result(cipher_text_key: bytes, challenge_acknowledgement: bool | None = None) -> dict[str, t.Any]:
    """Return the ActionResult of a successful KMSEncryption action.

    AWS's client writes KMSCipherTextKey (base64) and a null KMSCipherTextHash. Agents that sent a
    Challenge accept ChallengeAcknowledgement=true, meaning the data key was generated with the
    challenge in the encryption context (aws:ssm:RandomChallenge); leave it None to omit the field.
    """
    result: dict[str, t.Any] = {'KMSCipherTextKey': _b64(cipher_text_key), 'KMSCipherTextHash': None}
    if challenge_acknowledgement is not None:
        result['ChallengeAcknowledgement'] = challenge_acknowledgement
    return result


def parse_kms_encryption_result(action_result: t.Any) -> tuple[bytes | None, bool]:
    """Return (KMSCipherTextKey, ChallengeAcknowledgement) from a KMSEncryption ActionResult."""
    if not isinstance(action_result, dict):
        raise SSMProtocolError('KMSEncryption action result must be an object')
    what = 'KMSEncryption result'
    return _bytes(action_result, 'KMSCipherTextKey', what), _bool(action_result, 'ChallengeAcknowledgement', what)


def answer_handshake(request: HandshakeRequest, client_version: str,
                     kms_action_result: dict[str, t.Any] | None = None,
                     kms_error: str | None = None) -> tuple[HandshakeResponse, str | None]:
    """Build the HandshakeResponse AWS's client would send, and return it with the session type.

    Pass kms_action_result (from kms_encryption_result) when a data key was generated, or kms_error
    when that failed; with neither, a KMSEncryption request is answered as failed.
    """
    response = HandshakeResponse(client_version=client_version)
    session_type = None
    for item in request.requested_client_actions:
        if item.action_type == ACTION_SESSION_TYPE:
            requested = item.session_type_request().session_type
            if requested in KNOWN_SESSION_TYPES:
                session_type = requested
                answer = ProcessedClientAction(ACTION_SESSION_TYPE, ActionStatus.SUCCESS)
            else:
                message = 'Unknown session type %s' % requested
                answer = ProcessedClientAction(ACTION_SESSION_TYPE, ActionStatus.FAILED,
                                               error='Failed to process action %s: %s' % (ACTION_SESSION_TYPE, message))
                response.errors.append(message)
        elif item.action_type == ACTION_KMS_ENCRYPTION:
            if kms_action_result is not None and kms_error is None:
                answer = ProcessedClientAction(ACTION_KMS_ENCRYPTION, ActionStatus.SUCCESS, action_result=kms_action_result)
            else:
                message = kms_error or 'KMS encryption is not available in this client'
                answer = ProcessedClientAction(ACTION_KMS_ENCRYPTION, ActionStatus.FAILED,
                                               error='Failed to process action %s: %s' % (ACTION_KMS_ENCRYPTION, message))
                response.errors.append(message)
        else:
            # AWS's client puts Unsupported (3) into ActionResult and leaves ActionStatus 0 (a slip in
            # streaming.go); we report the status the constant was meant for. The agent fails either way.
            message = 'Unsupported action %s' % item.action_type
            answer = ProcessedClientAction(item.action_type, ActionStatus.UNSUPPORTED, error=message)
            response.errors.append(message)
        response.processed_client_actions.append(answer)
    return response, session_type


@dataclasses.dataclass
class HandshakeComplete:
    """Payload type 7, sent by the agent when the handshake is over."""

    handshake_time_to_complete: int = 0  # nanoseconds: Go marshals time.Duration as an integer
    customer_message: str = ''

    def to_json(self) -> bytes:
        """Return the payload as the agent writes it."""
        return go_json({'HandshakeTimeToComplete': self.handshake_time_to_complete, 'CustomerMessage': self.customer_message})


def parse_handshake_complete(payload: bytes) -> HandshakeComplete:
    """Parse a HandshakeComplete payload."""
    what = 'HandshakeComplete'
    obj = _load_object(payload, what)
    return HandshakeComplete(handshake_time_to_complete=_int(obj, 'HandshakeTimeToComplete', what),
                             customer_message=_str(obj, 'CustomerMessage', what))


@dataclasses.dataclass
class EncryptionChallenge:
    """Payload of EncChallengeRequest (8) and EncChallengeResponse (9): sealed random bytes."""

    challenge: bytes = dataclasses.field(default=b'', repr=False)

    def to_json(self) -> bytes:
        """Return the payload bytes (the challenge as base64)."""
        return go_json({'Challenge': _b64(self.challenge)})


def parse_encryption_challenge(payload: bytes) -> EncryptionChallenge:
    """Parse an EncChallengeRequest or EncChallengeResponse payload."""
    obj = _load_object(payload, 'encryption challenge')
    return EncryptionChallenge(challenge=_bytes(obj, 'Challenge', 'encryption challenge') or b'')


# ---------------------------------------------------------------------------------------------
# channel_closed
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ChannelClosed:
    """Payload of a `channel_closed` message: the session is over."""

    message_id: str = ''
    created_date: str = ''
    destination_id: str = ''
    session_id: str = ''
    message_type: str = ''
    schema_version: int = 0
    output: str = ''

    def to_json(self) -> bytes:
        """Return the payload with the field order of AWS's client struct."""
        return go_json({'MessageId': self.message_id, 'CreatedDate': self.created_date,
                        'DestinationId': self.destination_id, 'SessionId': self.session_id,
                        'MessageType': self.message_type, 'SchemaVersion': self.schema_version, 'Output': self.output})


def parse_channel_closed(payload: bytes) -> ChannelClosed:
    """Parse a `channel_closed` payload."""
    what = 'channel_closed'
    obj = _load_object(payload, what)
    return ChannelClosed(
        message_id=_str(obj, 'MessageId', what),
        created_date=_str(obj, 'CreatedDate', what),
        destination_id=_str(obj, 'DestinationId', what),
        session_id=_str(obj, 'SessionId', what),
        message_type=_str(obj, 'MessageType', what),
        schema_version=_int(obj, 'SchemaVersion', what),
        output=_str(obj, 'Output', what),
    )


# ---------------------------------------------------------------------------------------------
# Small stream payloads
# ---------------------------------------------------------------------------------------------
def build_size(cols: int, rows: int) -> bytes:
    """Return a Size payload (payload type 3): the terminal's columns and rows."""
    for name, value in (('cols', cols), ('rows', rows)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            raise SSMProtocolError('terminal %s must be an unsigned 32-bit integer' % name)
    return go_json({'cols': cols, 'rows': rows})


def parse_size(payload: bytes) -> tuple[int, int]:
    """Return (cols, rows) from a Size payload."""
    obj = _load_object(payload, 'size')
    return _int(obj, 'cols', 'size'), _int(obj, 'rows', 'size')


def build_flag(flag: int) -> bytes:
    """Return a Flag payload (payload type 10): the flag as a big-endian u32, not JSON."""
    if not 0 <= int(flag) <= 0xFFFFFFFF:
        raise SSMProtocolError('flag %d does not fit 32 bits' % int(flag))
    return struct.pack('>I', int(flag))


def parse_flag(payload: bytes) -> int:
    """Return the flag value of a Flag payload (a PayloadTypeFlag when known)."""
    if len(payload) < 4:
        raise SSMProtocolError('flag payload is %d bytes, expected 4' % len(payload))
    value = struct.unpack_from('>I', payload)[0]
    try:
        return PayloadTypeFlag(value)
    except ValueError:
        return value


def build_exit_code(code: int) -> bytes:
    """Return an ExitCode payload (payload type 12) as the agent writes it."""
    return ('%s%d' % (EXIT_CODE_PREFIX, int(code))).encode('ascii')


def parse_exit_code(payload: bytes) -> int:
    """Return the exit code in an ExitCode payload ("EXIT_CODE: <n>")."""
    match = _EXIT_CODE_RE.fullmatch(payload)
    if match is None:
        raise SSMProtocolError('exit code payload is not of the form %r followed by an integer' % EXIT_CODE_PREFIX)
    return int(match.group(1))
