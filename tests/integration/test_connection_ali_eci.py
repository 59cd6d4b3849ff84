# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ali_eci connection plugin through real ``ansible`` / ``ansible-playbook`` runs against the emulator.

What is particular to ECI exec: addressing, the session kept across runs, timeouts, drops, throttling, the stream
variants, no secrets at -vvvv. The cases every connection passes are in test_connection_conformance.py.

Every run gets its own control directory (CLOUDEXEC_CONTROL_DIR), and every broker a test started is
stopped when it ends, whatever happened.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator
from helpers import AnsibleRun, ansible_adhoc, ansible_playbook


CONNECTION = 'cloudexec.core.ali_eci'
WEB = 'eci-bp1demo00000000001'
API = 'eci-bp1demo00000000002'
JOB = 'eci-bp1demo00000000003'

# web reached by its id as the host address, app by group name and container name.
HOSTS = {
    'web': {'ansible_host': WEB},
    'app': {'ansible_ali_eci_container_group_name': 'api-1', 'ansible_ali_eci_container_name': 'app'},
}


def sandbox(emu, group: str, container: str) -> Path:
    return Path(emu['state_dir']) / 'sandboxes' / 'ali-eci' / group / container


def calls(emu) -> dict:
    return emu.admin('GET', 'calls')


def exec_calls(emu) -> int:
    return emu.calls('ali-eci', 'ExecContainerCommand')


def write_inventory(tmp_path: Path, hosts: dict, **group_vars) -> Path:
    path = tmp_path / 'hosts.yml'
    path.write_text(yaml.safe_dump({'all': {'hosts': hosts, 'vars': {'ansible_connection': CONNECTION, **group_vars}}}))
    return path


def wait_no_sockets(control_dir: Path, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(p.name for p in control_dir.glob('*.sock'))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def play(emu, control_dir: Path, playbook, inventory: Path, *args: str, extra_vars=None, **env: str) -> AnsibleRun:
    return ansible_playbook(emu, playbook, '-i', str(inventory), *args, extra_vars=extra_vars,
                            extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir), **env}, timeout=150)


def write_play(tmp_path: Path, tasks: list, hosts: str = 'all', name: str = 'play.yml', **play_keys) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump([{'name': 'ali_eci test play', 'hosts': hosts, 'gather_facts': False, **play_keys,
                                     'tasks': tasks}], allow_unicode=True))
    return path


def _reset_task() -> dict:
    return {'name': 'close the session', 'ansible.builtin.meta': 'reset_connection'}


# ---------------------------------------------------------------------------------------------- addressing
# The cases every connection must pass (commands, files, become, async...) are in test_connection_conformance.py.

def test_hosts_by_group_id_and_by_group_and_container_name(emu, tmp_path, control_dir):
    """web by its group id as the host address, app by the group's name and the container's name."""
    playbook = write_play(tmp_path, [{'name': 'where', 'ansible.builtin.raw': 'pwd'}, _reset_task()])
    done = play(emu, control_dir, playbook, write_inventory(tmp_path, HOSTS))
    assert done.rc == 0, done.output
    assert done.result('where', 'web')['stdout'] == f'{sandbox(emu, WEB, "web")}\n'
    assert done.result('where', 'app')['stdout'] == f'{sandbox(emu, API, "app")}\n'
    assert exec_calls(emu) == 2
    assert wait_no_sockets(control_dir) == []


# ---------------------------------------------------------------------------------------------- the session

def test_session_is_kept_across_runs_until_reset(emu, tmp_path, control_dir):
    inventory = write_inventory(tmp_path, {'web': HOSTS['web']})
    pid_task = {'name': 'shell pid', 'ansible.builtin.raw': 'echo $$'}
    first = play(emu, control_dir, write_play(tmp_path, [pid_task, pid_task | {'name': 'shell pid again'}]), inventory)
    assert first.rc == 0, first.output
    pid = first.result('shell pid')['stdout'].strip()
    assert pid.isdigit() and first.result('shell pid again')['stdout'].strip() == pid
    assert exec_calls(emu) == 1
    # A second run finds the broker and its session: no API call at all.
    emu.admin('POST', 'calls/reset')
    second = play(emu, control_dir, write_play(tmp_path, [pid_task, _reset_task(), pid_task | {'name': 'after reset'}], name='p2.yml'),
                  inventory)
    assert second.rc == 0, second.output
    assert second.result('shell pid')['stdout'].strip() == pid
    assert calls(emu)['total'] == 2   # after reset_connection: DescribeContainerGroups + ExecContainerCommand
    assert exec_calls(emu) == 1
    assert second.result('after reset')['stdout'].strip() != pid


def test_command_timeout_fails_the_task_and_the_next_task_reconnects(emu, tmp_path, control_dir):
    inventory = write_inventory(tmp_path, {'web': HOSTS['web']})
    playbook = write_play(tmp_path, [
        {'name': 'too slow', 'ansible.builtin.raw': 'sleep 20; touch too-late', 'ignore_errors': True,
         'vars': {'ansible_ali_eci_command_timeout': 2}},
        {'name': 'after', 'ansible.builtin.raw': 'echo fine'},
        _reset_task(),
    ])
    started = time.monotonic()
    done = play(emu, control_dir, playbook, inventory)
    assert done.rc == 0, done.output
    assert time.monotonic() - started < 20
    slow = done.record('too slow')
    assert slow['status'] == 'failed' and 'did not finish within 2 seconds' in slow['result']['msg'], slow
    assert not slow['result'].get('unreachable')
    assert done.result('after')['stdout'] == 'fine\n'
    assert exec_calls(emu) == 2
    time.sleep(0.5)
    assert not (sandbox(emu, WEB, 'web') / 'too-late').exists()


# ---------------------------------------------------------------------------------------------- inventory + connection

def test_inventory_feeds_the_connection(emu, tmp_path, control_dir):
    config = tmp_path / 'demo.ali_eci.yml'
    config.write_text(yaml.safe_dump({'plugin': CONNECTION, 'keyed_groups': [{'key': 'ali_eci.tags.app', 'prefix': 'app'}]}))
    env = {'ANSIBLE_INVENTORY_ENABLED': CONNECTION, 'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'true'}
    listed = ansible_adhoc(emu, 'ansible.builtin.raw', 'true', '-i', str(config), '--list-hosts', hosts='ali_eci',
                           extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir), **env})
    assert listed.rc == 0, listed.output
    playbook = write_play(tmp_path, [
        {'name': 'where', 'ansible.builtin.command': 'pwd'},
        {'name': 'facts', 'ansible.builtin.setup': {'gather_subset': ['!all', 'min']}},
        _reset_task(),
    ], hosts='ali_eci')
    done = play(emu, control_dir, playbook, config, **env)
    assert done.rc == 0, done.output
    expected = {f'{WEB}_web': sandbox(emu, WEB, 'web'), f'{API}_app': sandbox(emu, API, 'app'),
                f'{API}_sidecar': sandbox(emu, API, 'sidecar')}
    for host, home in expected.items():
        assert done.result('where', host)['stdout'] == str(home)
        assert done.result('facts', host)['ansible_facts']['ansible_env']['HOME'] == str(home)
    assert set(done.stats) == set(expected)
    assert exec_calls(emu) == 3


# ---------------------------------------------------------------------------------------------- faults

def test_drop_mid_command_says_it_may_have_run(emu, tmp_path, control_dir):
    emu.admin('POST', 'faults', {'service': 'ali-eci', 'action': 'ExecContainerCommand', 'drop_after_bytes': 20000})
    playbook = write_play(tmp_path, [
        {'name': 'small', 'ansible.builtin.raw': 'echo small'},
        {'name': 'big', 'ansible.builtin.raw': 'seq 1 100000', 'ignore_errors': True},
        {'name': 'after the drop', 'ansible.builtin.raw': 'echo back'},
        _reset_task(),
    ])
    started = time.monotonic()
    done = play(emu, control_dir, playbook, write_inventory(tmp_path, {'web': HOSTS['web']}))
    assert time.monotonic() - started < 60, done.output
    assert done.result('small')['stdout'] == 'small\n'
    big = done.record('big')
    # The task fails (the host stays reachable: the next task opens a new session) and says the command may have run.
    assert big['status'] == 'failed' and not big['result'].get('unreachable'), big
    assert 'may have run' in big['result']['msg'] and 'StreamDropped' in big['result']['msg'], big['result']['msg']
    # The next task opens a new session by itself.
    assert done.result('after the drop')['stdout'] == 'back\n'
    assert exec_calls(emu) == 2
    assert calls(emu)['ws']['ali-eci-exec']['drops'] == 1


def test_session_lost_while_idle_reconnects_transparently(emu, tmp_path, control_dir):
    playbook = write_play(tmp_path, [
        {'name': 'first pid', 'ansible.builtin.raw': 'echo $$'},
        # The long-lived shell is killed behind our back a moment later: the service ends the stream.
        {'name': 'kill the shell later', 'ansible.builtin.raw': '(sleep 0.5; kill -KILL $$) >/dev/null 2>&1 &'},
        {'name': 'wait', 'ansible.builtin.pause': {'seconds': 2}},
        {'name': 'second pid', 'ansible.builtin.raw': 'echo $$'},
        _reset_task(),
    ])
    done = play(emu, control_dir, playbook, write_inventory(tmp_path, {'web': HOSTS['web']}))
    assert done.rc == 0, done.output
    first, second = done.result('first pid')['stdout'].strip(), done.result('second pid')['stdout'].strip()
    assert first.isdigit() and second.isdigit() and first != second
    assert exec_calls(emu) == 2


def test_latency_slows_but_works(emu, tmp_path, control_dir):
    emu.admin('POST', 'faults', [{'service': 'ali-eci', 'action': 'ExecContainerCommand', 'latency_ms': 500},
                                 {'service': 'ws', 'action': '*', 'message_latency_ms': 150}])
    playbook = write_play(tmp_path, [
        {'name': 'slow', 'ansible.builtin.command': 'echo slow'},
        {'name': 'slow copy', 'ansible.builtin.copy': {'content': 'x' * 100000, 'dest': 'latency.txt', 'mode': '0644'}},
        _reset_task(),
    ])
    done = play(emu, control_dir, playbook, write_inventory(tmp_path, {'web': HOSTS['web']}))
    assert done.rc == 0, done.output
    assert done.result('slow')['stdout'] == 'slow'
    assert (sandbox(emu, WEB, 'web') / 'latency.txt').read_text() == 'x' * 100000
    assert done.task_seconds('slow') >= 0.5


def test_throttled_exec_is_retried(emu, tmp_path, control_dir):
    emu.admin('POST', 'faults', [{'service': 'ali-eci', 'action': 'ExecContainerCommand', 'throttle': 2},
                                 {'service': 'ali-eci', 'action': 'DescribeContainerGroups', 'throttle': 1}])
    playbook = write_play(tmp_path, [{'name': 'through', 'ansible.builtin.raw': 'echo through'}, _reset_task()])
    done = play(emu, control_dir, playbook, write_inventory(tmp_path, {'web': HOSTS['web']}))
    assert done.rc == 0, done.output
    assert done.result('through')['stdout'] == 'through\n'
    counted = calls(emu)
    assert counted['calls']['ali-eci'] == {'ExecContainerCommand': 3, 'DescribeContainerGroups': 2}
    assert counted['errors']['ali-eci']['ExecContainerCommand'] == {'Throttling.User': 2}


# ---------------------------------------------------------------------------------------------- unreachable targets

def test_bad_targets_are_unreachable_with_a_remedy(emu, tmp_path, control_dir):
    hosts = {
        'stopped': {'ansible_host': JOB},
        'unknown': {'ansible_host': 'eci-doesnotexist0000'},
        'ambiguous': {'ansible_host': API},
        'nocontainer': {'ansible_host': WEB, 'ansible_ali_eci_container_name': 'nope'},
    }
    playbook = write_play(tmp_path, [{'name': 'try', 'ansible.builtin.raw': 'echo never'}])
    started = time.monotonic()
    done = play(emu, control_dir, playbook, write_inventory(tmp_path, hosts))
    assert time.monotonic() - started < 60, done.output
    assert done.rc == 4, done.output   # unreachable hosts
    messages = {}
    for host in hosts:
        record = done.record('try', host)
        assert record['status'] == 'unreachable', record
        messages[host] = record['result']['msg']
    assert 'IncorrectStatus' in messages['stopped'] and 'is Succeeded' in messages['stopped']
    assert 'Wait until the group is Running' in messages['stopped']
    assert 'ContainerGroupNotFound' in messages['unknown'] and 'alicloud_region' in messages['unknown']
    assert 'has 2 containers' in messages['ambiguous'] and 'app, sidecar' in messages['ambiguous']
    assert "no container named 'nope'" in messages['nocontainer']
    assert exec_calls(emu) == 0
    assert list(control_dir.glob('*.sock')) == []


def test_wrong_secret_is_unreachable_without_the_secret(emu, tmp_path, control_dir):
    playbook = write_play(tmp_path, [{'name': 'try', 'ansible.builtin.raw': 'echo never'}])
    done = play(emu, control_dir, playbook, write_inventory(tmp_path, {'web': HOSTS['web']}), '-vvvv',
                ALICLOUD_SECRET_KEY='not-the-secret-value', ALIBABA_CLOUD_ACCESS_KEY_SECRET='not-the-secret-value')
    assert done.rc == 4, done.output
    record = done.record('try')
    assert record['status'] == 'unreachable' and 'SignatureDoesNotMatch' in record['result']['msg']
    assert 'not-the-secret-value' not in done.output


# ---------------------------------------------------------------------------------------------- secrets

def test_no_secret_in_vvvv_output(emu, tmp_path, control_dir):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'file.txt').write_text('payload\n')
    playbook = write_play(tmp_path, [
        {'name': 'say', 'ansible.builtin.command': 'echo secretless'},
        {'name': 'put', 'ansible.builtin.copy': {'src': str(work / 'file.txt'), 'dest': 'file.txt', 'mode': '0644'}},
        {'name': 'get', 'ansible.builtin.fetch': {'src': 'file.txt', 'dest': f'{work}/back.txt', 'flat': True}},
        _reset_task(),
    ])
    done = play(emu, control_dir, playbook, write_inventory(tmp_path, HOSTS), '-vvvv')
    assert done.rc == 0, done.output
    text = done.output
    assert 'secretless' in text and 'ECI EXEC' in text
    secret = emu['alicloud']['secret_key']
    for forbidden in (secret, '/eci-exec/', 'token=', 'WebSocketUri', 'ws://', 'HttpUrl'):
        assert forbidden not in text, forbidden
    assert not re.search(r'[?&](token|s)=', text)
    # Nor in the control directory (the broker keeps nothing there but its socket and lock).
    for path in control_dir.iterdir():
        if path.is_file():
            assert secret.encode() not in path.read_bytes()
    assert json.dumps(secret)[1:-1] not in text


# ---------------------------------------------------------------------------------------------- stream variants

WORLDS = Path(__file__).resolve().parents[1] / 'emulator' / 'cloudexec_emulator' / 'worlds'
# One group per behaviour of the exec websocket (worlds/eci_exec_variants.yml, see the emulator's eci_exec.py).
VARIANT_GROUPS = {'kubelet': 'eci-variantkubelet0001', 'v4_status': 'eci-variantv4status001',
                  'no_status': 'eci-variantnostatus001', 'swapped_channels': 'eci-variantswapped0001'}


@pytest.fixture(scope='module')
def variants(tmp_path_factory):
    """An emulator of this module's own on worlds/eci_exec_variants.yml."""
    with start_emulator(world=WORLDS / 'eci_exec_variants.yml', state_dir=tmp_path_factory.mktemp('variants')) as info:
        yield info


def test_exact_results_and_service_errors_whatever_the_stream_variant(variants, tmp_path, control_dir):
    hosts = {variant: {'ansible_host': group} for variant, group in VARIANT_GROUPS.items()}
    # A shell that cannot start: the runtime's own words must reach the user (as plain text, JSON, or on channel 4).
    hosts.update({f'noshell-{variant}': {'ansible_host': group, 'ansible_ali_eci_shell': '/no/such/sh'}
                  for variant, group in VARIANT_GROUPS.items()})
    playbook = write_play(tmp_path, [
        {'name': 'fails', 'ansible.builtin.raw': "printf 'out\\n'; printf 'err' >&2; exit 3", 'ignore_errors': True},
        {'name': 'module', 'ansible.builtin.command': 'echo hi'},
        {'name': 'shell', 'ansible.builtin.shell': "printf 'o'; printf 'e' >&2"},
        _reset_task(),
    ])
    started = time.monotonic()
    done = play(variants, control_dir, playbook, write_inventory(tmp_path, hosts))
    assert time.monotonic() - started < 120, done.output
    for variant in VARIANT_GROUPS:
        failed = done.record('fails', variant)
        assert failed['status'] == 'failed', failed
        assert (failed['result']['rc'], failed['result']['stdout'], failed['result']['stderr']) == (3, 'out\n', 'err'), failed
        assert done.result('module', variant)['stdout'] == 'hi'
        shell = done.result('shell', variant)
        assert (shell['rc'], shell['stdout'], shell['stderr']) == (0, 'o', 'e'), shell
        record = done.record('fails', f'noshell-{variant}')
        assert record['status'] == 'unreachable', record
        msg = record['result']['msg']
        assert 'Check that /no/such/sh (the shell option) exists in the container' in msg, msg
        if variant != 'no_status':   # there the stream just closes: nothing to quote
            assert 'OCI runtime exec failed' in msg and 'stat /no/such/sh: no such file or directory' in msg, msg
    assert wait_no_sockets(control_dir) == []
