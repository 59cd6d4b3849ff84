# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A fake SSM agent behind a real websockets server, for the DataChannelSession tests.

The server runs in a thread on 127.0.0.1 (port 0) and plays the gateway plus agent with
DataChannelState(role=Role.AGENT): it checks the OpenDataChannel text frame and its token, echoes
input back as output, acknowledges, and can be told to misbehave (drop the first input, lose an ack,
hang up, hand out output out of order, ask for a handshake, encrypt with KMS). The test thread drives
it through methods that take a lock shared with the server thread; nothing polls or sleeps.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import typing as t

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils.ssm.channel import (
    DataChannelState,
    EncryptionChallengeReceived,
    HandshakeResponded,
    Role,
    StreamData,
)
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.messages import (
    ACKNOWLEDGE,
    CHANNEL_CLOSED,
    INPUT_STREAM_DATA,
    AgentMessage,
    PayloadType,
)
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.payloads import (
    ACTION_KMS_ENCRYPTION,
    ChannelClosed,
    EncryptionChallenge,
    HandshakeComplete,
    HandshakeRequest,
    OpenDataChannelRequest,
    parse_kms_encryption_result,
    parse_open_data_channel,
    parse_size,
)

websockets_server = pytest.importorskip('websockets.sync.server')
websockets_exceptions = pytest.importorskip('websockets.exceptions')

TOKEN = 'AAEAAdTokenValue+/SecretXyz=='
SESSION_ID = 'ecs-execute-command-0a1b2c3d4e5f'
QUERY = 'role=publish_subscribe&cell-number=AAEAAfQuerySecret%2BAbc%3D'
PATH = '/v1/data-channel/%s' % SESSION_ID

# The server's own websockets logger must not feed caplog: it sees the token by design.
_SERVER_LOGGER = logging.getLogger('cloudexec.tests.fake_agent')
_SERVER_LOGGER.setLevel(logging.CRITICAL)


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeAgent:
    """Gateway and agent in one; configure the behaviour with keyword arguments."""

    TOKEN = TOKEN
    SESSION_ID = SESSION_ID
    QUERY = QUERY
    PATH = PATH

    def __init__(self, *, token: str = TOKEN, greeting: bytes | None = b'$ ', echo: bool = True,
                 handshake: HandshakeRequest | None = None, auto_complete_handshake: bool = True,
                 ignore_inputs: int = 0, drop_acks: int = 0, hang_up_on_input: bool = False,
                 reject_status: int | None = None, kms_keys: dict[bytes, bytes] | None = None,
                 resume_tokens: t.Sequence[str] = ()) -> None:
        self.token = token
        # Tokens a later connection may present (ResumeSession's): the session goes on where it was.
        self.resume_tokens = list(resume_tokens)
        self.greeting = greeting
        self.echo = echo
        self.handshake = handshake
        self.auto_complete_handshake = auto_complete_handshake
        self.ignore_inputs = ignore_inputs
        self.drop_acks = drop_acks
        self.hang_up_on_input = hang_up_on_input
        self.reject_status = reject_status
        self.kms_keys = kms_keys or {}
        self.lock = threading.Condition()
        # What the agent saw, for assertions.
        self.open_request: OpenDataChannelRequest | None = None
        self.open_requests: list[OpenDataChannelRequest] = []   # one per accepted connection
        self.replayed: list[bytes] = []                         # output sent again on a resumed connection
        self.request_paths: list[str] = []
        self.request_path: str | None = None
        self.received: list[AgentMessage] = []   # every decoded binary frame from the client
        self.inputs: list[bytes] = []            # in-order Output payloads (the terminal input)
        self.sizes: list[tuple[int, int]] = []
        self.handshake_response: bytes | None = None
        self.challenge_ok: bool | None = None
        self.outputs_sent = 0
        self.acks_received = 0
        self.log: list[str] = []
        self.connections = 0
        self._state: DataChannelState | None = None
        self._ws: t.Any = None
        self._challenge: bytes | None = None
        self._decrypt: t.Callable[[bytes], bytes] | None = None
        self._server: t.Any = None
        self._thread: threading.Thread | None = None
        self.url = ''

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> FakeAgent:
        self._server = websockets_server.serve(self._handler, '127.0.0.1', 0, process_request=self._process_request,
                                               compression=None, max_size=None, logger=_SERVER_LOGGER)
        port = self._server.socket.getsockname()[1]
        self.url = 'ws://127.0.0.1:%d%s?%s' % (port, PATH, QUERY)
        self._thread = threading.Thread(target=self._server.serve_forever, name='fake-ssm-agent', daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(5)

    def wait_for(self, predicate: t.Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until predicate() holds (evaluated under the lock), or fail the test."""
        with self.lock:
            if not self.lock.wait_for(predicate, timeout):
                raise AssertionError('fake agent: condition not met within %g s; log: %s' % (timeout, self.log))

    # -- actions the test thread takes -----------------------------------------------------------
    def _wait_connected(self) -> None:
        # Called with the lock held: the server thread sets up the agent state under the same lock.
        if not self.lock.wait_for(lambda: self._state is not None, 5):
            raise AssertionError('fake agent: no client connected; log: %s' % self.log)

    def send_output(self, data: bytes, payload_type: int = PayloadType.OUTPUT) -> None:
        """Send stream data (output) to the client."""
        with self.lock:
            self._wait_connected()
            self._send_stream(data, payload_type)

    def send_outputs_in_order(self, chunks: list[bytes], order: list[int]) -> None:
        """Make one stream message per chunk, then put them on the wire in `order` (repeats allowed)."""
        with self.lock:
            self._wait_connected()
            messages = []
            for chunk in chunks:
                messages.extend(self._state.send(chunk, PayloadType.OUTPUT, now=time.monotonic()))
            for index in order:
                self._ws.send(messages[index].encode())
                self.outputs_sent += 1

    def send_control(self, message_type: str) -> None:
        """Send pause_publication / start_publication as the gateway does."""
        with self.lock:
            self._wait_connected()
            self._ws.send(AgentMessage(message_type=message_type, created_date=_now_ms()).encode())
            self.log.append('sent %s' % message_type)

    def complete_handshake(self) -> None:
        """Send HandshakeComplete (when auto_complete_handshake is off)."""
        with self.lock:
            self._wait_connected()
            self._send_stream(HandshakeComplete(1000, 'welcome').to_json(), PayloadType.HANDSHAKE_COMPLETE)
            self.log.append('sent HandshakeComplete')

    def hang_up(self) -> None:
        """Lose the connection without a close frame (a network drop); the session state stays for a resume."""
        with self.lock:
            self._wait_connected()
            self._ws.socket.shutdown(socket.SHUT_RDWR)
            self.log.append('hung up')

    def send_output_and_hang_up(self, data: bytes) -> None:
        """Send output and lose the connection at once: the client may get it, but its ack cannot come back."""
        with self.lock:
            self._wait_connected()
            self._send_stream(data, PayloadType.OUTPUT)
            self._ws.socket.shutdown(socket.SHUT_RDWR)
            self.log.append('sent output and hung up')

    def close_channel(self, output: str) -> None:
        """Send channel_closed and hang up politely, as the service does when the command exits."""
        with self.lock:
            self._wait_connected()
            payload = ChannelClosed(message_id='m-1', created_date='2026-01-01T00:00:00.000Z', destination_id='client',
                                    session_id=SESSION_ID, message_type=CHANNEL_CLOSED, schema_version=1, output=output).to_json()
            self._ws.send(AgentMessage(message_type=CHANNEL_CLOSED, created_date=_now_ms(), payload=payload).encode())
            self._ws.close()

    # -- server side ---------------------------------------------------------------------------
    def _process_request(self, connection: t.Any, request: t.Any) -> t.Any:
        self.request_path = request.path
        self.request_paths.append(request.path)
        if self.reject_status is not None:
            return connection.respond(self.reject_status, 'rejected\n')
        return None

    def _send_stream(self, data: bytes, payload_type: int) -> None:
        for message in self._state.send(data, payload_type, now=time.monotonic()):
            self._ws.send(message.encode())
            if payload_type == PayloadType.OUTPUT:
                self.outputs_sent += 1

    def _handler(self, ws: t.Any) -> None:
        text = ws.recv(timeout=5)
        with self.lock:
            self.connections += 1
            if not isinstance(text, str):
                self.log.append('first frame was not text')
                ws.close(1002, 'expected OpenDataChannel')
                return
            self.open_request = parse_open_data_channel(text)
            resuming = self._state is not None and self.open_request.token_value in self.resume_tokens
            if self.open_request.token_value != self.token and not resuming:
                self.log.append('bad token')
                self.lock.notify_all()
                ws.close(1008, 'authentication failed')
                return
            self.open_requests.append(self.open_request)
            self._ws = ws
            if resuming:
                # The agent's resend scheduler: whatever the client did not acknowledge, original bytes.
                self.log.append('resumed')
                for message in self._state.reconnected(time.monotonic()):
                    if message.message_type != ACKNOWLEDGE:   # the real agent sends no acks again
                        ws.send(message.encode())
                        self.replayed.append(message.payload)
            else:
                self._state = DataChannelState(Role.AGENT)
                if self.handshake is not None:
                    self._send_stream(self.handshake.to_json(), PayloadType.HANDSHAKE_REQUEST)
                elif self.greeting:
                    self._send_stream(self.greeting, PayloadType.OUTPUT)
            self.lock.notify_all()
        while True:
            with self.lock:
                deadline = self._state.next_deadline()
            wait = 5.0 if deadline is None else max(0.001, deadline - time.monotonic())
            try:
                frame = ws.recv(timeout=wait)
            except TimeoutError:
                with self.lock:
                    try:
                        for message in self._state.due_resends(time.monotonic()):
                            ws.send(message.encode())
                    except websockets_exceptions.ConnectionClosed:
                        return
                continue
            except websockets_exceptions.ConnectionClosed:
                return
            with self.lock:
                hang_up = self._on_frame(frame)
                self.lock.notify_all()
            if hang_up:
                # No close frame: the client must see a dropped connection.
                ws.socket.shutdown(socket.SHUT_RDWR)
                ws.socket.close()
                return

    def _on_frame(self, frame: t.Any) -> bool:
        message = AgentMessage.decode(frame)
        self.received.append(message)
        if message.message_type == ACKNOWLEDGE:
            self.acks_received += 1
        if message.message_type == INPUT_STREAM_DATA and self.ignore_inputs > 0:
            self.ignore_inputs -= 1
            self.log.append('ignored input seq %d' % message.sequence_number)
            return False
        if message.payload_type == PayloadType.HANDSHAKE_RESPONSE:
            self.handshake_response = message.payload
        result = self._state.receive(message, time.monotonic())
        for ack in result.to_send:
            if self.drop_acks > 0:
                self.drop_acks -= 1
                self.log.append('dropped an ack')
                continue
            self._ws.send(ack.encode())
        for event in result.events:
            if isinstance(event, StreamData) and event.payload_type == PayloadType.OUTPUT:
                self.inputs.append(event.payload)
                if self.hang_up_on_input:
                    return True
                if self.echo:
                    self._send_stream(event.payload, PayloadType.OUTPUT)
            elif isinstance(event, StreamData) and event.payload_type == PayloadType.SIZE:
                self.sizes.append(parse_size(event.payload))
            elif isinstance(event, HandshakeResponded):
                self._on_handshake_response(event)
            elif isinstance(event, EncryptionChallengeReceived):
                self.challenge_ok = self._decrypt is not None and self._decrypt(event.challenge.challenge) == self._challenge
                self.log.append('challenge answered, ok=%s' % self.challenge_ok)
                if self.challenge_ok and self.auto_complete_handshake:
                    self._send_stream(HandshakeComplete(1000, '').to_json(), PayloadType.HANDSHAKE_COMPLETE)
        return False

    def _on_handshake_response(self, event: HandshakeResponded) -> None:
        self.log.append('handshake response')
        kms = [item for item in event.response.processed_client_actions if item.action_type == ACTION_KMS_ENCRYPTION]
        if kms and kms[0].action_status == 1:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # pylint: disable=import-outside-toplevel

            cipher_blob, _ack = parse_kms_encryption_result(kms[0].action_result)
            plaintext = self.kms_keys[cipher_blob]
            # The agent encrypts with the first half and decrypts with the second: the client's mirror image.
            encrypt_key, decrypt_key = AESGCM(plaintext[:32]), AESGCM(plaintext[32:])

            def encrypt(data: bytes) -> bytes:
                nonce = os.urandom(12)
                return nonce + encrypt_key.encrypt(nonce, data, None)

            def decrypt(data: bytes) -> bytes:
                return decrypt_key.decrypt(data[:12], data[12:], None)

            self._state.set_cipher(encrypt, decrypt)
            self._decrypt = decrypt
            self._challenge = os.urandom(32)
            self._send_stream(EncryptionChallenge(encrypt(self._challenge)).to_json(), PayloadType.ENC_CHALLENGE_REQUEST)
        elif not kms and self.auto_complete_handshake:
            self._send_stream(HandshakeComplete(1000, 'welcome').to_json(), PayloadType.HANDSHAKE_COMPLETE)


@pytest.fixture
def fake_agent_factory() -> t.Iterator[t.Callable[..., FakeAgent]]:
    """Start fake agents on demand; all are shut down after the test."""
    started: list[FakeAgent] = []

    def factory(**kwargs: t.Any) -> FakeAgent:
        agent = FakeAgent(**kwargs).__enter__()
        started.append(agent)
        return agent

    yield factory
    for agent in started:
        agent.__exit__(None, None, None)
