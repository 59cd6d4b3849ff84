# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The emulator's ECI ExecContainerCommand through the raw Tea SDK, and its websocket through a tiny raw client."""
from __future__ import annotations

import base64
import json
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml
from alibabacloud_eci20180808 import models as eci_models
from alibabacloud_eci20180808.client import Client as EciClient
from alibabacloud_tea_openapi.models import Config
from alibabacloud_tea_util.models import RuntimeOptions
from Tea.exceptions import TeaException, UnretryableException
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect

from cloudexec_emulator.testing import start_emulator

REGION = 'cn-hangzhou'
WEB = 'eci-bp1demo00000000001'
API = 'eci-bp1demo00000000002'
JOB = 'eci-bp1demo00000000003'
WORLDS = Path(__file__).resolve().parents[1] / 'emulator' / 'cloudexec_emulator' / 'worlds'
DEFAULT_WORLD = WORLDS / 'default.yml'
# One group per behaviour of the exec websocket (worlds/eci_exec_variants.yml).
VARIANT_GROUPS = {'kubelet': 'eci-variantkubelet0001', 'v4_status': 'eci-variantv4status001',
                  'no_status': 'eci-variantnostatus001', 'swapped_channels': 'eci-variantswapped0001'}
FAILING = ['/bin/sh', '-c', 'echo out; echo err >&2; exit 3']
# What a kubelet says of FAILING (KUBELET exec.go + containerd's "error executing command %v, exit code %d").
FAILING_TEXT = 'command terminated with non-zero exit code: error executing command [/bin/sh -c echo out; echo err >&2; exit 3], exit code 3'
# In metav1.Status's field order, as Go's json.Marshal writes it.
FAILING_JSON = {'metadata': {}, 'status': 'Failure', 'message': FAILING_TEXT, 'reason': 'NonZeroExitCode',
                'details': {'causes': [{'reason': 'ExitCode', 'message': '3'}]}}


def client(emu) -> EciClient:
    ali = emu['alicloud']
    return EciClient(Config(access_key_id=ali['access_key'], access_key_secret=ali['secret_key'], protocol='http', region_id=REGION,
                            endpoint=ali['eci_endpoint'].split('://', 1)[1]))


def exec_call(emu, command, group=WEB, container='web', runtime=None, **kwargs):
    request = eci_models.ExecContainerCommandRequest(region_id=REGION, container_group_id=group, container_name=container,
                                                     command=command if isinstance(command, str) else json.dumps(command), **kwargs)
    return client(emu).exec_container_command_with_options(request, runtime or RuntimeOptions()).body


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


def sandbox(emu, group=WEB, container='web') -> Path:
    return Path(emu['state_dir']) / 'sandboxes' / 'ali-eci' / group / container


def stream(emu, command, protocols=None, **kwargs):
    """Run command over a new exec websocket; (bytes per channel, messages, clean close)."""
    body = exec_call(emu, command, **kwargs)
    with connect(body.web_socket_uri, compression=None, subprotocols=protocols) as ws:
        return collect(ws)


@pytest.fixture(scope='module')
def variants(tmp_path_factory):
    """An emulator of this module's own on worlds/eci_exec_variants.yml."""
    with start_emulator(world=WORLDS / 'eci_exec_variants.yml', state_dir=tmp_path_factory.mktemp('variants')) as info:
        yield info


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
    # 129 characters, 258 bytes: the API's "256 characters" is read the strict way.
    (['echo', '\u00e9' * 129], {'sync': True}, 'InvalidParameter.ValueExceeded', 400, '256'),
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
    (JOB, 'job', 'IncorrectStatus', 400),
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


def test_sync_has_no_server_side_time_limit(emu):
    # None is documented (10 s is the SDK's read timeout): a client that gives up leaves the command running.
    with pytest.raises(UnretryableException):
        exec_call(emu, ['/bin/sh', '-c', 'sleep 1.5; touch sync-survived'], sync=True, runtime=RuntimeOptions(read_timeout=500))
    done = sandbox(emu) / 'sync-survived'
    deadline = time.monotonic() + 10
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert done.exists()
    done.unlink()


def test_websocket_has_a_listener_and_path_of_its_own(emu):
    # ECIDOC: WebSocketUri is wss://eci-<region>.aliyun.com/exec/?s=<token>, not on the API endpoint.
    body = exec_call(emu, ['true'], stdin=False)
    parts = urllib.parse.urlsplit(body.web_socket_uri)
    api = urllib.parse.urlsplit(emu.endpoint)
    assert parts.scheme == 'ws' and parts.hostname == api.hostname and parts.port != api.port
    assert parts.path == '/exec/' and list(urllib.parse.parse_qs(parts.query)) == ['s']
    assert body.http_url and parts.query.split('=', 1)[1] not in body.http_url
    with pytest.raises(InvalidStatus) as info:   # the API port does not serve the stream
        connect(f'ws://{api.netloc}/exec/?{parts.query}', compression=None)
    assert info.value.response.status_code == 404
    with connect(body.web_socket_uri, compression=None) as ws:
        assert collect(ws)[2]


def test_kubelet_without_subprotocol_sends_ready_then_no_status_on_success(emu):
    body = exec_call(emu, ['/bin/sh', '-c', 'echo out; echo err >&2'], stdin=False)
    with connect(body.web_socket_uri, compression=None) as ws:
        assert ws.subprotocol is None
        channels, frames, clean = collect(ws)
    # The "ready" message (KUBELET websocket.go 104-113) comes first; success writes nothing on channel 3.
    assert clean and frames[0] == b'\x01'
    assert channels == {1: b'out\n', 2: b'err\n'}


def test_kubelet_without_subprotocol_sends_plain_text_on_failure(emu):
    channels, frames, clean = stream(emu, FAILING, stdin=False)
    assert clean and frames[0] == b'\x01' and frames[-1][0] == 3
    assert channels == {1: b'out\n', 2: b'err\n', 3: FAILING_TEXT.encode()}


@pytest.mark.parametrize('offered, chosen', [
    (['v4.channel.k8s.io'], 'v4.channel.k8s.io'),
    (['v5.channel.k8s.io', 'v4.channel.k8s.io', 'channel.k8s.io'], 'v4.channel.k8s.io'),
    (['channel.k8s.io', 'v4.channel.k8s.io'], 'channel.k8s.io'),
])
def test_subprotocol_negotiation_picks_the_first_a_kubelet_knows(emu, offered, chosen):
    body = exec_call(emu, FAILING, stdin=False)
    with connect(body.web_socket_uri, compression=None, subprotocols=offered) as ws:
        assert ws.subprotocol == chosen
        channels, frames, clean = collect(ws)
    assert clean and frames[0] == b'\x01' and channels[1] == b'out\n'
    if chosen.startswith('v4.'):
        assert json.loads(channels[3]) == FAILING_JSON
    else:
        assert channels[3] == FAILING_TEXT.encode()


def test_v4_sends_json_status_on_success_too(emu):
    channels, frames, clean = stream(emu, ['true'], protocols=['v4.channel.k8s.io'], stdin=False)
    assert clean and frames == [b'\x01', b'\x03{"metadata":{},"status":"Success"}']


def test_unsupported_subprotocols_are_refused(emu):
    # v5 is the API server's, never a kubelet's: the handshake fails before the upgrade.
    body = exec_call(emu, ['true'])
    with pytest.raises(InvalidStatus) as info:
        connect(body.web_socket_uri, compression=None, subprotocols=['v5.channel.k8s.io'])
    assert info.value.response.status_code == 403


def test_base64_subprotocol_frames_text(emu):
    body = exec_call(emu, ['/bin/sh', '-c', 'cat; exit 3'])
    with connect(body.web_socket_uri, compression=None, subprotocols=['base64.channel.k8s.io']) as ws:
        ws.send('0' + base64.b64encode(b'in \xff\n').decode())
        assert ws.recv(timeout=5) == '1'   # the ready message: channel 1, no data
        assert ws.recv(timeout=5) == '1' + base64.b64encode(b'in \xff\n').decode()
        ws.close()


def test_start_failure_is_an_internal_error_in_the_runtime_words(emu):
    channels, frames, clean = stream(emu, ['/no/such/program'])
    assert clean and frames[0] == b'\x01' and set(channels) == {1, 3}
    text = channels[3].decode()
    assert text.startswith('Internal error occurred: error executing command in container: failed to exec in container: ')
    assert text.endswith('OCI runtime exec failed: exec failed: unable to start container process: exec: "/no/such/program": '
                         'stat /no/such/program: no such file or directory: unknown')
    channels, frames, clean = stream(emu, ['nope'], protocols=['v4.channel.k8s.io'])
    status = json.loads(channels[3])
    assert status['reason'] == 'InternalError' and status['code'] == 500 and 'executable file not found in $PATH' in status['message']
    assert status['details']['causes'][0]['message'] == status['message'][len('Internal error occurred: '):]


def test_websocket_stdin_text_frames_and_no_half_close(emu):
    body = exec_call(emu, ['/bin/sh', '-c', 'cat; touch eof-seen'])
    with connect(body.web_socket_uri, compression=None) as ws:
        assert ws.recv(timeout=5) == b'\x01'
        ws.send(b'\x00line one\n')
        ws.send(b'\x00')  # an empty stdin message is not an end of input
        ws.send('\x00text frame\n')  # text messages are data like binary ones (websocket.Message.Receive into []byte)
        ws.send(b'\xff\x00')  # v5's close of stdin: channel 255 is ignored by a kubelet (>= its 5 channels)
        ws.send(b'\x07junk')
        received = b''
        while received != b'line one\ntext frame\n':
            received += ws.recv(timeout=5)[1:]
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)   # cat still reads: stdin has not ended
    # Stdin ends with the socket: cat exits and the command goes on.
    done = sandbox(emu) / 'eof-seen'
    deadline = time.monotonic() + 10
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert done.exists()
    done.unlink()
    assert emu.admin('GET', 'calls')['ws']['ali-eci-exec']['frames_ignored'] == 2


def test_websocket_shell_reads_a_script_from_stdin(emu):
    body = exec_call(emu, ['/bin/sh'])
    with connect(body.web_socket_uri, compression=None) as ws:
        ws.send(b'\x00echo "$((6*7))"\nexit 5\n')
        channels, frames, clean = collect(ws)
    assert clean and channels[1] == b'42\n'
    assert channels[3] == b'command terminated with non-zero exit code: error executing command [/bin/sh], exit code 5'


def test_websocket_tty_merges_and_resizes(emu):
    body = exec_call(emu, ['/bin/sh', '-c', 'read x; stty size; echo err >&2'], tty=True)
    with connect(body.web_socket_uri, compression=None) as ws:
        ws.send(b'\x04' + json.dumps({'Width': 132, 'Height': 43}).encode())
        time.sleep(0.2)
        ws.send(b'\x00go\n')
        channels, frames, clean = collect(ws)
    assert clean and 2 not in channels and 3 not in channels
    assert channels[1].endswith(b'43 132\r\nerr\r\n')


def test_websocket_uri_is_single_use_and_needs_its_token(emu):
    body = exec_call(emu, ['true'])
    uri = body.web_socket_uri
    with pytest.raises(InvalidStatus) as info:
        connect(uri.replace('s=', 's=x'), compression=None)
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
    channels, frames, clean = stream(emu, ['seq', '1', '10000'])
    assert not clean and 3 not in channels and len(channels.get(1, b'')) <= 100


def test_websocket_latency_fault(emu):
    emu.admin('POST', 'faults', {'service': 'ali-eci', 'message_latency_ms': 300})
    started = time.monotonic()
    channels, frames, clean = stream(emu, ['echo', 'late'])
    assert clean and channels[1] == b'late\n' and time.monotonic() - started >= 0.3


def test_closing_the_socket_leaves_the_command_running_with_stdin_closed(emu):
    # As a kubelet does: the client going away ends the stream copies, not the process (eci_exec.py docstring).
    body = exec_call(emu, ['/bin/sh', '-c', 'sleep 1; touch survived; cat > stdin-ended; touch after-eof'])
    with connect(body.web_socket_uri, compression=None):
        time.sleep(0.2)
    home = sandbox(emu)
    deadline = time.monotonic() + 10
    while not (home / 'after-eof').exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (home / 'survived').exists() and (home / 'after-eof').exists()
    for name in ('survived', 'stdin-ended', 'after-eof'):
        (home / name).unlink()


# What each variant sends after the output, for a success and for FAILING (no subprotocol requested).
VARIANT_ENDINGS = {
    'kubelet': ([], [b'\x03' + FAILING_TEXT.encode()]),
    'v4_status': ([b'\x03{"metadata":{},"status":"Success"}'], [b'\x03' + json.dumps(FAILING_JSON, separators=(',', ':')).encode()]),
    'no_status': ([], []),
    'swapped_channels': ([], [b'\x04' + FAILING_TEXT.encode()]),
}


@pytest.mark.parametrize('variant', VARIANT_ENDINGS)
def test_variants_end_their_streams_as_the_world_says(variants, variant):
    group = VARIANT_GROUPS[variant]
    success, failure = VARIANT_ENDINGS[variant]
    for command, ending in ((['/bin/sh', '-c', 'echo out'], success), (FAILING, failure)):
        channels, frames, clean = stream(variants, command, group=group, container='app', stdin=False)
        assert clean and frames[0] == b'\x01'
        assert [f for f in frames[1:] if f[0] not in (1, 2)] == ending, frames


def test_swapped_variant_takes_resize_on_channel_3(variants):
    body = exec_call(variants, ['/bin/sh', '-c', 'read x; stty size'], group=VARIANT_GROUPS['swapped_channels'],
                     container='app', tty=True)
    with connect(body.web_socket_uri, compression=None) as ws:
        ws.send(b'\x04' + json.dumps({'Width': 99, 'Height': 11}).encode())   # ignored: 4 is the exit channel here
        ws.send(b'\x03' + json.dumps({'Width': 132, 'Height': 43}).encode())
        time.sleep(0.2)
        ws.send(b'\x00go\n')
        channels, frames, clean = collect(ws)
    assert clean and channels[1].endswith(b'43 132\r\n')


def test_expired_token_and_a_global_stream_variant(tmp_path):
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['alicloud']['exec'] = {'token_ttl_seconds': 0.3, 'stream': 'v4_status'}
    path = tmp_path / 'world.yml'
    path.write_text(yaml.safe_dump(world))
    with start_emulator(world=path) as emu:
        body = exec_call(emu, ['true'])
        time.sleep(0.5)
        with pytest.raises(InvalidStatus) as info:
            connect(body.web_socket_uri, compression=None)
        assert info.value.response.status_code == 403
        # alicloud.exec.stream applies to every group without its own exec_stream.
        channels, frames, clean = stream(emu, ['true'])
        assert frames == [b'\x01', b'\x03{"metadata":{},"status":"Success"}']
