# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ECS Exec sessions through real ansible-playbook runs: resumed after a lost connection, sized, and the session limit.

One module-scoped emulator whose world resumes ECS Exec sessions through SSM (``aws.exec.resumable: true``: whether
AWS does is not established, so the shipped world refuses, and tests/integration/test_aws_ecs_exec.py and
test_connection_aws_ecs.py check the honest failure then). Its ``sessions`` cluster has one task per test, so
counters and session limits do not mix.
"""
from __future__ import annotations

import base64
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator

from helpers import AnsibleRun, ansible_adhoc, ansible_playbook, broker_request, broker_stats

DEFAULT_WORLD = Path(__file__).resolve().parents[1] / 'emulator' / 'cloudexec_emulator' / 'worlds' / 'default.yml'
MODULE_TASK = 'e0000000000000000000000000000001'
CONN_TASK = 'e0000000000000000000000000000002'
LIMITED_TASK = 'e0000000000000000000000000000003'
NUMBERS = ''.join(f'{i}\n' for i in range(1, 40001))   # 228,894 bytes of output


@pytest.fixture(scope='module')
def emulator(tmp_path_factory):
    directory = tmp_path_factory.mktemp('aws-ecs-sessions')
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['aws']['exec'] = {'agent_start_ms': 10, 'output_delay_ms': 20, 'session_limit': 2, 'resumable': True}
    world['aws']['clusters'].append({'name': 'sessions', 'tasks': [
        {'id': task, 'family': family, 'containers': [{'name': 'app'}]}
        for task, family in ((MODULE_TASK, 'module'), (CONN_TASK, 'conn'), (LIMITED_TASK, 'limited'))]})
    path = directory / 'world.yml'
    path.write_text(yaml.safe_dump(world))
    with start_emulator(world=path, state_dir=directory / 'state') as info:
        yield info


@pytest.fixture
def emu(emulator):
    emulator.admin('DELETE', 'faults')
    emulator.admin('POST', 'calls/reset')
    yield emulator
    emulator.admin('DELETE', 'faults')


def sandbox(emulator, task: str) -> Path:
    return Path(emulator['state_dir']) / 'sandboxes' / 'aws-ecs' / task / 'app'


def playbook(tmp_path: Path, hosts: str, tasks: list[dict[str, Any]], name: str = 'play') -> Path:
    path = tmp_path / f'{name}.yml'
    path.write_text(yaml.safe_dump([{'name': name, 'hosts': hosts, 'gather_facts': False, 'tasks': tasks}]))
    return path


def inventory(tmp_path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    path = tmp_path / 'inventory.yml'
    path.write_text(yaml.safe_dump({'target': {'hosts': hosts, 'vars': {
        'ansible_connection': 'cloudexec.core.aws_ecs', 'ansible_aws_ecs_cluster': 'sessions', 'ansible_aws_ecs_container': 'app',
        'ansible_python_interpreter': sys.executable, 'ansible_pipelining': True}}}))
    return path


def channel_counters(emulator) -> dict[str, Any]:
    return emulator.admin('GET', 'calls')


def run_env(control: Path) -> dict[str, str]:
    return {'CLOUDEXEC_CONTROL_DIR': str(control)}


def ok(run: AnsibleRun, task: str) -> dict[str, Any]:
    record = run.record(task)
    assert record['status'] == 'ok', f'{task}: {record}\n{run.output}'
    return record['result']


# ---- resuming a lost connection ------------------------------------------------------------------


def test_module_resumes_a_dropped_session_and_the_output_is_exact(emu, tmp_path):
    """Every 60 KB of output the connection is cut: the module resumes the same session each time, the command runs
    once, and its 229 KB of output arrive whole, byte for byte."""
    home = sandbox(emu, MODULE_TASK)
    (home / 'runs.txt').unlink(missing_ok=True)
    emu.admin('POST', 'faults', {'service': 'ws', 'drop_after_bytes': 60000})
    run = ansible_playbook(emu, playbook(tmp_path, 'localhost', [{'name': 'big output', 'cloudexec.core.aws_ecs_exec': {
        # The sleep keeps the command alive after its output: when it ends, the agent gives the client only 2 s to
        # take what is left (PrepareToCloseChannel), which a loaded machine may not meet right after a resume.
        'cluster': 'sessions', 'task': MODULE_TASK, 'command': 'echo run >> runs.txt; seq 1 40000; sleep 3'}}]))
    assert run.rc == 0, run.output
    result = run.result('big output')
    assert result['rc'] == 0 and result['stdout'] == NUMBERS and result['stderr'] == ''
    assert (home / 'runs.txt').read_text() == 'run\n'
    counters = channel_counters(emu)
    channel = counters['ws']['aws-ecs-exec']
    assert channel['drops'] >= 3 and channel['resumed'] == channel['drops'], channel
    assert counters['calls']['aws-ssm']['ResumeSession'] == channel['drops']
    assert counters['calls']['aws-ecs']['ExecuteCommand'] == 1 and channel['sessions_opened'] == 1
    assert 'frames_invalid' not in channel


def test_connection_resumes_dropped_sessions_with_input_in_flight(emu, tmp_path, control_dir):
    """Through the aws_ecs connection, with the connection cut every 50 KB of output and the first acknowledgements of
    every connection lost (input applied by the agent, not known to be): one session for the whole play, every command
    once, every byte exact, and the terminal has the size the client sent."""
    home = sandbox(emu, CONN_TASK)
    for name in ('raw-runs.txt', 'shell-runs.txt', 'copied.bin'):
        (home / name).unlink(missing_ok=True)
    text = ''.join(f'line {i:05d} of the input that is still in flight\n' for i in range(2000)).rstrip('\n')   # ~104 KB
    binary = os.urandom(120 * 1024)
    (tmp_path / 'input.txt').write_text(text)
    (tmp_path / 'payload.bin').write_bytes(binary)
    admin = f'{emu.endpoint}/_emulator/'
    tasks = [
        {'name': 'arm the faults', 'delegate_to': 'localhost', 'ansible.builtin.uri': {
            'url': f'{admin}faults', 'method': 'POST', 'body_format': 'json', 'status_code': 201,
            'body': [{'service': 'ws', 'drop_after_bytes': 50000}, {'service': 'ws', 'lose_ack': 3}]}},
        {'name': 'large output', 'ansible.builtin.raw': 'echo run >> raw-runs.txt; seq 1 40000'},
        {'name': 'input in flight', 'ansible.builtin.shell': 'cat; echo ran >> shell-runs.txt',
         'args': {'stdin': "{{ lookup('file', '%s') }}" % (tmp_path / 'input.txt')}},
        {'name': 'copy', 'ansible.builtin.copy': {'src': str(tmp_path / 'payload.bin'), 'dest': 'copied.bin'}},
        {'name': 'read it back', 'ansible.builtin.slurp': {'src': 'copied.bin'}},
        {'name': 'terminal size', 'ansible.builtin.raw': 'stty size </dev/tty'},
    ]
    run = ansible_playbook(emu, playbook(tmp_path, 'target', tasks), '-i', str(inventory(tmp_path, {'conn': {
        'ansible_aws_ecs_task': CONN_TASK}})), extra_env=run_env(control_dir))
    assert run.rc == 0, run.output
    assert ok(run, 'large output')['stdout'] == NUMBERS
    assert ok(run, 'input in flight')['stdout'] == text
    assert ok(run, 'copy')['checksum'] == hashlib.sha1(binary).hexdigest()
    assert ok(run, 'read it back')['content'] == base64.b64encode(binary).decode()
    # Sent by the client right after opening (AWS's client's size when it has no terminal); the agent starts with none.
    assert ok(run, 'terminal size')['stdout'] == '100 300\n'
    assert (home / 'raw-runs.txt').read_text() == 'run\n' and (home / 'shell-runs.txt').read_text() == 'ran\n'
    assert (home / 'copied.bin').read_bytes() == binary
    counters = channel_counters(emu)
    channel = counters['ws']['aws-ecs-exec']
    assert channel['drops'] >= 4 and channel['resumed'] == channel['drops'], channel
    # Input the agent had applied was sent again on the resumed connections: acknowledged, never typed twice.
    assert channel['duplicates_in'] >= 1 and channel['acks_lost'] >= 3
    assert counters['calls']['aws-ecs']['ExecuteCommand'] == 1 and channel['sessions_opened'] == 1
    assert 'frames_invalid' not in channel
    assert [stats['sessions_opened'] for stats in broker_stats(control_dir)] == [1]


# ---- the session limit ---------------------------------------------------------------------------


def test_session_limit_names_our_idle_brokers_and_what_to_do(emu, tmp_path, control_dir):
    """Two idle brokers hold the container's two sessions: a third caller is retried for a bounded time, then told
    that the sessions may all be in use, by which of our brokers, and what to do; a freed session is taken."""
    hosts = {'one': {'ansible_aws_ecs_task': LIMITED_TASK, 'ansible_aws_ecs_idle_timeout': 300},
             'two': {'ansible_aws_ecs_task': LIMITED_TASK, 'ansible_aws_ecs_idle_timeout': 301}}
    held = ansible_adhoc(emu, 'ansible.builtin.raw', 'echo held', '-i', str(inventory(tmp_path, hosts)), hosts='target',
                         extra_env=run_env(control_dir))
    assert held.rc == 0, held.output
    brokers = broker_stats(control_dir)
    assert len(brokers) == 2 and {b['target'] for b in brokers} == {f'aws_ecs:{LIMITED_TASK}/app'}
    emu.admin('POST', 'calls/reset')
    third = playbook(tmp_path, 'localhost', [{'name': 'third', 'cloudexec.core.aws_ecs_exec': {
        'cluster': 'sessions', 'task': LIMITED_TASK, 'command': 'echo third', 'timeout': 3}}], name='third')
    run = ansible_playbook(emu, third, extra_env=run_env(control_dir))
    record = run.record('third')
    assert record['status'] == 'failed', record
    msg = record['result']['msg']
    assert record['result']['error']['code'] == 'TargetNotConnectedException', msg
    assert 'refused for 3 seconds' in msg and 'ECS Exec agent is RUNNING: its sessions may all be in use' in msg, msg
    for broker in brokers:
        assert f'pid {broker["pid"]} (idle, {Path(broker["socket"]).name})' in msg, msg
    assert 'meta: reset_connection' in msg and 'idle_timeout' in msg and 'retry later' in msg, msg
    # The old advice does not fit a RUNNING agent.
    assert 'enableExecuteCommand' not in msg and 'ssmmessages' not in msg, msg
    assert emu.calls('aws-ecs', 'ExecuteCommand') >= 3   # tried again with back-off before failing
    assert run.duration < 60   # bounded (the task's timeout, 3 s, plus start-up)
    # reset_connection of one (what the message says to do) frees a session: the third caller gets it.
    broker_request(Path(brokers[0]['socket']), {'op': 'stop'})
    run = ansible_playbook(emu, third, extra_env=run_env(control_dir))
    assert run.rc == 0 and run.result('third')['stdout'] == 'third\n', run.output


def test_session_limit_without_brokers_of_ours_says_others_may_hold_them(emu, tmp_path, control_dir):
    """Sessions held by another controller: no broker of ours is named, the message says who else may hold them."""
    sessions = [emu_client(emu).execute_command(cluster='sessions', task=LIMITED_TASK, command='sleep 30', interactive=True)
                for _count in range(2)]
    assert all(s['session']['sessionId'] for s in sessions)
    run = ansible_playbook(emu, playbook(tmp_path, 'localhost', [{'name': 'third', 'cloudexec.core.aws_ecs_exec': {
        'cluster': 'sessions', 'task': LIMITED_TASK, 'command': 'echo third', 'timeout': 2}}]), extra_env=run_env(control_dir))
    msg = run.record('third')['result']['msg']
    assert 'its sessions may all be in use' in msg and f'No session broker of this controller (control directory {control_dir})' in msg, msg
    assert 'AWX jobs, colleagues' in msg, msg


def emu_client(emulator) -> Any:
    import boto3  # pylint: disable=import-outside-toplevel
    return boto3.client('ecs', endpoint_url=emulator['aws']['endpoint_url'], region_name=emulator['aws']['region'],
                        aws_access_key_id=emulator['aws']['access_key'], aws_secret_access_key=emulator['aws']['secret_key'])
