# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ECS Exec against the emulator: ExecuteCommand through boto3, and the data channel through a tiny client.

The client here is deliberately independent of the collection's ``module_utils/ssm`` and of the
emulator's ``ssm_wire``: frames are packed with ``struct`` from the layout in AWS's sources, so a
mistake shared by both implementations would still show up.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from websockets.sync.client import connect

from cloudexec_emulator.testing import start_emulator

WEB = 'a0000000000000000000000000000001'
PAIR = 'a0000000000000000000000000000002'
NO_EXEC = 'a0000000000000000000000000000003'
AGENT_PENDING = 'a0000000000000000000000000000004'
STOPPED = 'a0000000000000000000000000000005'
LIMITED = 'a0000000000000000000000000000006'
OTHER = 'a0000000000000000000000000000007'
SHAPE = 'a0000000000000000000000000000008'
SECURE = 'b0000000000000000000000000000001'

WORLD = f"""
aws:
  region: us-east-1
  credentials:
    - {{access_key: AKIAEXECTEST00000001, secret_key: exec/test/secret/00001}}
    - {{access_key: AKIAEXECTESTDENIED01, secret_key: exec/test/secret/00002, deny: [ecs:ExecuteCommand, ssm:ResumeSession]}}
  exec: {{session_limit: 2, token_ttl_seconds: 1.5, idle_timeout_seconds: 2, agent_start_ms: 50, output_delay_ms: 50, resumable: true}}
  clusters:
    - name: exec
      tasks:
        - {{id: {WEB}, family: web, containers: [{{name: web}}]}}
        - {{id: {PAIR}, family: api, containers: [{{name: app}}, {{name: sidecar}}]}}
        - {{id: {NO_EXEC}, family: batch, enable_execute_command: false}}
        - {{id: {AGENT_PENDING}, family: slow, containers: [{{name: slow, agent_status: PENDING}}]}}
        - {{id: {STOPPED}, family: gone, last_status: STOPPED, desired_status: STOPPED}}
        - {{id: {LIMITED}, family: limited}}
        - {{id: {OTHER}, family: other}}
        - {{id: {SHAPE}, family: shape}}
    - name: secure
      kms_key_id: arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555
      tasks:
        - {{id: {SECURE}, family: vault}}
"""

# ---- the wire, written out from AWS's layout ---------------------------------------------------

# Every test's sockets are closed when it ends, whatever happened.
OPEN_CHANNELS = contextlib.ExitStack()
HEADER = struct.Struct('>I32sIQqQ16s32sII')


def pack(kind: str, seq: int, payload: bytes, payload_type: int = 1, flags: int = 0, message_id: uuid.UUID | None = None) -> bytes:
    mid = (message_id or uuid.uuid4()).bytes
    return HEADER.pack(116, kind.encode().ljust(32, b' '), 1, int(time.time() * 1000), seq, flags, mid[8:] + mid[:8],
                       hashlib.sha256(payload).digest(), payload_type, len(payload)) + payload


def unpack(data: bytes) -> dict[str, Any]:
    hl, kind, schema, created, seq, flags, mid, digest, ptype, plen = HEADER.unpack_from(data)
    payload = data[hl + 4:]
    assert hl == 116 and schema == 1 and created > 0 and plen == len(payload)
    assert digest == hashlib.sha256(payload).digest()
    return {'type': kind.decode().strip(), 'seq': seq, 'flags': flags, 'id': uuid.UUID(bytes=mid[8:] + mid[:8]),
            'ptype': ptype, 'payload': payload}


class Channel:
    """Just enough of a data channel client for tests."""

    def __init__(self, session: dict[str, str], token: str | None = None) -> None:
        # Entered as a context manager: the form every websockets release since 12 supports without a warning.
        self.ws = OPEN_CHANNELS.enter_context(connect(session['streamUrl'], open_timeout=5, close_timeout=2))
        self.ws.send(json.dumps({'MessageSchemaVersion': '1.0', 'RequestId': str(uuid.uuid4()),
                                 'TokenValue': session['tokenValue'] if token is None else token,
                                 'ClientId': str(uuid.uuid4()), 'ClientVersion': '1.2.0.0'}))
        self.seq = 0
        self.output = b''
        self.outputs: list[dict[str, Any]] = []
        self.acks: list[dict[str, Any]] = []
        self.closed: dict[str, Any] | None = None
        self.seen_seq: set[int] = set()

    def send_input(self, payload: bytes, payload_type: int = 1, message_id: uuid.UUID | None = None) -> None:
        self.ws.send(pack('input_stream_data', self.seq, payload, payload_type, message_id=message_id))
        self.seq += 1

    def ack(self, message: dict[str, Any]) -> None:
        body = json.dumps({'AcknowledgedMessageType': message['type'], 'AcknowledgedMessageId': str(message['id']),
                           'AcknowledgedMessageSequenceNumber': message['seq'], 'IsSequentialMessage': True}).encode()
        self.ws.send(pack('acknowledge', 0, body, payload_type=0, flags=3))

    def receive(self, timeout: float = 5.0, auto_ack: bool = True) -> dict[str, Any]:
        message = unpack(self.ws.recv(timeout=timeout))
        if message['type'] == 'output_stream_data':
            self.outputs.append(message)
            if auto_ack:
                self.ack(message)
            if message['ptype'] == 1 and message['seq'] not in self.seen_seq:
                self.seen_seq.add(message['seq'])
                self.output += message['payload']
        elif message['type'] == 'acknowledge':
            self.acks.append(json.loads(message['payload']))
        elif message['type'] == 'channel_closed':
            self.closed = json.loads(message['payload'])
        return message

    def until(self, predicate, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            try:
                self.receive(max(0.01, deadline - time.monotonic()))
            except ConnectionClosed as exc:
                raise AssertionError(f'channel closed early: {self.closed}, output {self.output!r}') from exc

    def drain(self, seconds: float) -> None:
        """Take whatever arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while (left := deadline - time.monotonic()) > 0:
                self.receive(left)

    def finish(self, timeout: float = 5.0) -> bytes:
        """Read until channel_closed and the close of the socket; returns all Output bytes."""
        self.until(lambda: self.closed is not None, timeout)
        with pytest.raises(ConnectionClosedOK):
            self.ws.recv(timeout=timeout)
        return self.output


def test_emulator_codec_matches_awss_vector():
    """The emulator's own codec against the frame of AWS's messageparser_test.go, assembled by hand."""
    from cloudexec_emulator import ssm_wire  # pylint: disable=import-outside-toplevel
    expected = bytes.fromhex(
        '00000074' + b'input_stream_data'.hex() + '20' * 15 + '00000001' '0000015e0baa7884' '0000000000000001' '0000000000000002'
        'a508b5f073f31b16' 'dd01e56bff48483e' + hashlib.sha256(b'payload').hexdigest() + '00000000' '00000007' + b'payload'.hex())
    message = ssm_wire.WireMessage('input_stream_data', payload=b'payload', sequence_number=1, flags=2, created_date=1503434274948,
                                   message_id=uuid.UUID('dd01e56b-ff48-483e-a508-b5f073f31b16'))
    assert message.encode() == expected
    assert ssm_wire.WireMessage.decode(expected) == message
    assert unpack(expected)['id'] == message.message_id
    with pytest.raises(ssm_wire.WireError, match='digest'):
        ssm_wire.WireMessage.decode(expected[:-1] + b'X')
    ack = ssm_wire.acknowledge(message)
    assert ack.payload == (b'{"AcknowledgedMessageType":"input_stream_data","AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16",'
                           b'"AcknowledgedMessageSequenceNumber":1,"IsSequentialMessage":true}')
    assert ack.flags == 3 and ack.payload_type == 0 and ack.sequence_number == 0


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def emu(tmp_path_factory):
    world = tmp_path_factory.mktemp('exec-world') / 'world.yml'
    world.write_text(WORLD)
    with start_emulator(world=world) as info:
        yield info


@pytest.fixture(autouse=True)
def _clean(emu):
    emu.admin('DELETE', 'faults')
    emu.admin('POST', 'calls/reset')
    yield
    OPEN_CHANNELS.close()
    emu.admin('DELETE', 'faults')


def ecs(emu, key: int = 0):
    secrets = {0: 'exec/test/secret/00001', 1: 'exec/test/secret/00002'}
    access = {0: 'AKIAEXECTEST00000001', 1: 'AKIAEXECTESTDENIED01'}
    return boto3.client('ecs', endpoint_url=emu['aws']['endpoint_url'], region_name='us-east-1', aws_access_key_id=access[key],
                        aws_secret_access_key=secrets[key], config=botocore.config.Config(retries={'total_max_attempts': 1}))


def execute(emu, command: str, task: str = WEB, cluster: str = 'exec', **extra) -> dict[str, Any]:
    return ecs(emu).execute_command(cluster=cluster, task=task, command=command, interactive=True, **extra)


def ssm(emu, key: int = 0):
    secrets = {0: 'exec/test/secret/00001', 1: 'exec/test/secret/00002'}
    access = {0: 'AKIAEXECTEST00000001', 1: 'AKIAEXECTESTDENIED01'}
    return boto3.client('ssm', endpoint_url=emu['aws']['endpoint_url'], region_name='us-east-1', aws_access_key_id=access[key],
                        aws_secret_access_key=secrets[key], config=botocore.config.Config(retries={'total_max_attempts': 1}))


def ws_counters(emu) -> dict[str, int]:
    return emu.admin('GET', 'calls')['ws'].get('aws-ecs-exec', {})


# ---- ExecuteCommand ----------------------------------------------------------------------------


def test_execute_command_answer_shape(emu):
    out = execute(emu, 'true', task=SHAPE)
    assert out['clusterArn'] == 'arn:aws:ecs:us-east-1:123456789012:cluster/exec'
    assert out['taskArn'] == f'arn:aws:ecs:us-east-1:123456789012:task/exec/{SHAPE}'
    assert out['containerName'] == 'shape' and out['containerArn'].startswith(f'arn:aws:ecs:us-east-1:123456789012:container/exec/{SHAPE}/')
    assert out['interactive'] is True
    session = out['session']
    assert session['sessionId'].startswith('ecs-execute-command-') and len(session['sessionId']) == len('ecs-execute-command-') + 17
    port = emu['endpoint'].rsplit(':', 1)[1]
    prefix = f'ws://127.0.0.1:{port}/v1/data-channel/{session["sessionId"]}?role=publish_subscribe&cell-number='
    assert session['streamUrl'].startswith(prefix)
    cell = session['streamUrl'][len(prefix):]
    assert '+' in cell and '/' in cell
    assert len(session['tokenValue']) > 100
    assert emu.calls('aws-ecs', 'ExecuteCommand') == 1
    # By ARN, and the one container of a multi-container task named.
    assert execute(emu, 'true', task=out['taskArn'], cluster=out['clusterArn'])['containerName'] == 'shape'
    assert execute(emu, 'true', task=PAIR, container='sidecar')['containerName'] == 'sidecar'


@pytest.mark.parametrize('call, code, message', [
    ({'cluster': 'nowhere'}, 'ClusterNotFoundException', 'Cluster not found'),
    ({'task': 'f' * 32}, 'InvalidParameterException', 'The specified task is not found'),
    ({'task': PAIR}, 'InvalidParameterException', 'more than one container'),
    ({'task': PAIR, 'container': 'nope'}, 'InvalidParameterException', 'The specified container is not found'),
    ({'interactive': False}, 'InvalidParameterException', 'Interactive is the only mode supported'),
    ({'task': NO_EXEC}, 'InvalidParameterException', 'execute command was not enabled when the task was run'),
    ({'task': AGENT_PENDING}, 'TargetNotConnectedException', 'internal error'),
    ({'task': STOPPED}, 'InvalidParameterException', 'STOPPED'),
])
def test_execute_command_validations(emu, call, code, message):
    params = {'cluster': 'exec', 'task': WEB, 'command': 'true', 'interactive': True, **call}
    with pytest.raises(ClientError) as excinfo:
        ecs(emu).execute_command(**params)
    assert excinfo.value.response['Error']['Code'] == code
    assert message in excinfo.value.response['Error']['Message']
    assert excinfo.value.response['ResponseMetadata']['HTTPStatusCode'] == 400


def test_execute_command_access_denied(emu):
    with pytest.raises(ClientError) as excinfo:
        ecs(emu, key=1).execute_command(cluster='exec', task=WEB, command='true', interactive=True)
    assert excinfo.value.response['Error']['Code'] == 'AccessDeniedException'
    assert 'ecs:ExecuteCommand' in excinfo.value.response['Error']['Message']


def test_session_limit_per_container(emu):
    first = execute(emu, 'sleep 30', task=LIMITED)
    execute(emu, 'true', task=LIMITED)
    with pytest.raises(ClientError) as excinfo:
        execute(emu, 'true', task=LIMITED)
    assert excinfo.value.response['Error']['Code'] == 'TargetNotConnectedException'
    # Another task is not affected; an ended session frees its slot; unused tokens free theirs when they expire.
    execute(emu, 'true', task=OTHER)
    channel = Channel(first['session'])
    channel.ws.close()
    deadline = time.monotonic() + 3
    while True:
        try:
            execute(emu, 'true', task=LIMITED)
            break
        except ClientError:
            assert time.monotonic() < deadline, 'the closed session never released its slot'
            time.sleep(0.05)


# ---- tokens ------------------------------------------------------------------------------------


def _refused(session: dict[str, str], token: str | None = None) -> str:
    channel = Channel(session, token)
    with pytest.raises(ConnectionClosed) as excinfo:
        channel.ws.recv(timeout=5)
    assert excinfo.value.rcvd is not None and excinfo.value.rcvd.code == 1008
    return excinfo.value.rcvd.reason


def test_token_is_single_use_and_checked(emu):
    session = execute(emu, 'sh -c "printf once"')['session']
    assert 'invalid token' in _refused(session, token='not-the-token')
    assert Channel(session).finish() == b'once'
    assert 'already used' in _refused(session)
    assert ws_counters(emu)['sessions_refused'] == 2


def test_token_expires(emu):
    session = execute(emu, 'true')['session']
    time.sleep(1.7)
    assert 'expired' in _refused(session)


# ---- the data channel --------------------------------------------------------------------------


def test_output_exit_and_channel_closed(emu):
    session = execute(emu, 'sh -c "printf \'hello\\nworld\'; exit 3"')['session']
    channel = Channel(session)
    # A PTY turns \n into \r\n; there is no exit code in an ECS Exec session.
    assert channel.finish() == b'hello\r\nworld'
    first = channel.outputs[0]
    assert first['seq'] == 0 and first['flags'] == 1 and first['ptype'] == 1
    assert [m['seq'] for m in channel.outputs] == list(range(len(channel.outputs)))
    closed = channel.closed
    assert closed is not None
    assert set(closed) == {'MessageId', 'CreatedDate', 'DestinationId', 'SessionId', 'MessageType', 'SchemaVersion', 'Output'}
    assert closed['MessageType'] == 'channel_closed' and closed['SchemaVersion'] == 1 and closed['Output'] == ''
    assert closed['SessionId'] == session['sessionId'] and closed['DestinationId'].startswith(f'ecs:exec_{WEB}_')
    counters = ws_counters(emu)
    assert 'frames_invalid' not in counters
    assert counters['sessions_opened'] == 1 and counters['acks_in'] == len(channel.outputs) and counters['channels_closed'] == 1


def test_command_is_split_like_a_shell_but_not_run_by_one(emu):
    channel = Channel(execute(emu, "printf '%s|' 'a b' \"c\"'d' $HOME '&&' x")['session'])
    assert channel.finish() == b'a b|cd|$HOME|&&|x|'


def test_input_echo_through_cat_and_acks(emu):
    channel = Channel(execute(emu, 'cat')['session'])
    # The command may not be running yet: unacknowledged input has to be sent again.
    deadline = time.monotonic() + 5
    ping_id = uuid.UUID('01020304-0506-0708-090a-0b0c0d0e0f10')
    while not channel.acks:
        channel.send_input(b'ping\r', message_id=ping_id)
        channel.seq = 0
        try:
            channel.until(lambda: bool(channel.acks), timeout=0.2)
        except TimeoutError:
            assert time.monotonic() < deadline
    channel.seq = 1
    assert channel.acks[0] == {'AcknowledgedMessageType': 'input_stream_data', 'AcknowledgedMessageId': str(ping_id),
                               'AcknowledgedMessageSequenceNumber': 0, 'IsSequentialMessage': True}
    # Echo (the terminal's) and cat's copy, both with CRLF.
    channel.until(lambda: channel.output.count(b'ping') == 2)
    assert channel.output == b'ping\r\nping\r\n'
    # Out of order: 2 waits for 1, and a duplicate of 1 is acknowledged again but typed once.
    two = pack('input_stream_data', 2, b'B\r')
    one = pack('input_stream_data', 1, b'A\r')
    channel.ws.send(two)
    channel.ws.send(one)
    channel.ws.send(one)
    channel.until(lambda: channel.output.count(b'B\r\n') == 2 and len(channel.acks) >= 4)
    channel.drain(0.2)
    # Echo and cat's copy may interleave ("A B A B" or "A A B B"), but A comes first and each is typed once.
    rest = channel.output[len(b'ping\r\nping\r\n'):]
    assert rest in (b'A\r\nA\r\nB\r\nB\r\n', b'A\r\nB\r\nA\r\nB\r\n')
    assert [a['AcknowledgedMessageSequenceNumber'] for a in channel.acks[-3:]] == [2, 1, 1]
    channel.seq = 3
    channel.send_input(b'\x04')
    channel.finish()
    assert channel.closed is not None


def test_input_before_the_command_starts_is_not_acknowledged(emu):
    channel = Channel(execute(emu, 'cat')['session'])
    channel.send_input(b'early\r')
    channel.drain(0.03)
    assert not channel.acks and ws_counters(emu)['inputs_not_ready'] == 1
    time.sleep(0.1)
    channel.ws.send(pack('input_stream_data', 0, b'early\r'))
    channel.until(lambda: channel.output == b'early\r\nearly\r\n')
    assert [a['AcknowledgedMessageSequenceNumber'] for a in channel.acks] == [0]


def test_resize(emu):
    channel = Channel(execute(emu, 'sh')['session'])
    deadline = time.monotonic() + 5
    while not channel.acks:
        channel.seq = 0
        channel.send_input(json.dumps({'cols': 123, 'rows': 45}).encode(), payload_type=3)
        try:
            channel.until(lambda: bool(channel.acks), timeout=0.2)
        except TimeoutError:
            assert time.monotonic() < deadline
    channel.send_input(b'stty size; exit 0\r')
    assert b'45 123\r\n' in channel.finish()


def test_terminal_has_no_size_until_the_client_sends_one_and_echoes(emu):
    # The agent starts the PTY without a size (creack/pty Start: no Setsize), so the kernel's 0 x 0 stays.
    channel = Channel(execute(emu, 'sh -c "stty size; stty -a | grep -o -- \'-\\?echo \\|-\\?onlcr\'"')['session'])
    out = channel.finish().split(b'\r\n')
    assert out[0] == b'0 0'
    assert set(out[1:-1]) == {b'echo ', b'onlcr'}


def test_unacknowledged_output_is_resent(emu):
    channel = Channel(execute(emu, 'sh -c "printf resend-me; sleep 5"')['session'])
    first = channel.receive(auto_ack=False)
    assert first['type'] == 'output_stream_data' and first['payload'] == b'resend-me'
    again = channel.receive(timeout=3, auto_ack=False)
    assert again['seq'] == 0 and again['payload'] == b'resend-me' and again['id'] == first['id']
    channel.ack(again)
    assert ws_counters(emu)['resends'] >= 1
    channel.ws.close()


def test_lose_ack_fault_forces_client_resend(emu):
    emu.admin('POST', 'faults', {'service': 'ws', 'lose_ack': 2})
    channel = Channel(execute(emu, 'cat')['session'])
    time.sleep(0.2)
    frame = pack('input_stream_data', 0, b'x\r')
    attempts = 0
    while not channel.acks:
        channel.ws.send(frame)
        attempts += 1
        try:
            channel.until(lambda: bool(channel.acks), timeout=0.2)
        except TimeoutError:
            assert attempts < 20
    assert attempts >= 3
    # Each copy is typed once: the resends of an already applied message are duplicates.
    channel.until(lambda: channel.output.count(b'x') >= 2)
    channel.drain(0.3)
    assert channel.output == b'x\r\nx\r\n'
    assert ws_counters(emu)['acks_lost'] == 2
    channel.ws.close()


def test_drop_after_bytes_closes_abruptly(emu):
    emu.admin('POST', 'faults', {'service': 'ws', 'drop_after_bytes': 10})
    session = execute(emu, 'sh -c "printf 12345; sleep 0.3; printf 67890; sleep 0.3; printf abc; sleep 5"')['session']
    channel = Channel(session)
    with pytest.raises(ConnectionClosedError) as excinfo:
        while True:
            channel.receive(timeout=5)
    # No close frame: the connection just went away.
    assert excinfo.value.rcvd is None
    assert channel.output == b'1234567890'
    assert ws_counters(emu)['drops'] == 1
    # The session itself waits for its client to come back: end it, so it gives its worker back.
    assert ssm(emu).terminate_session(SessionId=session['sessionId'])['SessionId'] == session['sessionId']


def test_drop_after_bytes_sends_the_queued_messages_first(emu):
    """With latency, earlier messages still wait in the send queue when the limit is passed: they go out, then the drop."""
    emu.admin('POST', 'faults', [{'service': 'ws', 'drop_after_bytes': 10}, {'service': 'ws', 'message_latency_ms': 400}])
    session = execute(emu, 'sh -c "printf 12345; sleep 0.1; printf 67890; sleep 0.1; printf abc; sleep 5"')['session']
    channel = Channel(session)
    with pytest.raises(ConnectionClosedError) as excinfo:
        while True:
            channel.receive(timeout=5)
    assert excinfo.value.rcvd is None
    assert channel.output == b'1234567890'
    ssm(emu).terminate_session(SessionId=session['sessionId'])


def test_duplicate_and_reorder_faults(emu):
    emu.admin('POST', 'faults', [{'service': 'ws', 'duplicate_output': True}, {'service': 'ws', 'reorder_output': True}])
    # Several messages at once: 1024 bytes at most per message.
    channel = Channel(execute(emu, 'seq 1000')['session'])
    channel.finish()
    seqs = [m['seq'] for m in channel.outputs]
    assert len(set(seqs)) >= 4 and sorted(set(seqs)) == list(range(len(set(seqs))))
    assert all(len(m['payload']) <= 1024 for m in channel.outputs)
    # Twice each (resends may add more), and pairs swapped.
    assert all(seqs.count(n) >= 2 for n in set(seqs)), str(seqs)
    assert seqs[:4] == [1, 1, 0, 0]
    # The client keeps the first copy of each sequence number, in sequence order: the output is whole.
    by_seq = {m['seq']: m['payload'] for m in channel.outputs}
    assert b''.join(by_seq[n] for n in sorted(by_seq)) == b''.join(b'%d\r\n' % n for n in range(1, 1001))


def test_message_latency(emu):
    emu.admin('POST', 'faults', {'service': 'ws', 'message_latency_ms': 300})
    channel = Channel(execute(emu, 'sh -c "printf slow"')['session'])
    started = time.monotonic()
    channel.receive()
    assert time.monotonic() - started >= 0.3
    assert channel.finish() == b'slow'


def test_closing_the_socket_kills_the_command(emu):
    channel = Channel(execute(emu, 'sh -c "echo $$ > pid; exec sleep 60"')['session'])
    home = Path(emu['state_dir']) / 'sandboxes' / 'aws-ecs' / WEB / 'web'
    deadline = time.monotonic() + 5
    while not (home / 'pid').exists() or not (home / 'pid').read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = int((home / 'pid').read_text())
    (home / 'pid').unlink()
    channel.ws.close()
    deadline = time.monotonic() + 5
    while running(pid):
        assert time.monotonic() < deadline, 'the command outlived its session'
        time.sleep(0.05)


def running(pid: int) -> bool:
    """Whether pid is a live process (a zombie counts as gone; so does one that vanishes while we look)."""
    try:
        state = Path(f'/proc/{pid}/stat').read_bytes().rsplit(b')', 1)[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in (b'Z', b'X')


def test_idle_timeout_ends_the_session(emu):
    channel = Channel(execute(emu, 'sleep 30')['session'])
    started = time.monotonic()
    channel.finish(timeout=10)
    assert 1.9 <= time.monotonic() - started < 8   # idle_timeout_seconds is 2 in this world
    assert 'idle' in channel.closed['Output']


def test_unknown_program_ends_the_session(emu):
    channel = Channel(execute(emu, 'no-such-program --flag')['session'])
    assert channel.finish() == b''
    assert 'Unable to start command' in channel.closed['Output']


def test_kms_cluster_asks_for_a_handshake(emu):
    channel = Channel(execute(emu, 'true', task=SECURE, cluster='secure')['session'])
    request = channel.receive()
    assert request['type'] == 'output_stream_data' and request['ptype'] == 5 and request['seq'] == 0
    actions = json.loads(request['payload'])['RequestedClientActions']
    assert [a['ActionType'] for a in actions] == ['KMSEncryption', 'SessionType']
    assert actions[0]['ActionParameters']['KMSKeyId'].startswith('arn:aws:kms:')
    refusal = {'ClientVersion': '1.2.0.0', 'ProcessedClientActions': [
        {'ActionType': 'KMSEncryption', 'ActionStatus': 2, 'ActionResult': None, 'Error': 'no KMS here'}], 'Errors': ['no KMS here']}
    channel.send_input(json.dumps(refusal).encode(), payload_type=6)
    channel.finish()
    assert 'no KMS here' in channel.closed['Output']


def test_sandboxes_are_separate(emu):
    Channel(execute(emu, 'sh -c "echo secret > mine.txt; pwd; printf \\"$HOME\\""')['session']).finish()
    home = Path(emu['state_dir']) / 'sandboxes' / 'aws-ecs' / WEB / 'web'
    assert (home / 'mine.txt').read_text() == 'secret\n'
    out = Channel(execute(emu, 'sh -c "pwd; ls -a"', task=OTHER)['session']).finish()
    assert b'mine.txt' not in out
    assert out.split(b'\r\n')[0] == os.fsencode(Path(emu['state_dir']) / 'sandboxes' / 'aws-ecs' / OTHER / 'other')


# ---- ResumeSession ------------------------------------------------------------------------------


def _cut(channel: Channel) -> None:
    """Lose the connection the way a network does: no close frame."""
    channel.ws.socket.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(ConnectionClosed):
        channel.ws.recv(timeout=2)


def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_resume_replays_unacknowledged_output_and_drops_input_sent_again(emu):
    """A disconnected session resumes on a new token: the agent resends its unacknowledged output with the original
    sequence numbers and message ids, and input the client sends again is acknowledged but typed once."""
    emu.admin('POST', 'faults', {'service': 'ws', 'lose_ack': 1})   # the first connection loses the ack of our input
    session = execute(emu, 'sh -c "printf first; read line; printf got:%s \\"$line\\"; sleep 0.3; printf second; cat"')['session']
    first = Channel(session)
    first.until(lambda: first.output == b'first')
    typed = pack('input_stream_data', 0, b'hello\r')
    first.ws.send(typed)
    # The agent typed it (echo, then the shell's answer) but the acknowledgement was lost.
    first.until(lambda: b'got:hello' in first.output)
    unacked = first.receive(timeout=5, auto_ack=False)   # "second": left unacknowledged
    assert unacked['payload'] == b'second' and not first.acks
    emu.admin('DELETE', 'faults')
    _cut(first)
    _wait_for(lambda: ws_counters(emu).get('disconnects') == 1)
    assert 'already used' in _refused(session)

    resumed = ssm(emu).resume_session(SessionId=session['sessionId'])
    assert set(resumed) - {'ResponseMetadata'} == {'SessionId', 'TokenValue', 'StreamUrl'}
    assert resumed['SessionId'] == session['sessionId'] and resumed['TokenValue'] != session['tokenValue']
    assert resumed['StreamUrl'].split('?')[0] == session['streamUrl'].split('?')[0] and resumed['StreamUrl'] != session['streamUrl']
    second = Channel({'streamUrl': resumed['StreamUrl'], 'tokenValue': resumed['TokenValue']})
    second.output, second.seen_seq, second.seq = first.output, set(first.seen_seq), 1
    second.ws.send(typed)   # sent again with its original number: acknowledged, not typed twice
    second.until(lambda: bool(second.acks) and any(m['seq'] == unacked['seq'] for m in second.outputs))
    assert second.acks[0]['AcknowledgedMessageSequenceNumber'] == 0
    replayed = next(m for m in second.outputs if m['seq'] == unacked['seq'])
    assert (replayed['id'], replayed['payload'], replayed['flags']) == (unacked['id'], b'second', 0)
    second.send_input(b'again\r')
    second.until(lambda: second.output.count(b'again') == 2)
    second.send_input(b'\x04')
    out = second.finish()
    assert out.startswith(b'first') and out.count(b'hello') == 2 and out.count(b'got:hello') == 1 and out.count(b'second') == 1
    counters = ws_counters(emu)
    assert counters['resumed'] == 1 and counters['duplicates_in'] >= 1 and counters['sessions_opened'] == 1
    assert emu.calls('aws-ssm', 'ResumeSession') == 1


def test_resume_and_terminate_refused_for_sessions_that_are_gone(emu, emulator):
    with pytest.raises(ClientError) as excinfo:
        ssm(emu).resume_session(SessionId='ecs-execute-command-00000000000000000')
    assert excinfo.value.response['Error']['Code'] == 'DoesNotExistException'
    # An ended session cannot be resumed; terminating it again changes nothing.
    session = execute(emu, 'sh -c "printf done"')['session']
    Channel(session).finish()
    with pytest.raises(ClientError) as excinfo:
        ssm(emu).resume_session(SessionId=session['sessionId'])
    assert excinfo.value.response['Error']['Code'] == 'DoesNotExistException'
    assert ssm(emu).terminate_session(SessionId=session['sessionId'])['SessionId'] == session['sessionId']
    # A terminated one neither; its command is ended.
    session = execute(emu, 'sh -c "echo $$ > pid-term; exec sleep 60"')['session']
    channel = Channel(session)
    home = Path(emu['state_dir']) / 'sandboxes' / 'aws-ecs' / WEB / 'web'
    _wait_for(lambda: (home / 'pid-term').exists() and (home / 'pid-term').read_text().strip() != '')
    pid = int((home / 'pid-term').read_text())
    _cut(channel)
    ssm(emu).terminate_session(SessionId=session['sessionId'])
    _wait_for(lambda: not running(pid))
    with pytest.raises(ClientError) as excinfo:
        ssm(emu).resume_session(SessionId=session['sessionId'])
    assert excinfo.value.response['Error']['Code'] == 'DoesNotExistException'
    # IAM decides too.
    with pytest.raises(ClientError) as excinfo:
        ssm(emu, key=1).resume_session(SessionId=session['sessionId'])
    assert excinfo.value.response['Error']['Code'] == 'AccessDeniedException'
    # The shipped world does not resume ECS Exec sessions through SSM (unverified that AWS does: the stricter default).
    other = boto3.client('ecs', endpoint_url=emulator['aws']['endpoint_url'], region_name=emulator['aws']['region'],
                         aws_access_key_id=emulator['aws']['access_key'], aws_secret_access_key=emulator['aws']['secret_key'])
    live = other.execute_command(cluster='demo', task='1f0e1c2d3b4a59687766554433221100', command='sleep 5', interactive=True)
    Channel(live['session']).drain(0.1)   # connected (and closed politely when the test ends)
    refusing = boto3.client('ssm', endpoint_url=emulator['aws']['endpoint_url'], region_name=emulator['aws']['region'],
                            aws_access_key_id=emulator['aws']['access_key'], aws_secret_access_key=emulator['aws']['secret_key'])
    with pytest.raises(ClientError) as excinfo:
        refusing.resume_session(SessionId=live['session']['sessionId'])
    assert excinfo.value.response['Error']['Code'] == 'DoesNotExistException'


def test_a_disconnected_session_ends_at_the_idle_timeout(emu):
    session = execute(emu, 'sleep 30')['session']
    channel = Channel(session)
    channel.drain(0.2)
    _cut(channel)
    _wait_for(lambda: ws_counters(emu).get('idle_timeouts') == 1, timeout=6)
    with pytest.raises(ClientError) as excinfo:
        ssm(emu).resume_session(SessionId=session['sessionId'])
    assert excinfo.value.response['Error']['Code'] == 'DoesNotExistException'
