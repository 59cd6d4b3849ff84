# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import subprocess

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import eci, remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError

URI = 'wss://eci-cn-shanghai.aliyun.com/exec/?s=kTHPxSECRETTOKENVALUE0123'


# ---- framing codec -------------------------------------------------------------------------

def test_frames_carry_the_channel_as_first_byte():
    assert eci.encode_frame(0, b'ls\n') == b'\x00ls\n'
    assert eci.encode_frame(eci.CHANNEL_STDIN, b'\xff\x00') == b'\x00\xff\x00'
    assert eci.encode_frame(eci.CHANNEL_RESIZE, eci.resize_payload(80, 24)) == b'\x04{"Width":80,"Height":24}'
    assert eci.encode_frame(eci.CHANNEL_CLOSE, b'\x00') == b'\xff\x00'
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
    assert eci.parse_status(b'\xff') == eci.ExecStatus(False, None, 'unreadable exec status')
    assert eci.parse_status(b'[1]').exit_code is None
    bad_code = b'{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"x"}]}}'
    assert eci.parse_status(bad_code).exit_code is None


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


def test_auto_mode_prefers_sync_only_when_it_can_answer_the_same():
    assert eci.choose_mode('auto', 'echo hi') == 'sync'
    assert eci.choose_mode('auto', ['a'] * 12) == 'sync'
    assert eci.choose_mode('auto', ['a'] * 13) == 'stream'
    assert eci.choose_mode('auto', 'x' * 257) == 'stream'
    assert eci.choose_mode('auto', 'cat', stdin=b'') == 'stream'
    assert eci.choose_mode('auto', 'true', chdir='/' * 300) == 'stream'
    assert eci.choose_mode('sync', ['a'] * 30) == 'sync'  # the explicit mode is checked (and refused) by the caller
    assert eci.choose_mode('stream', 'echo') == 'stream'


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
        stream.resize(100, 30)
        stream.close_stdin()
        assert stream.read(1.0) == [('stdout', b'out'), ('stderr', b'err'), ('status', b'{"metadata":{},"status":"Success"}')]
        with pytest.raises(eci.EciStreamClosed) as info:
            stream.read(1.0)
    assert info.value.status == eci.ExecStatus(True, 0)
    assert sock.sent == [b'\x00' + b'a' * eci.SEND_CHUNK, b'\x00a', b'\x04{"Width":100,"Height":30}', b'\xff\x00']
    assert calls[0][0] == URI and calls[0][1]['compression'] is None and calls[0][1]['max_size'] is None
    assert stream.bytes_out == eci.SEND_CHUNK + 1 and stream.bytes_in == 6 and sock.closed


def test_stream_read_times_out_empty_and_ignores_unknown_channels():
    lines = []
    stream, sock, calls = make(['text frame', b'\x07x', b''], log=lines.append)
    with stream:
        assert stream.read(0.0) == []
    assert any('channel 7' in line for line in lines)


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
