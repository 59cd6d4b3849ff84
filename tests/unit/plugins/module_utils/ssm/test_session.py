# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Tests of DataChannelSession against a fake agent on a real websockets server (see conftest.py)."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
import typing as t

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.module_utils.ssm import session as session_module
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.messages import (
    INPUT_STREAM_DATA,
    PAUSE_PUBLICATION,
    START_PUBLICATION,
    PayloadType,
)
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.payloads import (
    HandshakeRequest,
    KMSEncryptionRequest,
    RequestedClientAction,
    SessionTypeRequest,
)
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.session import (
    STDERR,
    STDOUT,
    DataChannelConnectFailed,
    DataChannelSession,
    SessionClosed,
    SessionDropped,
)
from ansible_collections.cloudexec.core.plugins.module_utils.version import USER_AGENT

pytest.importorskip('websockets')

TARGET_ID = 'ecs:demo_0123456789abcdef_0123456789abcdef-1234567890'


def _session(agent: t.Any, lines: list[str] | None = None, **kwargs: t.Any) -> DataChannelSession:
    kwargs.setdefault('proxy', None)  # an HTTPS_PROXY in the test environment must not capture 127.0.0.1
    kwargs.setdefault('connect_timeout', 5)
    kwargs.setdefault('terminal_size', None)  # exact sequence numbers below; the default size has its own test
    return DataChannelSession(agent.url, kwargs.pop('token', agent.TOKEN), session_id=agent.SESSION_ID,
                              log=(lines.append if lines is not None else None), **kwargs)


def _read_until(session: DataChannelSession, size: int, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b''
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError('read %d of %d bytes: %r' % (len(data), size, data[:200]))
        data += session.read(remaining)
    return data


def _pump_until(session: DataChannelSession, predicate: t.Callable[[], bool], timeout: float = 5.0) -> bytes:
    """Let the session pump (acks, resends) until predicate() holds; return any output read meanwhile."""
    deadline = time.monotonic() + timeout
    data = b''
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('condition not met within %g s' % timeout)
        data += session.read(0.02)
    return data


def _handshake(*actions: RequestedClientAction) -> HandshakeRequest:
    return HandshakeRequest(agent_version='3.3.1802.0', requested_client_actions=list(actions))


SESSION_TYPE_ACTION = RequestedClientAction('SessionType', SessionTypeRequest('InteractiveCommands', {'commands': 'sh'}))


# ---------------------------------------------------------------------------------------------
# Opening and the echo round trip
# ---------------------------------------------------------------------------------------------
def test_open_sends_open_data_channel_then_binary_echo(fake_agent_factory):
    agent = fake_agent_factory()
    with _session(agent) as session:
        assert _read_until(session, 2) == b'$ '
        payload = bytes(range(256)) * 12 + b'\r\n\x00\xff'   # 3076 bytes: binary, cut into 1024-byte messages
        session.send(payload)
        assert _read_until(session, len(payload)) == payload
        assert session.flush(5)
        # Our acks reach the agent asynchronously: wait for it to have counted every one.
        assert _pump_until(session, lambda: agent.acks_received == session.stats.acks_sent) == b''
        stats = session.stats
    request = agent.open_request
    assert request.token_value == agent.TOKEN
    assert request.client_version == USER_AGENT
    assert request.message_schema_version == '1.0'
    assert len(request.request_id) == 36 and len(request.client_id) == 36 and request.request_id != request.client_id
    assert agent.request_path == agent.PATH + '?' + agent.QUERY
    assert b''.join(agent.inputs) == payload
    inputs = [m for m in agent.received if m.message_type == INPUT_STREAM_DATA]
    assert [len(m.payload) for m in inputs] == [1024, 1024, 1024, 4]
    assert [m.sequence_number for m in inputs] == [0, 1, 2, 3]
    # Acknowledgements both ways: 4 inputs acked by the agent, greeting + 4 echoes acked by us. A loaded
    # machine may let a 200 ms retransmission timeout pass; every copy is then acknowledged too.
    assert stats.stream_messages_sent == 4 and stats.acks_received == 4 + stats.resends
    assert stats.stream_messages_received >= 5 and stats.acks_sent == stats.stream_messages_received == agent.acks_received
    assert stats.bytes_out == len(payload) and stats.bytes_in == len(payload) + 2
    assert stats.frames_sent == 4 + stats.resends + stats.acks_sent
    assert stats.frames_received == stats.stream_messages_received + stats.acks_received
    assert stats.opened_at is not None and stats.connect_seconds is not None
    assert session.state == 'closed'


def test_read_times_out_with_empty_bytes_without_overshooting(fake_agent_factory):
    agent = fake_agent_factory(greeting=None)
    with _session(agent) as session:
        started = time.monotonic()
        assert session.read(0.3) == b''
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 0.6
        assert session.read(0) == b''


def test_stderr_kept_apart_by_read_streams_and_merged_by_read(fake_agent_factory):
    agent = fake_agent_factory(greeting=None)
    with _session(agent) as session:
        agent.send_output(b'out1 ')
        agent.send_output(b'err1 ', PayloadType.STDERR)
        agent.send_output(b'out2')
        chunks: list[tuple[str, bytes]] = []
        while sum(len(data) for _s, data in chunks) < 14:
            chunks.extend(session.read_streams(5))
        assert chunks == [(STDOUT, b'out1 '), (STDERR, b'err1 '), (STDOUT, b'out2')]
        agent.send_output(b'E', PayloadType.STDERR)
        assert _read_until(session, 1) == b'E'


def test_terminal_size_is_sent_as_size_payload(fake_agent_factory):
    agent = fake_agent_factory()
    with _session(agent, terminal_size=(500, 50)) as session:
        _read_until(session, 2)
        assert session.flush(5)
    assert agent.sizes == [(500, 50)]


# ---------------------------------------------------------------------------------------------
# Reliability
# ---------------------------------------------------------------------------------------------
def test_out_of_order_and_duplicated_output_delivered_once_in_order(fake_agent_factory):
    agent = fake_agent_factory(greeting=None)
    with _session(agent) as session:
        agent.send_outputs_in_order([b'alpha ', b'beta ', b'gamma'], order=[2, 0, 2, 1, 0])
        assert _read_until(session, 16) == b'alpha beta gamma'
        assert _pump_until(session, lambda: agent.acks_received == 5) == b''
        # Every copy is acknowledged (a duplicate means our earlier ack was lost), none delivered twice.
        assert session.stats.acks_sent == 5 and session.stats.stream_messages_received == 5
        assert session.read(0.05) == b''


def test_ignored_input_is_resent(fake_agent_factory):
    agent = fake_agent_factory(ignore_inputs=1)
    with _session(agent) as session:
        _read_until(session, 2)
        session.send(b'hello\n')
        assert _read_until(session, 6) == b'hello\n'
        assert session.stats.resends >= 1
    assert agent.inputs == [b'hello\n']
    assert 'ignored input seq 0' in agent.log


def test_lost_ack_causes_resend_and_no_duplicate_delivery(fake_agent_factory):
    agent = fake_agent_factory(drop_acks=1)
    with _session(agent) as session:
        _read_until(session, 2)
        session.send(b'once')
        assert _read_until(session, 4) == b'once'
        assert session.flush(5)
        assert session.stats.resends >= 1
    # The agent got the message twice, re-acknowledged the copy, and echoed it once.
    assert len([m for m in agent.received if m.message_type == INPUT_STREAM_DATA]) >= 2
    assert agent.inputs == [b'once'] and agent.outputs_sent == 2


def test_pause_publication_holds_input_until_start(fake_agent_factory):
    agent = fake_agent_factory()
    with _session(agent) as session:
        _read_until(session, 2)
        agent.send_control(PAUSE_PUBLICATION)
        deadline = time.monotonic() + 5
        while session.stats.pauses == 0 and time.monotonic() < deadline:
            assert session.read(0.02) == b''   # the pause yields no output, so read() runs to its timeout
        assert session.stats.pauses == 1
        session.send(b'held')
        # Pump past several retransmission timeouts: nothing may go out while paused.
        assert session.read(0.5) == b''
        assert session.stats.stream_messages_sent == 0 and session.unacknowledged == 1
        assert agent.inputs == []
        agent.send_control(START_PUBLICATION)
        assert _read_until(session, 4) == b'held'
        assert session.stats.stream_messages_sent == 1 and session.stats.resends == 0


def test_input_held_until_the_agent_speaks(fake_agent_factory):
    agent = fake_agent_factory(greeting=None)
    with _session(agent) as session:
        session.send(b'early')
        assert not session.flush(0.3)
        assert session.stats.frames_sent == 0 and agent.inputs == []
        agent.send_output(b'# ')
        assert _read_until(session, 7) == b'# early'
    assert agent.inputs == [b'early']


def test_input_hold_expires_when_the_agent_stays_silent(fake_agent_factory):
    agent = fake_agent_factory(greeting=None)
    with _session(agent, input_hold=0.2) as session:
        session.send(b'x')
        assert session.flush(5)
        assert _read_until(session, 1) == b'x'


def test_stalled_channel_raises_session_dropped(fake_agent_factory):
    agent = fake_agent_factory(ignore_inputs=10 ** 6)
    with _session(agent, give_up_after=0.5) as session:
        _read_until(session, 2)
        session.send(b'x')
        with pytest.raises(SessionDropped) as caught:
            while True:
                session.read(5)
    assert caught.value.input_sent and not caught.value.input_acknowledged
    assert 'no acknowledgement' in str(caught.value)
    assert session.stats.resends >= 1


# ---------------------------------------------------------------------------------------------
# Handshake and KMS
# ---------------------------------------------------------------------------------------------
def test_session_type_handshake_answered_exactly_and_input_held_until_complete(fake_agent_factory):
    agent = fake_agent_factory(handshake=_handshake(SESSION_TYPE_ACTION), auto_complete_handshake=False, greeting=None)
    with _session(agent, input_hold=0) as session:
        assert session.read(0.2) == b''
        agent.wait_for(lambda: agent.handshake_response is not None)
        assert agent.handshake_response == (
            b'{"ClientVersion":"' + USER_AGENT.encode() + b'","ProcessedClientActions":[{"ActionType":"SessionType",'
            b'"ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}')
        assert session.session_type == 'InteractiveCommands'
        session.send(b'typed early')
        assert session.read(0.3) == b''
        assert agent.inputs == [] and not session.ready
        agent.complete_handshake()
        assert _read_until(session, 11) == b'typed early'
        assert session.ready


def test_kms_handshake_refused_with_clear_error(fake_agent_factory):
    kms = RequestedClientAction('KMSEncryption', KMSEncryptionRequest('arn:aws:kms:eu-west-1:123456789012:key/abc'))
    agent = fake_agent_factory(handshake=_handshake(SESSION_TYPE_ACTION, kms), greeting=None)
    session = _session(agent)
    with session, pytest.raises(CloudExecError) as caught:
        session.read(5)
    error = caught.value
    assert error.code == 'KMSEncryptionUnsupported' and not error.retryable
    assert 'kmsKeyId' in str(error) and error.remedy
    agent.wait_for(lambda: agent.handshake_response is not None)
    response = json.loads(agent.handshake_response)
    statuses = {item['ActionType']: (item['ActionStatus'], item['Error']) for item in response['ProcessedClientActions']}
    assert statuses['SessionType'][0] == 1
    assert statuses['KMSEncryption'] == (2, 'Failed to process action KMSEncryption: KMS encryption is not supported by this client')
    assert response['Errors'] == ['KMS encryption is not supported by this client']


def test_kms_encrypted_session_round_trip(fake_agent_factory):
    pytest.importorskip('cryptography')
    plaintext, blob = os.urandom(64), b'kms-ciphertext-blob'
    kms = RequestedClientAction('KMSEncryption', KMSEncryptionRequest('alias/exec', challenge='c2FsdA=='))
    agent = fake_agent_factory(handshake=_handshake(SESSION_TYPE_ACTION, kms), greeting=None, kms_keys={blob: plaintext})
    calls = []

    def generate_data_key(key_id: str, context: dict[str, str]) -> tuple[bytes, bytes]:
        calls.append((key_id, context))
        return plaintext, blob

    with _session(agent, target_id=TARGET_ID, generate_data_key=generate_data_key) as session:
        session.send(b'secret input')
        assert _read_until(session, 12) == b'secret input'
    assert calls == [('alias/exec', {'aws:ssm:SessionId': agent.SESSION_ID, 'aws:ssm:TargetId': TARGET_ID,
                                     'aws:ssm:RandomChallenge': 'c2FsdA=='})]
    assert agent.challenge_ok is True
    result = json.loads(agent.handshake_response)['ProcessedClientActions'][1]['ActionResult']
    assert result == {'KMSCipherTextKey': 'a21zLWNpcGhlcnRleHQtYmxvYg==', 'KMSCipherTextHash': None, 'ChallengeAcknowledgement': True}
    # On the wire the input was sealed (nonce + ciphertext + tag), and decrypted by the agent.
    sealed = [m.payload for m in agent.received if m.payload_type == PayloadType.OUTPUT]
    assert len(sealed) == 1 and b'secret' not in sealed[0] and len(sealed[0]) == 12 + 12 + 16
    assert agent.inputs == [b'secret input']


# ---------------------------------------------------------------------------------------------
# Endings and failures
# ---------------------------------------------------------------------------------------------
def test_channel_closed_raises_after_all_output(fake_agent_factory):
    agent = fake_agent_factory(greeting=None)
    session = _session(agent)
    with session:
        agent.send_output(b'bye\r\n')
        agent.close_channel('Exiting session with sessionId: %s.\x1b[0m\r\n\x07' % agent.SESSION_ID)
        assert _read_until(session, 5) == b'bye\r\n'
        with pytest.raises(SessionClosed) as caught:
            session.read(5)
        assert caught.value.output == 'Exiting session with sessionId: %s.' % agent.SESSION_ID
        assert caught.value.code == 'SessionClosed' and not caught.value.retryable
        assert session.state == 'ended'
        with pytest.raises(SessionClosed):
            session.read(0)
        with pytest.raises(SessionClosed):
            session.send(b'late')


def test_dropped_socket_mid_stream_says_input_was_sent(fake_agent_factory):
    agent = fake_agent_factory(hang_up_on_input=True)
    with _session(agent) as session:
        _read_until(session, 2)
        session.send(b'rm -rf /tmp/x\n')
        with pytest.raises(SessionDropped) as caught:
            session.read(5)
    error = caught.value
    assert error.code == 'SessionDropped' and error.retryable is False
    assert error.input_sent and 'the command may have run' in str(error)
    assert agent.inputs == [b'rm -rf /tmp/x\n']


RESUMED_TOKEN = 'ResumedTokenSecret+/Value=='
RESUMED_QUERY = 'role=publish_subscribe&cell-number=ResumedQuerySecret%2BXyz%3D'


class FakeResume:
    """SSM ResumeSession as the session sees it: a list of answers (a token, or an error to raise)."""

    def __init__(self, agent: t.Any, *answers: str | CloudExecError) -> None:
        self.url = agent.url.replace(agent.QUERY, RESUMED_QUERY)
        # (token, error) per call; the last one answers every later call.
        self.answers = [(a, None) if isinstance(a, str) else ('', a) for a in answers] or [(RESUMED_TOKEN, None)]
        self.calls: list[str] = []

    def __call__(self, session_id: str) -> tuple[str | None, str]:
        self.calls.append(session_id)
        token, error = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if error is not None:
            raise error
        return self.url, token


def test_lost_connection_is_resumed_and_nothing_is_delivered_or_applied_twice(fake_agent_factory):
    agent = fake_agent_factory(resume_tokens=[RESUMED_TOKEN])
    resume = FakeResume(agent)
    lines: list[str] = []
    with _session(agent, lines, resume_session=resume) as session:
        assert _read_until(session, 2) == b'$ '
        session.send(b'first')
        assert _read_until(session, 5) == b'first'
        # Output the agent sends as the connection dies: it reaches us, our ack does not reach it.
        agent.send_output_and_hang_up(b'in flight')
        # Input typed on the dead connection: queued, sent again (original number) once resumed.
        assert _read_until(session, 9) == b'in flight'
        session.send(b'second')
        agent.wait_for(lambda: len(agent.open_requests) == 2 and agent.inputs[-1:] == [b'second'])
        # The agent replayed "in flight" (unacknowledged): acknowledged, not delivered again; "second" echoed once.
        assert _read_until(session, 6) == b'second'
        agent.send_output(b'after')
        assert _read_until(session, 5) == b'after'
        assert session.flush(5)
        stats = session.stats
    assert agent.inputs == [b'first', b'second']
    assert stats.bytes_in == len(b'$ first' + b'in flight' + b'second' + b'after')   # every byte once
    assert agent.log.count('resumed') == 1 and agent.replayed == [b'in flight']
    assert resume.calls == [agent.SESSION_ID] and stats.resumes == 1 and stats.resume_attempts == 1
    first, second = agent.open_requests
    assert second.token_value == RESUMED_TOKEN and second.client_id == first.client_id and second.request_id != first.request_id
    assert agent.request_paths[-1] == agent.PATH + '?' + RESUMED_QUERY
    assert any('resumed' in line for line in lines)
    for secret in (RESUMED_TOKEN, 'ResumedQuerySecret', agent.TOKEN, 'QuerySecret'):
        assert not any(secret in line for line in lines), secret


def test_resume_is_retried_with_back_off_then_succeeds(fake_agent_factory):
    agent = fake_agent_factory(resume_tokens=[RESUMED_TOKEN])
    throttled = CloudExecError('Rate exceeded', code='ThrottlingException', provider='aws')
    resume = FakeResume(agent, throttled, throttled, RESUMED_TOKEN)
    slept: list[float] = []
    with _session(agent, resume_session=resume, sleep=slept.append) as session:
        _read_until(session, 2)
        agent.hang_up()
        session.send(b'x')
        assert _read_until(session, 1) == b'x'
    assert len(resume.calls) == 3 and session.stats.resumes == 1
    # As AWS's client: 100-200 ms, then twice that.
    assert 0.1 <= slept[0] <= 0.2 and 0.2 <= slept[1] <= 0.4 and len(slept) == 2


@pytest.mark.parametrize('error, expected', [
    (CloudExecError('Session with id s does not exist.', code='DoesNotExistException', provider='aws'),
     'could not be resumed (DoesNotExistException: Session with id s does not exist.): SSM may not resume ECS Exec sessions'),
    (CloudExecError('ResumeSession failed: not authorized', code='AccessDeniedException', provider='aws'),
     'could not be resumed (AccessDeniedException: ResumeSession failed: not authorized): allow ssm:ResumeSession'),
])
def test_refused_resume_falls_back_to_the_honest_error(fake_agent_factory, error, expected):
    agent = fake_agent_factory(drop_acks=1, hang_up_on_input=True)
    resume = FakeResume(agent, error)
    with _session(agent, resume_session=resume, sleep=lambda _s: None) as session:
        _read_until(session, 2)
        session.send(b'rm -rf /tmp/x\n')
        with pytest.raises(SessionDropped) as caught:
            session.read(5)
    assert resume.calls == [agent.SESSION_ID]   # refused: not asked again
    assert caught.value.input_sent and caught.value.resume_error is error
    assert 'the command may have run' in str(caught.value) and expected in str(caught.value)


def test_resume_gives_up_after_six_attempts(fake_agent_factory):
    agent = fake_agent_factory()
    unavailable = CloudExecError('Service is unavailable', code='ServiceUnavailableException', provider='aws', status=503)
    resume = FakeResume(agent, unavailable)
    with _session(agent, resume_session=resume, sleep=lambda _s: None) as session:
        _read_until(session, 2)
        agent.hang_up()
        with pytest.raises(SessionDropped) as caught:
            session.read(5)
    assert len(resume.calls) == session_module.RESUME_ATTEMPTS == 6
    assert 'before any input was sent' in str(caught.value) and 'ServiceUnavailableException' in str(caught.value)


def test_terminal_size_is_sent_once_the_agent_speaks_and_is_not_input(fake_agent_factory):
    agent = fake_agent_factory(hang_up_on_input=False)
    with _session(agent, terminal_size=session_module.DEFAULT_TERMINAL_SIZE) as session:
        assert _read_until(session, 2) == b'$ '
        assert session.flush(5)
        assert not session.input_sent
    assert agent.sizes == [(300, 100)]
    sizes = [m for m in agent.received if m.message_type == INPUT_STREAM_DATA]
    assert [(m.sequence_number, m.payload_type) for m in sizes] == [(0, PayloadType.SIZE)]


def test_dropped_socket_before_input_says_so(fake_agent_factory):
    agent = fake_agent_factory()
    with _session(agent) as session:
        _read_until(session, 2)
        with agent.lock:
            agent._ws.socket.shutdown(socket.SHUT_RDWR)   # pylint: disable=protected-access
        with pytest.raises(SessionDropped) as caught:
            session.read(5)
    assert not caught.value.input_sent and 'before any input was sent' in str(caught.value)


def test_wrong_token_is_a_connect_failure(fake_agent_factory):
    agent = fake_agent_factory()
    with _session(agent, token='wrong-token') as session:
        with pytest.raises(DataChannelConnectFailed) as caught:
            session.read(5)
    error = caught.value
    assert error.code == 'DataChannelConnectFailed' and not error.retryable
    assert '1008' in str(error) and 'token' in str(error) and 'single use' in error.remedy
    assert agent.log == ['bad token']


def test_http_rejection_on_upgrade_is_a_connect_failure(fake_agent_factory):
    agent = fake_agent_factory(reject_status=403)
    session = _session(agent)
    with pytest.raises(DataChannelConnectFailed) as caught:
        session.open()
    assert caught.value.status == 403 and 'HTTP 403' in str(caught.value)
    assert 'VPC endpoint' in caught.value.remedy


def test_refused_connection_is_a_connect_failure():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    session = DataChannelSession('ws://127.0.0.1:%d/v1/data-channel/s-1?role=x' % port, 'tok', proxy=None, connect_timeout=2)
    with pytest.raises(DataChannelConnectFailed) as caught:
        session.open()
    assert 'ConnectionRefusedError' in str(caught.value)


def test_usage_errors_and_idempotent_close(fake_agent_factory):
    agent = fake_agent_factory()
    session = _session(agent)
    with pytest.raises(CloudExecError) as caught:
        session.send(b'x')
    assert caught.value.code == 'DataChannelNotOpen'
    session.open()
    with pytest.raises(CloudExecError):
        session.open()
    session.close()
    session.close()
    with pytest.raises(CloudExecError) as caught:
        session.read(0)
    assert caught.value.code == 'DataChannelNotOpen'
    with pytest.raises(CloudExecError) as caught:
        DataChannelSession('https://example.com/x?secret=1', 'tok')
    assert 'secret' not in str(caught.value)


def test_missing_websockets_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(session_module.websocket, 'HAS_WEBSOCKETS', False)
    with pytest.raises(CloudExecError) as caught:
        DataChannelSession('wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/s?role=x', 'tok')
    assert caught.value.code == 'MissingDependency' and 'pip install' in caught.value.remedy


# ---------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------
def test_token_and_url_never_leak(fake_agent_factory, caplog):
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    texts: list[str] = []

    def record(error: BaseException) -> None:
        texts.extend([str(error), repr(error), ''.join(traceback.format_exception(type(error), error, error.__traceback__))])
        if isinstance(error, CloudExecError):
            texts.append(json.dumps(error.to_result()))

    agent = fake_agent_factory()
    with _session(agent, lines) as session:
        _read_until(session, 2)
        session.send(b'ping')
        _read_until(session, 4)
        texts.extend([repr(session), str(session), repr(session.stats)])
    for kwargs in ({'token': 'not-' + agent.TOKEN}, {}):
        failing = fake_agent_factory(**({'hang_up_on_input': True} if not kwargs else {}))
        with _session(failing, lines, **kwargs) as session:
            with pytest.raises(CloudExecError) as caught:
                if not kwargs:
                    _read_until(session, 2)
                    session.send(b'x')
                session.read(5)
            record(caught.value)
    rejected = fake_agent_factory(reject_status=401)
    with pytest.raises(CloudExecError) as caught:
        _session(rejected, lines).open()
    record(caught.value)
    texts.extend(lines)
    texts.append(caplog.text)
    texts.extend(record.getMessage() for record in caplog.records)
    assert lines, 'the session logs nothing: the test would prove nothing'
    assert any('127.0.0.1' in line for line in lines)
    haystack = '\n'.join(texts)
    for secret in (agent.TOKEN, 'QuerySecret', agent.QUERY, agent.PATH, '/v1/data-channel/'):
        assert secret not in haystack, secret
