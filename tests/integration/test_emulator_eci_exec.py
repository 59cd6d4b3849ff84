# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The emulator's ECI ExecContainerCommand through the raw Tea SDK, and its websocket through a tiny raw client."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from alibabacloud_eci20180808 import models as eci_models
from alibabacloud_eci20180808.client import Client as EciClient
from alibabacloud_tea_openapi.models import Config
from Tea.exceptions import TeaException
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect

from cloudexec_emulator.testing import start_emulator

REGION = 'cn-hangzhou'
WEB = 'eci-bp1demo00000000001'
API = 'eci-bp1demo00000000002'
JOB = 'eci-bp1demo00000000003'
DEFAULT_WORLD = Path(__file__).resolve().parents[1] / 'emulator' / 'cloudexec_emulator' / 'worlds' / 'default.yml'


def client(emu) -> EciClient:
    ali = emu['alicloud']
    return EciClient(Config(access_key_id=ali['access_key'], access_key_secret=ali['secret_key'], protocol='http', region_id=REGION,
                            endpoint=ali['eci_endpoint'].split('://', 1)[1]))


def exec_call(emu, command, group=WEB, container='web', **kwargs):
    request = eci_models.ExecContainerCommandRequest(region_id=REGION, container_group_id=group, container_name=container,
                                                     command=command if isinstance(command, str) else json.dumps(command), **kwargs)
    return client(emu).exec_container_command(request).body


def refused(emu, command, **kwargs) -> TeaException:
    with pytest.raises(TeaException) as info:
        exec_call(emu, command, **kwargs)
    return info.value


def collect(ws, timeout: float = 10.0) -> tuple[dict[int, bytes], list[bytes], bool]:
    """Read until the server closes: bytes per channel, the raw messages, and whether the close was clean."""
    channels: dict[int, bytes] = {}
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            frame = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            frames.append(frame)
            channels[frame[0]] = channels.get(frame[0], b'') + frame[1:]
    except ConnectionClosedOK:
        return channels, frames, True
    except ConnectionClosedError:
        return channels, frames, False


def test_sync_merges_output_and_has_no_exit_code(emu):
    body = exec_call(emu, ['/bin/sh', '-c', 'echo out; echo err >&2; exit 3'], sync=True)
    assert body.sync_response == 'out\nerr\n'
    assert not body.web_socket_uri
    assert emu.calls('ali-eci', 'ExecContainerCommand') == 1


def test_sync_runs_argv_without_a_shell(emu):
    body = exec_call(emu, ['printf', '%s|', 'a b', '$HOME', '*'], sync=True)
    assert body.sync_response == 'a b|$HOME|*|'


@pytest.mark.parametrize('command, kwargs, code, status, words', [
    (['/bin/sh', '-c', 'true'], {'sync': True, 'tty': True}, 'InvalidParameter', 400, 'TTY'),
    (['/bin/bash'], {'sync': True}, 'InvalidParameter', 400, 'interactive shell'),
    (['sh', '-l'], {'sync': True}, 'InvalidParameter', 400, 'interactive shell'),
    (['echo'] * 21, {}, 'InvalidParameter.ValueExceeded', 400, '20'),
    (['echo', 'x' * 257], {'sync': True}, 'InvalidParameter.ValueExceeded', 400, '256'),
    ('not json', {}, 'InvalidParameter', 400, 'Command'),
    ('[]', {}, 'InvalidParameter', 400, 'Command'),
])
def test_parameters_are_refused(emu, command, kwargs, code, status, words):
    err = refused(emu, command, **kwargs)
    assert err.code == code and err.statusCode == status and words in err.message


def test_limits_are_exactly_twenty_items_of_256(emu):
    body = exec_call(emu, ['echo'] + ['y' * 256] * 19, sync=True)
    assert body.sync_response == ' '.join(['y' * 256] * 19) + '\n'


@pytest.mark.parametrize('group, container, code, status', [
    (JOB, 'job', 'IncorrectStatus', 403),
    ('eci-nope', 'web', 'InvalidContainerGroup.NotFound', 404),
    (WEB, 'nope', 'InvalidContainerName.NotFound', 404),
])
def test_targets_are_refused(emu, group, container, code, status):
    err = refused(emu, ['true'], group=group, container=container, sync=True)
    assert err.code == code and err.statusCode == status


def test_throttling_rule_applies(emu):
    emu.admin('POST', 'faults', {'service': 'ali-eci', 'action': 'ExecContainerCommand', 'throttle': 1})
    err = refused(emu, ['true'], sync=True)
    assert err.code == 'Throttling.User'
    assert exec_call(emu, ['echo', 'ok'], sync=True).sync_response == 'ok\n'


def test_websocket_channels_and_status(emu):
    body = exec_call(emu, ['/bin/sh', '-c', 'echo out; echo err >&2; exit 3'], stdin=False)
    assert body.web_socket_uri.startswith(emu.endpoint.replace('http://', 'ws://') + '/eci-exec/')
    assert '?token=' in body.web_socket_uri and body.http_url
    with connect(body.web_socket_uri, compression=None) as ws:
        channels, frames, clean = collect(ws)
    assert clean
    assert channels[1] == b'out\n' and channels[2] == b'err\n'
    assert frames[-1][0] == 3
    status = json.loads(channels[3])
    assert status == {'metadata': {}, 'status': 'Failure', 'reason': 'NonZeroExitCode', 'message': status['message'],
                      'details': {'causes': [{'reason': 'ExitCode', 'message': '3'}]}}


def test_websocket_stdin_and_close_channel(emu):
    body = exec_call(emu, ['cat'])
    with connect(body.web_socket_uri, compression=None) as ws:
        ws.send(b'\x00line one\n')
        ws.send(b'\x00')  # an empty stdin message is not an end of input
        ws.send(b'\x00piped \xff\x00 no newline')
        ws.send(b'\xff\x00')  # v5 close of channel 0: cat sees EOF and exits
        channels, frames, clean = collect(ws)
    assert clean and channels[1] == b'line one\npiped \xff\x00 no newline'
    assert json.loads(channels[3]) == {'metadata': {}, 'status': 'Success'}
    assert 2 not in channels


def test_websocket_shell_reads_a_script_from_stdin(emu):
    body = exec_call(emu, ['/bin/sh'])
    with connect(body.web_socket_uri, compression=None) as ws:
        ws.send(b'\x00echo "$((6*7))"\nexit 5\n')
        channels, frames, clean = collect(ws)
    assert clean and channels[1] == b'42\n'
    assert json.loads(channels[3])['details']['causes'][0]['message'] == '5'


def test_websocket_tty_merges_and_resizes(emu):
    body = exec_call(emu, ['/bin/sh', '-c', 'read x; stty size; echo err >&2'], tty=True)
    with connect(body.web_socket_uri, compression=None) as ws:
        ws.send(b'\x04' + json.dumps({'Width': 132, 'Height': 43}).encode())
        time.sleep(0.2)
        ws.send(b'\x00go\n')
        channels, frames, clean = collect(ws)
    assert clean and 2 not in channels
    assert channels[1].endswith(b'43 132\r\nerr\r\n')


def test_websocket_uri_is_single_use_and_needs_its_token(emu):
    body = exec_call(emu, ['true'])
    uri = body.web_socket_uri
    with pytest.raises(InvalidStatus) as info:
        connect(uri.replace('token=', 'token=x'), compression=None)
    assert info.value.response.status_code == 403
    with connect(uri, compression=None) as ws:
        collect(ws)
    with pytest.raises(InvalidStatus) as info:
        connect(uri, compression=None)
    assert info.value.response.status_code == 403
    ws_counts = emu.admin('GET', 'calls')['ws']['ali-eci-exec']
    assert ws_counts['sessions_refused'] == 2 and ws_counts['sessions_opened'] == 1


def test_websocket_drop_fault_aborts_without_status(emu):
    emu.admin('POST', 'faults', {'service': 'ws', 'drop_after_bytes': 100})
    body = exec_call(emu, ['seq', '1', '10000'])
    with connect(body.web_socket_uri, compression=None) as ws:
        channels, frames, clean = collect(ws)
    assert not clean and 3 not in channels and len(channels.get(1, b'')) <= 100


def test_websocket_latency_fault(emu):
    emu.admin('POST', 'faults', {'service': 'ali-eci', 'message_latency_ms': 300})
    body = exec_call(emu, ['echo', 'late'])
    started = time.monotonic()
    with connect(body.web_socket_uri, compression=None) as ws:
        channels, frames, clean = collect(ws)
    assert clean and channels[1] == b'late\n' and time.monotonic() - started >= 0.3


def test_closing_the_socket_leaves_the_command_running_with_stdin_closed(emu):
    # As a kubelet does: the client going away ends the stream copies, not the process (eci_exec.py docstring).
    body = exec_call(emu, ['/bin/sh', '-c', 'sleep 1; touch survived; cat > stdin-ended; touch after-eof'])
    with connect(body.web_socket_uri, compression=None):
        time.sleep(0.2)
    sandbox = Path(emu['state_dir']) / 'sandboxes' / 'ali-eci' / WEB / 'web'
    deadline = time.monotonic() + 10
    while not (sandbox / 'after-eof').exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (sandbox / 'survived').exists() and (sandbox / 'after-eof').exists()
    for name in ('survived', 'stdin-ended', 'after-eof'):
        (sandbox / name).unlink()


def test_expired_token_is_refused(tmp_path):
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['alicloud']['exec'] = {'token_ttl_seconds': 0.3}
    path = tmp_path / 'world.yml'
    path.write_text(yaml.safe_dump(world))
    with start_emulator(world=path) as emu:
        body = exec_call(emu, ['true'])
        time.sleep(0.5)
        with pytest.raises(InvalidStatus) as info:
            connect(body.web_socket_uri, compression=None)
        assert info.value.response.status_code == 403
