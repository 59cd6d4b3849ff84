# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import subprocess
import time

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import eci, remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError

URI = 'wss://eci-cn-shanghai.aliyun.com/exec/?s=kTHPxSECRETTOKENVALUE0123'


# ---- framing codec -------------------------------------------------------------------------

def test_frames_carry_the_channel_as_first_byte():
    assert eci.encode_frame(0, b'ls\n') == b'\x00ls\n'
    assert eci.encode_frame(eci.CHANNEL_STDIN, b'\xff\x00') == b'\x00\xff\x00'
    assert eci.encode_frame(eci.CHANNEL_RESIZE, b'{}') == b'\x04{}'
    assert eci.decode_frame(b'\x01hello\n') == (1, b'hello\n')
    assert eci.decode_frame(b'\x02') == (2, b'')
    assert eci.decode_frame(bytearray(b'\x03{}')) == (3, b'{}')
    with pytest.raises(ValueError):
        eci.decode_frame(b'')
    with pytest.raises(ValueError):
        eci.encode_frame(256, b'')


def test_status_success_and_failures():
    assert eci.parse_status(b'{"metadata":{},"status":"Success"}') == eci.ExecStatus(True, 0)
    failure = json.dumps({'metadata': {}, 'status': 'Failure', 'message': 'command terminated with non-zero exit code',
                          'reason': 'NonZeroExitCode', 'details': {'causes': [{'reason': 'ExitCode', 'message': '3'}]}}).encode()
    assert eci.parse_status(failure) == eci.ExecStatus(False, 3, 'command terminated with non-zero exit code', 'NonZeroExitCode')
    other = eci.parse_status(b'{"status":"Failure","message":"exec: \\"nope\\": not found","reason":"InternalError"}')
    assert other.exit_code is None and not other.success and 'not found' in other.message
    assert eci.parse_status(b'[1]') == eci.ExecStatus(False, None, '[1]')
    assert eci.parse_status(b'') == eci.ExecStatus(False, None, 'empty exec status')
    bad_code = b'{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"x"}]}}'
    assert eci.parse_status(bad_code).exit_code is None


# What a kubelet writes on channel 3 with no subprotocol (v1WriteStatusFunc: the Status message as plain text) and
# with v4.channel.k8s.io (the JSON), for a non-zero exit under containerd and for a program that cannot start.
V1_NONZERO = b'command terminated with non-zero exit code: error executing command [/bin/sh -s 0123], exit code 2'
V4_NONZERO = (b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command '
              b'[/bin/sh -s 0123], exit code 2","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}')
START_ERROR = ('Internal error occurred: error executing command in container: failed to exec in container: failed to start exec '
               '"ab12": OCI runtime exec failed: exec failed: unable to start container process: exec: "/bin/nosh": stat /bin/nosh: '
               'no such file or directory: unknown')
V4_START = json.dumps({'metadata': {}, 'status': 'Failure', 'message': START_ERROR, 'reason': 'InternalError',
                       'details': {'causes': [{'message': START_ERROR[len('Internal error occurred: '):]}]}, 'code': 500},
                      separators=(',', ':')).encode()


def test_status_in_plain_text_and_json_gives_the_same_answer():
    text = V1_NONZERO.decode()
    assert eci.parse_status(V1_NONZERO) == eci.ExecStatus(False, 2, text, 'NonZeroExitCode')
    assert eci.parse_status(V4_NONZERO) == eci.ExecStatus(False, 2, text, 'NonZeroExitCode')
    assert eci.parse_status(START_ERROR.encode()) == eci.ExecStatus(False, None, START_ERROR, '')
    assert eci.parse_status(V4_START) == eci.ExecStatus(False, None, START_ERROR, 'InternalError')
    # Invalid UTF-8 is still the service's text, not a reason to drop it.
    assert eci.parse_status(b'oops \xff') == eci.ExecStatus(False, None, 'oops \ufffd')


# ---- Sync mode -----------------------------------------------------------------------------

def test_sync_wrapper_fits_one_command_item():
    assert len(eci.SYNC_SCRIPT) <= eci.MAX_COMMAND_ITEM_LENGTH
    argv = eci.sync_argv('echo hi', 'abc')
    assert argv[:eci.SYNC_PREFIX_ITEMS] == ['/bin/sh', '-c', eci.SYNC_SCRIPT, 'sh', 'abc', '', '', '']
    assert argv[eci.SYNC_PREFIX_ITEMS:] == ['/bin/sh', '-c', 'echo hi']
    assert eci.sync_argv(['a', 'b c'], 'n', chdir='/w', creates='c', removes='r')[4:] == ['n', '/w', 'c', 'r', 'a', 'b c']


@pytest.mark.parametrize('command, kwargs, expected', [
    ('echo out; echo err >&2; printf "x.1\\n\\n" >&2; exit 3', {}, (3, b'out\n', b'err\nx.1\n\n', remote_shell.RAN)),
    (['printf', '[%s]', 'a b', '$HOME', '*', ''], {}, (0, b'[a b][$HOME][*][]', b'', remote_shell.RAN)),
    ('pwd', {'chdir': '/'}, (0, b'/\n', b'', remote_shell.RAN)),
    ('echo no', {'chdir': '/nonexistent'}, (1, b'', b'', remote_shell.CHDIR_FAILED)),
    ('echo no', {'creates': '/'}, (0, b'', b'', remote_shell.SKIPPED_CREATES)),
    ('echo no', {'removes': '/nonexistent'}, (0, b'', b'', remote_shell.SKIPPED_REMOVES)),
    ('echo yes', {'creates': '/nonexistent', 'removes': '/'}, (0, b'yes\n', b'', remote_shell.RAN)),
])
def test_sync_wrapper_reports_rc_and_stderr_apart(command, kwargs, expected):
    # As ECI Sync would: run the argv without a shell, merge stdout and stderr, no stdin.
    argv = eci.sync_argv(command, 'feedc0de', **kwargs)
    merged = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False).stdout
    result = remote_shell.OutputParser('feedc0de').feed(merged)
    assert result is not None
    assert (result.rc, result.stdout, result.stderr, result.outcome) == expected


def test_sync_limits_name_the_parameter_and_the_limit():
    eci.check_sync_limits(['x'] * 12)
    eci.check_sync_limits('y' * 256)
    with pytest.raises(ValidationError) as info:
        eci.check_sync_limits(['echo'] * 13)
    assert info.value.parameter == 'command' and '13 arguments' in str(info.value) and 'at most 20' in str(info.value)
    with pytest.raises(ValidationError) as info:
        eci.check_sync_limits(['echo', 'z' * 300])
    assert 'argument 1 has 300 characters' in str(info.value) and '256' in str(info.value)
    with pytest.raises(ValidationError) as info:
        eci.check_sync_limits('w' * 257)
    assert 'the command has 257 characters' in str(info.value)
    for name in ('chdir', 'creates', 'removes'):
        with pytest.raises(ValidationError) as info:
            eci.check_sync_limits('true', **{name: '/' * 257})
        assert info.value.parameter == name


def test_sync_limits_count_utf8_bytes():
    # 129 characters, 258 bytes: the API says "characters" without saying how; the strict count is used.
    eci.check_sync_limits('\u00e9' * 128)
    with pytest.raises(ValidationError) as info:
        eci.check_sync_limits('\u00e9' * 129)
    assert 'the command has 258 bytes in UTF-8 (129 characters)' in str(info.value)
    with pytest.raises(ValidationError) as info:
        eci.check_sync_limits(['echo', '\u2603' * 86])
    assert 'argument 1 has 258 bytes in UTF-8 (86 characters)' in str(info.value)
    assert eci.item_size('\U0001f600') == 4


def test_auto_mode_prefers_sync_only_when_it_can_answer_the_same():
    assert eci.choose_mode('auto', 'echo hi') == 'sync'
    assert eci.choose_mode('auto', ['a'] * 12) == 'sync'
    assert eci.choose_mode('auto', ['a'] * 13) == 'stream'
    assert eci.choose_mode('auto', 'x' * 257) == 'stream'
    assert eci.choose_mode('auto', 'echo ' + '\u00e9' * 126) == 'stream'   # 131 characters, 257 bytes
    assert eci.choose_mode('auto', 'cat', stdin=b'') == 'stream'
    assert eci.choose_mode('auto', 'true', chdir='/' * 300) == 'stream'
    assert eci.choose_mode('auto', 'true', creates='\u00e9' * 129) == 'stream'
    # A short deadline is kept to the second by the stream only.
    assert eci.choose_mode('auto', 'echo hi', timeout=eci.SYNC_AUTO_MIN_TIMEOUT - 1) == 'stream'
    assert eci.choose_mode('auto', 'echo hi', timeout=eci.SYNC_AUTO_MIN_TIMEOUT) == 'sync'
    assert eci.choose_mode('sync', ['a'] * 30) == 'sync'  # the explicit mode is checked (and refused) by the caller
    assert eci.choose_mode('stream', 'echo') == 'stream'


def test_sync_read_timeout_has_a_bounded_margin():
    assert eci.sync_read_timeout(2) == 4
    assert eci.sync_read_timeout(20) == 25
    assert eci.sync_read_timeout(600) == 615


# ---- the websocket transport, over a scripted connection --------------------------------------

class Rcvd:
    def __init__(self, code):
        self.code = code
        self.reason = ''


class FakeSocket:
    """Plays the server: hands out queued frames, then ends the way it is told (or times out)."""

    def __init__(self, frames, end=None):
        self.frames = list(frames)
        self.end = end
        self.sent = []
        self.closed = False

    def send(self, frame):
        if self.closed:
            raise eci.ConnectionClosed(None, None)
        self.sent.append(frame)

    def recv(self, timeout=None):
        if self.frames:
            return self.frames.pop(0)
        if self.end == 'ok':
            raise eci.ConnectionClosedOK(Rcvd(1000), Rcvd(1000), True)
        if self.end == 'drop':
            raise eci.ConnectionClosed(None, None)
        raise TimeoutError

    def close(self):
        self.closed = True


def make(frames, end=None, log=None):
    sock = FakeSocket(frames, end)
    calls = []

    def connect(uri, **kwargs):
        calls.append((uri, kwargs))
        return sock

    stream = eci.EciExecStream(URI, connect=connect, log=log)
    return stream, sock, calls


def test_stream_sends_stdin_frames_and_reads_events():
    stream, sock, calls = make([b'\x01out', b'\x02err', b'\x03{"metadata":{},"status":"Success"}'], end='ok')
    with stream:
        stream.send(b'a' * (eci.SEND_CHUNK + 1))
        assert stream.read(1.0) == [('stdout', b'out'), ('stderr', b'err'), ('status', b'{"metadata":{},"status":"Success"}')]
        with pytest.raises(eci.EciStreamClosed) as info:
            stream.read(1.0)
    assert info.value.status == eci.ExecStatus(True, 0)
    assert sock.sent == [b'\x00' + b'a' * eci.SEND_CHUNK, b'\x00a']
    assert calls[0][0] == URI and calls[0][1]['compression'] is None and calls[0][1]['max_size'] is None
    assert stream.bytes_out == eci.SEND_CHUNK + 1 and stream.bytes_in == 6 and sock.closed


def test_stream_read_times_out_empty_and_ignores_unknown_channels():
    lines = []
    stream, sock, calls = make(['text frame', b'\x07x', b''], log=lines.append)
    with stream:
        assert stream.read(0.0) == []
    assert any('channel 7' in line for line in lines)


def test_ready_message_is_dropped_and_channel_4_is_a_status():
    # A kubelet's first message is an empty stdout write; a peer numbering 4 as "exit" writes its status there.
    stream, sock, calls = make([b'\x01', b'\x01out', b'\x02', b'\x04' + V1_NONZERO], end='ok')
    with stream:
        assert stream.read(1.0) == [('stdout', b'out'), ('status', V1_NONZERO)]
        with pytest.raises(eci.EciStreamClosed) as info:
            stream.read(1.0)
    assert info.value.status == eci.ExecStatus(False, 2, V1_NONZERO.decode(), 'NonZeroExitCode')
    assert stream.bytes_in == 3


# ---- run_stream over scripted services: the behaviours the evidence allows ------------------------

NONCE = 'feedc0de12345678'


def framed(stdout: bytes, stderr: bytes, rc: int) -> bytes:
    """What the remote_shell wrapper prints for a command that ran."""
    return (b'\n' + remote_shell.marker(NONCE, 'OUT') + b'\n' + stdout + b'\n' + remote_shell.marker(NONCE, 'ERR') + b'\n'
            + stderr + b'\n' + remote_shell.marker(NONCE, f'END:ran:{rc}') + b'\n')


TARGET = eci.EciTarget(group_id='eci-x', group_name='x', region='cn-hangzhou', container_name='web')


@pytest.fixture
def scripted(monkeypatch):
    """run_stream/end_command against scripted sockets: each ExecContainerCommand gets the next one."""
    sockets, argvs = [], []

    def exec_call(client, auth, target, argv, **kwargs):
        argvs.append(list(argv))
        return {'WebSocketUri': URI}

    def connect(uri, **kwargs):
        return sockets.pop(0)

    monkeypatch.setattr(eci, 'exec_container_command', exec_call)
    monkeypatch.setattr(eci.remote_shell, 'new_nonce', lambda: NONCE)
    return sockets, argvs, connect


OUTPUT = framed(b'hi \xff\n', b'warn\n', 2)
VARIANTS = {
    'kubelet': [b'\x01', b'\x01' + OUTPUT[:30], b'\x01' + OUTPUT[30:], b'\x03' + V1_NONZERO],
    'v4_status': [b'\x01', b'\x01' + OUTPUT, b'\x03' + V4_NONZERO],
    'no_status': [b'\x01', b'\x01' + OUTPUT],
    'swapped_channels': [b'\x01', b'\x01' + OUTPUT, b'\x04' + V1_NONZERO],
    'shell_stderr_and_no_ready': [b'\x02sh: warning\n', b'\x01' + OUTPUT],
}


@pytest.mark.parametrize('frames', VARIANTS.values(), ids=VARIANTS.keys())
def test_run_stream_is_exact_whatever_the_status_channel_says(scripted, frames):
    sockets, argvs, connect = scripted
    sockets.append(FakeSocket(frames, end='ok'))
    run = eci.run_stream(None, None, TARGET, 'echo hi', timeout=5, connect=connect)
    assert (run.result.rc, run.result.stdout, run.result.stderr, run.mode) == (2, b'hi \xff\n', b'warn\n', 'stream')
    assert argvs == [['/bin/sh', '-s', NONCE]]


STARTS = {
    'kubelet': ([b'\x01', b'\x03' + START_ERROR.encode()], 'OCI runtime exec failed'),
    'v4_status': ([b'\x01', b'\x03' + V4_START], 'OCI runtime exec failed'),
    'swapped_channels': ([b'\x01', b'\x04' + START_ERROR.encode()], 'OCI runtime exec failed'),
    'no_status': ([b'\x01'], 'ended before the command reported its exit code.'),
}


@pytest.mark.parametrize('frames, words', STARTS.values(), ids=STARTS.keys())
def test_run_stream_passes_on_the_service_error_text(scripted, frames, words):
    sockets, argvs, connect = scripted
    sockets.append(FakeSocket(frames, end='ok'))
    with pytest.raises(eci.CloudExecError) as info:
        eci.run_stream(None, None, TARGET, 'echo hi', timeout=5, connect=connect)
    assert info.value.code == 'StreamClosedEarly' and words in str(info.value), str(info.value)
    assert 'Check that /bin/sh exists' in str(info.value)


def test_run_stream_deadline_ends_the_command_from_a_second_exec(scripted):
    sockets, argvs, connect = scripted
    first = FakeSocket([b'\x01', b'\x01\n' + remote_shell.marker(NONCE, 'OUT') + b'\npartial'])   # then silence
    second = FakeSocket([b'\x01', b'\x01\n@@CE' + NONCE.encode() + b':KILL:ended:3@@\n'], end='ok')
    sockets += [first, second]
    with pytest.raises(eci.DeadlineExceeded) as info:
        eci.run_stream(None, None, TARGET, 'sleep 100', timeout=0.3, connect=connect)
    text = str(info.value)
    assert 'did not finish within 0.3 seconds (it had started); it was ended: 3 process(es) stopped' in text, text
    assert argvs == [['/bin/sh', '-s', NONCE], ['/bin/sh']]
    assert first.closed and second.closed
    kill = b''.join(frame[1:] for frame in second.sent).decode()
    assert kill.endswith('exit\n') and f"'{NONCE[:-1]}[{NONCE[-1]}]'" in kill


def test_end_command_never_says_ended_when_it_could_not_look(scripted):
    sockets, argvs, connect = scripted
    sockets.append(FakeSocket([b'\x01'], end='ok'))   # the script printed nothing (no /proc, no grep)
    clause, worrying = eci.end_command(None, None, TARGET, NONCE, connect=connect)
    assert worrying and 'may still be running' in clause

    def refuse(uri, **kwargs):
        raise OSError('unreachable')

    clause, worrying = eci.end_command(None, None, TARGET, NONCE, connect=refuse)
    assert worrying and 'no exec could be opened' in clause and 'StreamConnectFailed' in clause


# ---- the nonce finder, run by the local sh on real processes ----------------------------------

def test_find_by_nonce_ends_the_shell_that_carries_it_and_nothing_else():
    nonce = '0badc0de87654321'
    target = subprocess.Popen(['sh', '-s', nonce], stdin=subprocess.PIPE)
    bystander = subprocess.Popen(['sh', '-c', 'sleep 300', 'sh', nonce[:-1]])   # almost the nonce
    try:
        target.stdin.write(b'( sleep 300 & wait )\n')
        target.stdin.flush()
        time.sleep(0.3)
        script = remote_shell.find_by_nonce_script(nonce) + remote_shell.kill_tree_script('"$__ce_r"', '"$__ce_rt"', grace=0.5, nonce='11')
        output = subprocess.run(['sh', '-c', script], capture_output=True, check=True, timeout=30).stdout
        kind, count = remote_shell.parse_kill_outcome(output, '11')
        assert kind == remote_shell.KILL_ENDED and count >= 3, output   # the shell, its subshell, sleep
        assert target.wait(5) is not None
        assert bystander.poll() is None
        # Once gone, nothing carries the nonce.
        output = subprocess.run(['sh', '-c', script], capture_output=True, check=True, timeout=30).stdout
        assert remote_shell.parse_kill_outcome(output, '11') == (remote_shell.KILL_GONE, 0)
    finally:
        for process in (target, bystander):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_find_by_nonce_takes_only_hex():
    with pytest.raises(ValueError):
        remote_shell.find_by_nonce_script("x'; rm -rf /")


def test_dropped_stream_after_input_says_the_command_may_have_run():
    stream, sock, calls = make([b'\x01partial'], end='drop')
    with stream:
        stream.send(b'script')
        assert stream.read(1.0) == [('stdout', b'partial')]
        with pytest.raises(eci.EciStreamError) as info:
            stream.read(1.0)
    assert info.value.code == 'StreamDropped' and info.value.input_sent
    assert str(info.value).count('may have run') == 1, str(info.value)
    assert str(info.value).startswith('StreamDropped: the ECI exec stream to eci-cn-shanghai.aliyun.com was lost after the command was sent')
    assert 'SECRET' not in str(info.value) and 'eci-cn-shanghai.aliyun.com' in str(info.value)


def test_dropped_stream_before_input_is_safe_to_retry():
    stream, sock, calls = make([], end='drop')
    with stream:
        with pytest.raises(eci.EciStreamError) as info:
            stream.read(1.0)
    assert not info.value.input_sent and 'before anything was sent' in str(info.value)
    assert 'may have run' not in str(info.value) and info.value.remedy == 'Nothing ran: retry'


def test_connect_failure_never_shows_the_uri():
    lines = []

    def refuse(uri, **kwargs):
        raise OSError(f'cannot reach {uri}')

    stream = eci.EciExecStream(URI, connect=refuse, log=lines.append)
    with pytest.raises(eci.EciStreamError) as info:
        stream.open()
    text = str(info.value) + repr(stream) + ' '.join(lines)
    assert 'StreamConnectFailed' in text and 'kTHPx' not in text and '/exec/' not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_stream_refuses_a_uri_that_is_not_a_websocket():
    with pytest.raises(CloudExecError) as info:
        eci.EciExecStream('https://example.com/?s=SECRET', connect=lambda uri, **kw: None)
    assert 'SECRET' not in str(info.value)


# ---- ExecContainerCommand network failures -------------------------------------------------

def _failing_client(text: str, counter: list):
    """An ECI client whose ExecContainerCommand fails the way the SDK fails on the network."""
    retry_error = pytest.importorskip('darabonba.exceptions').RetryError
    unretryable = pytest.importorskip('Tea.exceptions').UnretryableException

    class Client:
        def exec_container_command_with_options(self, request, runtime):
            counter.append(request)
            request_seen = type('Request', (), {'protocol': 'https', 'headers': {'host': 'eci.cn-shanghai.aliyuncs.com'}})()
            raise unretryable(request_seen, retry_error(text))

    Client.__module__ = 'alibabacloud_eci20180808.client'
    return Client()


def _exec(client, sync: bool):
    pytest.importorskip('alibabacloud_eci20180808')
    from ansible_collections.cloudexec.core.plugins.module_utils import alicloud  # pylint: disable=import-outside-toplevel
    auth = alicloud.AlicloudAuth(alicloud_access_key='LTAI', alicloud_secret_key='s', alicloud_region='cn-shanghai')
    target = eci.EciTarget(group_id='eci-1', group_name='g', region='cn-shanghai', container_name='app')
    return eci.exec_container_command(client, auth, target, ['true'], sync=sync, read_timeout=70, retry_timeout=30)


def test_sync_read_timeout_says_the_command_may_still_run_and_is_not_repeated():
    calls: list = []
    client = _failing_client("HTTPSConnectionPool(host='eci.cn-shanghai.aliyuncs.com', port=443): Read timed out. (read timeout=70.0)",
                             calls)
    with pytest.raises(CloudExecError) as info:
        _exec(client, sync=True)
    assert len(calls) == 1 and info.value.code == 'Connection.ReadTimeout'
    assert info.value.message == ('ExecContainerCommand (Sync) gave no answer within 70 seconds; '
                                  'the command may still be running in the container')


def test_refused_exec_call_names_the_eci_endpoint():
    calls: list = []
    client = _failing_client("HTTPSConnectionPool(host='eci.cn-shanghai.aliyuncs.com', port=443): Max retries exceeded with url: "
                             "/?Action=ExecContainerCommand (Caused by NewConnectionError('x: Failed to establish a new connection: "
                             "[Errno 111] Connection refused'))", calls)
    with pytest.raises(CloudExecError) as info:
        _exec(client, sync=True)
    assert len(calls) == 1 and info.value.code == 'Connection.Refused'
    assert 'cannot connect to https://eci.cn-shanghai.aliyuncs.com: Connection refused' in info.value.message
    assert 'eci_endpoint' in info.value.remedy and 'Action' not in str(info.value)
