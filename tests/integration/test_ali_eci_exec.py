# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ali_eci_exec module through real ``ansible`` and ``ansible-playbook`` runs against the emulator."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator
from helpers import AnsibleRun, ansible_adhoc, ansible_playbook

MODULE = 'cloudexec.core.ali_eci_exec'
WEB = 'eci-bp1demo00000000001'
API = 'eci-bp1demo00000000002'
JOB = 'eci-bp1demo00000000003'
MODES = ['sync', 'stream']
WORLDS = Path(__file__).resolve().parents[1] / 'emulator' / 'cloudexec_emulator' / 'worlds'
# One group per behaviour of the exec websocket (worlds/eci_exec_variants.yml, see the emulator's eci_exec.py).
VARIANT_GROUPS = {'kubelet': 'eci-variantkubelet0001', 'v4_status': 'eci-variantv4status001',
                  'no_status': 'eci-variantnostatus001', 'swapped_channels': 'eci-variantswapped0001'}


def run(emu, args: dict, *extra: str, **kwargs) -> AnsibleRun:
    return ansible_adhoc(emu, MODULE, args, *extra, **kwargs)


def result(run_: AnsibleRun) -> dict:
    results = run_.results
    assert len(results) == 1, run_.output
    return results[0]['result']


def sandbox(emu, group: str, container: str) -> Path:
    return Path(emu['state_dir']) / 'sandboxes' / 'ali-eci' / group / container


def exec_calls(emu) -> int:
    return emu.calls('ali-eci', 'ExecContainerCommand')


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (an orphan may wait a moment to be reaped)."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return False
    return stat.rsplit(')', 1)[1].split()[0] != 'Z'


@pytest.mark.parametrize('mode', MODES)
def test_stdout_stderr_rc_in_both_modes(emu, mode):
    done = run(emu, {'container_group_id': WEB, 'command': 'echo hello; echo warn >&2; pwd', 'mode': mode})
    assert done.rc == 0, done.output
    res = result(done)
    home = str(sandbox(emu, WEB, 'web'))
    assert res['changed'] is True and res['mode'] == mode
    assert res['stdout'] == f'hello\n{home}\n' and res['stderr'] == 'warn\n' and res['rc'] == 0
    assert res['stdout_lines'] == ['hello', home] and res['stderr_lines'] == ['warn']
    assert res['container_group_id'] == WEB and res['container_name'] == 'web'
    assert res['cmd'] == 'echo hello; echo warn >&2; pwd'
    assert exec_calls(emu) == 1
    # Sync is one call with no websocket; the stream is one call plus one websocket.
    ws = emu.admin('GET', 'calls')['ws'].get('ali-eci-exec', {})
    assert ws.get('sessions_opened', 0) == (1 if mode == 'stream' else 0)


def write_play(tmp_path: Path, tasks: list, name: str = 'play.yml') -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump([{'name': 'ali_eci_exec test play', 'hosts': 'localhost', 'gather_facts': False,
                                     'tasks': tasks}], allow_unicode=True))
    return path


def exec_task(name: str, **args) -> dict:
    return {'name': name, MODULE: args, 'ignore_errors': True}


def test_auto_picks_sync_only_when_it_surely_fits(emu, tmp_path):
    tasks = [
        exec_task('short', container_group_id=WEB, command='echo short'),
        exec_task('long', container_group_id=WEB, command='echo ' + 'x' * 300),
        # 155 characters but 305 bytes: the service may count bytes, so Sync is not risked (the emulator does).
        exec_task('utf-8', container_group_id=WEB, command='echo ' + '\u00e9' * 150),
        exec_task('many', container_group_id=WEB, command=['printf', '%s,'] + [str(i) for i in range(19)]),
        exec_task('fed', container_group_id=WEB, command='cat', stdin='line one\nline two'),
        # A short deadline is kept to the second by the stream only.
        exec_task('short deadline', container_group_id=WEB, command='echo quick', timeout=30),
        # Sync carries text only: lost bytes are reported, not hidden.
        exec_task('not text', container_group_id=WEB, command="printf 'a\\377b'", mode='sync'),
    ]
    done = ansible_playbook(emu, write_play(tmp_path, tasks))
    assert done.rc == 0 and done.stats['localhost']['failures'] == 0, done.output
    expected = {'short': ('sync', 'short\n'), 'long': ('stream', 'x' * 300 + '\n'), 'utf-8': ('stream', '\u00e9' * 150 + '\n'),
                'many': ('stream', ''.join(f'{i},' for i in range(19))), 'fed': ('stream', 'line one\nline two'),
                'short deadline': ('stream', 'quick\n'), 'not text': ('sync', 'a\ufffdb')}
    for task, (mode, stdout) in expected.items():
        res = done.result(task)
        assert (res['mode'], res['rc'], res['stdout'], res['stderr']) == (mode, 0, stdout, ''), (task, res)
    assert 'not UTF-8 text' in ' '.join(done.result('not text')['warnings'])
    assert not done.result('short').get('warnings')
    assert emu.admin('GET', 'calls')['errors'] == {}


def test_stream_output_is_exact(emu):
    # Unicode, CR, NUL, invalid UTF-8 (replaced only when decoded for the result), trailing newlines on both streams.
    command = r"printf 'h\303\251llo \342\234\223\r\n\000\377\n\n\n'; printf 'e\303\251\n\n' >&2"
    done = run(emu, {'container_group_id': WEB, 'command': command, 'mode': 'stream'})
    assert done.rc == 0, done.output
    res = result(done)
    assert res['stdout'] == 'h\u00e9llo \u2713\r\n\x00\ufffd\n\n\n'
    assert res['stderr'] == 'e\u00e9\n\n'


def test_stream_binary_stdin_reaches_the_command_exactly(emu):
    stdin = 'caf\u00e9 \u2603\n\ttabs and trailing spaces   \n\n'
    done = run(emu, {'container_group_id': WEB, 'command': 'cat > stdin.copy && od -An -tx1 stdin.copy | tr -d " \\n"',
                     'stdin': stdin})
    assert done.rc == 0, done.output
    assert bytes.fromhex(result(done)['stdout']) == stdin.encode('utf-8')
    assert (sandbox(emu, WEB, 'web') / 'stdin.copy').read_bytes() == stdin.encode('utf-8')


@pytest.mark.parametrize('mode', MODES)
def test_argv_items_arrive_as_single_arguments(emu, mode):
    argv = ['printf', '[%s]', 'a b', "it's", '$HOME', '*', '"q"', '', 'x;y', 'caf\u00e9']
    done = run(emu, {'container_group_id': WEB, 'command': argv, 'mode': mode})
    assert done.rc == 0, done.output
    assert result(done)['stdout'] == '[a b][it\'s][$HOME][*]["q"][][x;y][caf\u00e9]'


@pytest.mark.parametrize('mode', MODES)
def test_playbook_chdir_creates_removes(emu, mode):
    done = ansible_playbook(emu, 'ali_eci_exec.yml', extra_vars={'mode': mode})
    assert done.rc == 0, done.output
    assert done.result('create a file once')['changed'] is True
    assert done.result('create a file once')['stdout'].endswith(f'/web/work dir {mode}\n')
    again = done.result('create a file once, again')
    assert again['changed'] is False and 'exists' in again['msg'] and 'rc' not in again
    assert done.result('remove the file if it exists')['changed'] is True
    assert done.result('remove the file if it exists, again')['changed'] is False
    chdir = done.record('a directory that does not exist')
    assert chdir['status'] == 'failed' and 'Cannot change into /nonexistent/dir' in chdir['result']['msg']
    assert done.stats['localhost']['failures'] == 0 and done.stats['localhost']['ignored'] == 2
    assert not (sandbox(emu, WEB, 'web') / f'work dir {mode}' / 'marker').exists()


def test_check_mode_validates_the_target_and_runs_nothing(emu):
    done = run(emu, {'container_group_name': 'api-1', 'container_name': 'app', 'command': 'touch checked'}, '--check')
    assert done.rc == 0, done.output
    res = result(done)
    assert res['changed'] is True and 'Check mode' in res['msg']
    assert res['container_group_id'] == API and res['container_name'] == 'app'
    assert exec_calls(emu) == 0
    assert not (sandbox(emu, API, 'app') / 'checked').exists()
    stopped = run(emu, {'container_group_id': JOB, 'command': 'true'}, '--check')
    assert stopped.rc != 0 and 'IncorrectStatus' in result(stopped)['msg'], stopped.output


@pytest.mark.parametrize('args, parameter, words', [
    ({'command': ['echo'] * 21, 'mode': 'sync'}, 'command', ['21 arguments', '12', '20']),
    ({'command': ['echo', 'y' * 300], 'mode': 'sync'}, 'command', ['argument 1 has 300 characters', '256']),
    ({'command': 'echo ' + 'z' * 300, 'mode': 'sync'}, 'command', ['305 characters', '256']),
    ({'command': 'true', 'chdir': '/d' * 150, 'mode': 'sync'}, 'chdir', ['300 characters', '256']),
    ({'command': 'cat', 'stdin': 'x', 'mode': 'sync'}, 'stdin', ['mode=sync']),
])
def test_bad_input_fails_before_any_call(emu, args, parameter, words):
    done = run(emu, {'container_group_id': WEB, **args})
    assert done.rc != 0
    res = result(done)
    assert res['msg'].startswith(f'InvalidParameter: Invalid value for {parameter}:'), res['msg']
    for word in words:
        assert word in res['msg'], res['msg']
    assert emu.admin('GET', 'calls')['total'] == 0


@pytest.mark.parametrize('args, code, words', [
    ({'container_group_id': JOB}, 'IncorrectStatus', ['is Succeeded', 'Running']),
    ({'container_group_id': API}, 'InvalidParameter', ['container_name', 'has 2 containers', 'app, sidecar']),
    ({'container_group_id': WEB, 'container_name': 'nope'}, 'InvalidParameter', ["no container named 'nope'", '(it has: web)']),
    ({'container_group_id': 'eci-doesnotexist0000'}, 'ContainerGroupNotFound', ['No container group eci-doesnotexist0000']),
    ({'container_group_name': 'nope-1'}, 'ContainerGroupNotFound', ['nope-1', 'alicloud_region']),
])
def test_bad_targets_are_refused_with_a_remedy(emu, args, code, words):
    started = time.monotonic()
    done = run(emu, {'command': 'true', **args})
    assert done.rc != 0 and time.monotonic() - started < 60
    res = result(done)
    assert res['msg'].startswith(code), res['msg']
    assert res['error']['code'] == code and res['error']['provider'] in ('alicloud', 'cloudexec')
    for word in words:
        assert word in res['msg'], res['msg']
    assert exec_calls(emu) == 0


def test_group_id_and_name_are_mutually_exclusive(emu):
    done = run(emu, {'container_group_id': WEB, 'container_group_name': 'web-1', 'command': 'true'})
    assert done.rc != 0 and 'mutually exclusive' in result(done)['msg']
    neither = run(emu, {'command': 'true'})
    assert neither.rc != 0 and 'one of the following is required' in result(neither)['msg']


def test_deadline_ends_the_command_in_the_container(emu, tmp_path):
    # Closing the stream, or giving up on a Sync answer, leaves the command running (as a kubelet and containerd do,
    # and so does the emulator): the module must end it from a second exec, and say so.
    tasks = [exec_task(f'slow {mode}', container_group_id=WEB, mode=mode, timeout=2,
                       command=f'sleep 60 & echo $! > slow-{mode}.pid; wait; touch slow-{mode}.late') for mode in MODES]
    started = time.monotonic()
    done = ansible_playbook(emu, write_play(tmp_path, tasks))
    assert time.monotonic() - started < 90, done.output
    home = sandbox(emu, WEB, 'web')
    for mode in MODES:
        res = done.record(f'slow {mode}')
        assert res['status'] == 'failed', res
        msg = res['result']['msg']
        assert msg.startswith('DeadlineExceeded') and 'did not finish within 2 seconds' in msg, msg
        assert 'it was ended: ' in msg and 'process(es) stopped' in msg, msg
        pid = int((home / f'slow-{mode}.pid').read_text())
        assert not running(pid), f'{mode}: sleep {pid} still runs'
        assert not (home / f'slow-{mode}.late').exists()
    # Each mode: the command's exec, then one stream exec that ended it.
    assert exec_calls(emu) == 4


def test_dropped_stream_says_the_command_may_have_run(emu):
    emu.admin('POST', 'faults', {'service': 'ali-eci', 'action': 'ExecContainerCommand', 'drop_after_bytes': 1000})
    done = run(emu, {'container_group_id': WEB, 'command': 'seq 1 20000', 'mode': 'stream'})
    assert done.rc != 0
    res = result(done)
    assert res['error']['code'] == 'StreamDropped', res['msg']
    assert 'may have run' in res['msg']
    assert emu.admin('GET', 'calls')['ws']['ali-eci-exec']['drops'] == 1


def test_message_latency_slows_but_does_not_break(emu):
    emu.admin('POST', 'faults', {'service': 'ws', 'message_latency_ms': 400})
    done = run(emu, {'container_group_id': WEB, 'command': 'echo slow', 'mode': 'stream'})
    assert done.rc == 0, done.output
    assert result(done)['stdout'] == 'slow\n'
    assert done.task_seconds(done.results[0]['task']) >= 0.4


@pytest.mark.parametrize('mode', MODES)
def test_throttling_is_retried(emu, mode):
    emu.admin('POST', 'faults', [{'service': 'ali-eci', 'action': 'ExecContainerCommand', 'throttle': 2},
                                 {'service': 'ali-eci', 'action': 'DescribeContainerGroups', 'throttle': 1}])
    done = run(emu, {'container_group_id': WEB, 'command': 'echo through', 'mode': mode})
    assert done.rc == 0, done.output
    assert result(done)['stdout'] == 'through\n'
    calls = emu.admin('GET', 'calls')
    assert calls['calls']['ali-eci'] == {'ExecContainerCommand': 3, 'DescribeContainerGroups': 2}
    assert calls['errors']['ali-eci']['ExecContainerCommand'] == {'Throttling.User': 2}


def test_no_secret_in_verbose_output(emu):
    done = run(emu, {'container_group_id': WEB, 'command': 'echo secretless', 'mode': 'stream'}, '-vvvv')
    assert done.rc == 0, done.output
    text = done.output
    assert 'secretless' in text
    secret = emu['alicloud']['secret_key']
    for forbidden in (secret, '/eci-exec/', 'token=', 'WebSocketUri', 'ws://'):
        assert forbidden not in text, forbidden
    assert not re.search(r'[?&](token|s)=', text)
    res = result(done)
    assert not {'WebSocketUri', 'websocket_uri', 'uri', 'url', 'HttpUrl', 'token'} & set(res)


@pytest.fixture(scope='module')
def variants(tmp_path_factory):
    """An emulator of this module's own on worlds/eci_exec_variants.yml."""
    with start_emulator(world=WORLDS / 'eci_exec_variants.yml', state_dir=tmp_path_factory.mktemp('variants')) as info:
        yield info


def test_stream_results_are_exact_whatever_the_status_channel_says(variants, tmp_path):
    # A ready message, a status as plain text, as JSON (success included), on channel 4, or none: none of it is output.
    # A success differs only where a status is sent for it (v4_status): one success there, one failure everywhere.
    tasks = [exec_task(f'fails on {variant}', container_group_id=group, mode='stream',
                       command="printf 'out\\n'; printf 'err' >&2; exit 3") for variant, group in VARIANT_GROUPS.items()]
    tasks.append(exec_task('succeeds on v4_status', container_group_id=VARIANT_GROUPS['v4_status'], mode='stream',
                           command="printf ok"))
    done = ansible_playbook(variants, write_play(tmp_path, tasks))
    assert done.rc == 0, done.output
    for variant in VARIANT_GROUPS:
        failed = done.record(f'fails on {variant}')
        assert failed['status'] == 'failed', failed
        res = failed['result']
        assert (res['rc'], res['stdout'], res['stderr'], res['msg']) == (3, 'out\n', 'err', 'non-zero return code'), (variant, res)
    res = done.result('succeeds on v4_status')
    assert (res['rc'], res['stdout'], res['stderr'], res['mode']) == (0, 'ok', '', 'stream'), res
