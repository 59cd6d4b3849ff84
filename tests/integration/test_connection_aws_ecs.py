# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The aws_ecs connection plugin through real ``ansible`` / ``ansible-playbook`` runs against the emulator.

What this plugin promises on top of the shared conformance suite (test_connection_conformance.py, the cases every
connection passes): one ExecuteCommand per host per play (also with 20 forks over an inventory-fed fleet) on the
default world as shipped, transparent reconnection after an idle drop, an honest failure after a mid-command drop, no
secrets at -vvvv (with a become password too), and a private broker. Every run gets its own CLOUDEXEC_CONTROL_DIR,
and every broker is gone afterwards.

Most tests use a module-scoped emulator whose world is the default one with ECS Exec's start-up delays
cut plus a ``conn`` cluster (one task per test host) and a generated ``fleet`` cluster of 20 tasks;
the session count test uses the default world as shipped.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator

from helpers import AnsibleRun, alive, ansible_adhoc, ansible_playbook, broker_stats, stop_brokers

CONNECTION = 'cloudexec.core.aws_ecs'
DEFAULT_WORLD = Path(__file__).resolve().parents[1] / 'emulator' / 'cloudexec_emulator' / 'worlds' / 'default.yml'
# The conn cluster: one task (one container, "app") per test host, so ExecuteCommand counts are per host.
TASKS = {
    'pipe': 'c0000000000000000000000000000001',
    'sudo-pipe': 'c0000000000000000000000000000003',
    'sudo-nopipe': 'c0000000000000000000000000000004',
    'faulty': 'c0000000000000000000000000000005',
    'broker': 'c0000000000000000000000000000006',
}
PASSWORD_HOSTS = ('sudo-pipe', 'sudo-nopipe')
BECOME_PASSWORD = 'Emulator-Become-Pass-0001'
NO_EXEC = '3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f'   # default world: exec not enabled
DEFAULT_WEB = '1f0e1c2d3b4a59687766554433221100'
STAGING_WEB = '4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a'
FLEET_SIZE = 20


def _world() -> dict[str, Any]:
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['aws']['exec'] = {'agent_start_ms': 10, 'output_delay_ms': 20, 'session_limit': 4}
    tasks = []
    for host, task_id in TASKS.items():
        container: dict[str, Any] = {'name': 'app'}
        if host in PASSWORD_HOSTS:
            container['become_password'] = BECOME_PASSWORD
        tasks.append({'id': task_id, 'family': host, 'containers': [container]})
    world['aws']['clusters'] += [
        {'name': 'conn', 'tasks': tasks},
        {'name': 'fleet', 'tasks': [{'count': FLEET_SIZE, 'id_pattern': 'f1ee7{index:027d}', 'family_pattern': 'fleet-{index:02d}',
                                     'service': 'fleet', 'containers': [{'name': 'app'}]}]},
    ]
    return world


@pytest.fixture(scope='module')
def fast(tmp_path_factory):
    """The default world with fast ECS Exec start-up, plus the conn and fleet clusters."""
    directory = tmp_path_factory.mktemp('aws-ecs-connection')
    path = directory / 'world.yml'
    path.write_text(yaml.safe_dump(_world(), allow_unicode=True))
    with start_emulator(world=path, state_dir=directory / 'state') as info:
        yield info


@pytest.fixture
def fast_emu(fast):
    """The fast emulator with no faults and zeroed counters."""
    fast.admin('DELETE', 'faults')
    fast.admin('POST', 'calls/reset')
    yield fast
    fast.admin('DELETE', 'faults')


# ---- runs ----------------------------------------------------------------------------------------


def write_inventory(directory: Path, hosts: dict[str, dict[str, Any]], cluster: str = 'conn') -> Path:
    """A YAML inventory of aws_ecs hosts in group "target"; per-host vars as given."""
    path = directory / 'inventory.yml'
    path.write_text(yaml.safe_dump({'target': {
        'hosts': hosts,
        'vars': {'ansible_connection': CONNECTION, 'ansible_aws_ecs_cluster': cluster, 'ansible_python_interpreter': sys.executable},
    }}, allow_unicode=True))  # host vars win over these group vars
    return path


def conn_host(name: str, **extra: Any) -> dict[str, Any]:
    """Host vars of a container of the conn cluster."""
    return {'ansible_aws_ecs_task': TASKS[name], 'ansible_aws_ecs_container': 'app', **extra}


def run_env(control: Path, **extra: str) -> dict[str, str]:
    return {'CLOUDEXEC_CONTROL_DIR': str(control), **extra}


def sandbox(emulator, task: str, container: str = 'app') -> Path:
    return Path(emulator['state_dir']) / 'sandboxes' / 'aws-ecs' / task / container


def admin_url(emulator) -> str:
    return f'{emulator.endpoint}/_emulator/'


def execute_commands(result: dict[str, Any]) -> int:
    """ExecuteCommand calls in the content of a `uri` result on the admin API's calls."""
    return json.loads(result['content'])['calls']['aws-ecs'].get('ExecuteCommand', 0)


def ok(run: AnsibleRun, task: str, host: str | None = None) -> dict[str, Any]:
    record = run.record(task, host)
    assert record['status'] == 'ok', f'{task}: {record}'
    return record['result']


def failed(run: AnsibleRun, task: str, host: str | None = None) -> dict[str, Any]:
    record = run.record(task, host)
    assert record['status'] == 'failed', f'{task}: {record}'
    return record['result']


# ---- one session per host ------------------------------------------------------------------------


def test_one_session_per_host_per_play_on_the_default_world(emu, control_dir, tmp_path):
    """On the default world as shipped (ECS Exec's real start-up and output delays), pipelining on and off: a play's
    tasks share one ExecuteCommand per host; wait_for_connection (its action resets the connection before pinging, as
    ssh's ControlPersist master does) and meta: reset_connection each open one more; the last reset leaves no broker.
    The cases every connection must pass are in test_connection_conformance.py."""
    targets = {'web': ('demo', DEFAULT_WEB, 'web', True), 'staging': ('staging', STAGING_WEB, 'web', False)}
    hostvars = {host: {'ansible_aws_ecs_cluster': cluster, 'ansible_aws_ecs_task': task_id, 'ansible_aws_ecs_container': container,
                       'ansible_pipelining': pipelining}
                for host, (cluster, task_id, container, pipelining) in targets.items()}
    inventory = write_inventory(tmp_path, hostvars)
    run = ansible_playbook(emu, 'connection_sessions.yml', '-i', str(inventory), '--forks', '2', extra_env=run_env(control_dir),
                           extra_vars={'admin': admin_url(emu), 'local_dest': str(tmp_path / 'fetched')})
    assert run.rc == 0, run.output
    for host, (_cluster, task_id, container, _pipelining) in targets.items():
        assert run.stats[host]['failures'] == 0 and run.stats[host]['unreachable'] == 0, host
        exact = ok(run, 'raw keeps bytes, stderr and rc exactly', host)
        assert (exact['stdout'], exact['stderr'], exact['rc']) == ('a\r\nb\r', 'e1\n\n', 3)
        assert ok(run, 'a module', host)['stdout'] == 'x'
        assert ok(run, 'become with sudo', host)['stdout'] == 'sudo:root'
        home = sandbox(emu, task_id, container)
        assert (home / 'sessions.txt').read_text() == f'{host}\n'
        assert (tmp_path / 'fetched' / host).read_text() == f'{host}\n'
        assert ok(run, 'raw after reset', host)['stdout'] == 'after-reset\n'
    assert execute_commands(ok(run, 'calls before wait_for_connection')) == len(targets)
    assert execute_commands(ok(run, 'calls after reset')) == 3 * len(targets)
    assert emu.calls('aws-ecs', 'ExecuteCommand') == 3 * len(targets)
    assert broker_stats(control_dir) == []
    assert not list(control_dir.glob('*.sock'))
    assert 'frames_invalid' not in emu.admin('GET', 'calls')['ws'].get('aws-ecs-exec', {})


# ---- become with passwords, and secrets at -vvvv ---------------------------------------------------


def test_no_secrets_at_vvvv_with_a_become_password(fast_emu, control_dir, tmp_path):
    """sudo with a password (pipelining on and off: the password and the module share stdin) and a wrong one, at -vvvv:
    no secret in the output, one session per host. What become does is in the conformance suite."""
    temporary = {'AWS_ACCESS_KEY_ID': 'ASIAEMULATOR00000002', 'AWS_SECRET_ACCESS_KEY': 'emulator/secret/key/for/tests/only00002',
                 'AWS_SESSION_TOKEN': 'emulator-session-token-0002'}
    hosts = {host: conn_host(host, ansible_pipelining=host.endswith('-pipe'), ansible_become_password=BECOME_PASSWORD)
             for host in PASSWORD_HOSTS}
    inventory = write_inventory(tmp_path, hosts)
    run = ansible_playbook(fast_emu, 'connection_become.yml', '-i', str(inventory), '-vvvv', '--forks', '2',
                           extra_env=run_env(control_dir, **temporary), extra_vars={'remote_file': 'become-copy.txt'})
    assert run.rc == 0, run.output
    for host in PASSWORD_HOSTS:
        assert ok(run, 'sudo with a password', host)['stdout'] == 'sudo:root:root:root'
        assert ok(run, 'copy as root', host)['changed'] is True
        assert failed(run, 'wrong password', host)['msg'].endswith('Incorrect sudo password (the target refused it)')
    # One session per host, through every become.
    assert fast_emu.calls('aws-ecs', 'ExecuteCommand') == len(PASSWORD_HOSTS)

    text = run.stdout + run.stderr
    assert 'ESTABLISH' in text or 'EXEC ' in text, 'the run was not verbose'
    assert 'sudo -H -S -p "[sudo via ansible' in text  # the become command is logged, not its password
    for secret in (BECOME_PASSWORD, temporary['AWS_SECRET_ACCESS_KEY'], temporary['AWS_SESSION_TOKEN'], fast_emu['aws']['secret_key']):
        assert secret not in text
    for needle in ('/v1/data-channel/', 'data-channel', 'cell-number', 'tokenValue', 'TokenValue', 'streamUrl', 'StreamUrl'):
        assert needle not in text, needle
    assert broker_stats(control_dir) == []


# ---- forks across an inventory-fed fleet ---------------------------------------------------------


def test_fleet_with_forks_from_the_inventory_plugin(fast_emu, control_dir, tmp_path):
    """20 containers from the aws_ecs inventory plugin, forks 20: every host works, one ExecuteCommand each."""
    config = tmp_path / 'fleet.aws_ecs.yml'
    config.write_text(yaml.safe_dump({'plugin': CONNECTION, 'clusters': ['fleet']}))
    run = ansible_playbook(fast_emu, 'connection_fleet.yml', '-i', str(config), '--forks', '20',
                           extra_env=run_env(control_dir, ANSIBLE_INVENTORY_ENABLED=CONNECTION, ANSIBLE_INVENTORY_UNPARSED_FAILED='true'),
                           extra_vars={'admin': admin_url(fast_emu), 'ansible_python_interpreter': sys.executable})
    assert run.rc == 0, run.output
    hosts = sorted(run.stats)
    assert len(hosts) == FLEET_SIZE, hosts
    for host in hosts:
        assert run.stats[host]['failures'] == 0 and run.stats[host]['unreachable'] == 0, host
        assert ok(run, 'ping', host)['ping'] == 'pong'
        task_id = host.split('_')[1]
        home = sandbox(fast_emu, task_id)
        assert ok(run, 'where am I', host)['stdout'] == str(home)
        assert (home / 'fleet.txt').read_text() == f'{host}\n'
        assert ok(run, 'read it back', host)['content'] == base64_text(f'{host}\n')
    assert execute_commands(ok(run, 'calls')) == FLEET_SIZE
    assert fast_emu.calls('aws-ecs', 'ExecuteCommand') == FLEET_SIZE
    assert broker_stats(control_dir) == []


def base64_text(text: str) -> str:
    import base64
    return base64.b64encode(text.encode()).decode()


# ---- faults --------------------------------------------------------------------------------------


def test_session_faults(fast_emu, control_dir, tmp_path):
    """An idle drop or end reconnects transparently; a mid-command drop fails saying the command may have run
    (it did), and the next task works; 20 ms per message is still exact."""
    home = sandbox(fast_emu, TASKS['faulty'])
    (home / 'mid-command.txt').unlink(missing_ok=True)
    inventory = write_inventory(tmp_path, {'faulty': conn_host('faulty', ansible_pipelining=True)})
    run = ansible_playbook(fast_emu, 'connection_faults.yml', '-i', str(inventory), extra_env=run_env(control_dir),
                           extra_vars={'admin': admin_url(fast_emu), 'home': str(home)})
    assert run.rc == 0, run.output
    assert ok(run, 'first command')['stdout'] == 'first\n'
    assert ok(run, 'after the idle drop')['stdout'] == 'after-drop\n'
    assert ok(run, 'after the idle end')['stdout'] == 'after-end\n'
    dropped = run.record('dropped mid-command')
    assert dropped['status'] == 'failed', dropped
    assert 'may have run' in dropped['result']['msg'], dropped
    assert 'SessionDropped' in dropped['result']['msg'] or 'lost' in dropped['result']['msg'], dropped
    # It had run: the file is there; the next task opened a new session and works.
    assert ok(run, 'after the mid-command drop')['stdout'].startswith('started\n')
    raw = ok(run, 'raw with latency')
    assert (raw['stdout'], raw['stderr']) == ('lat\r\n\n', 'e\n')
    assert ok(run, 'module with latency')['stdout'] == '\n'.join(str(i) for i in range(1, 2001))
    assert (home / 'latency.txt').read_text() == 'L' * 100000
    counters = json.loads(ok(run, 'calls')['content'])
    channel = counters['ws']['aws-ecs-exec']
    # Sessions: first, after the idle drop, after the idle end, after reset, after the mid-command drop, after reset.
    assert counters['calls']['aws-ecs']['ExecuteCommand'] == 6, counters
    assert channel['drops'] == 2, channel
    assert 'frames_invalid' not in channel
    assert broker_stats(control_dir) == []


def test_unreachable_targets(fast_emu, control_dir, tmp_path):
    """Wrong credentials and a task without ECS Exec: UNREACHABLE, with the code and what to do."""
    inventory = write_inventory(tmp_path, {
        'badcreds': conn_host('pipe', ansible_aws_secret_access_key='not/the/secret/key/at/all/00000000000'),
        'noexec': {'ansible_aws_ecs_task': NO_EXEC, 'ansible_aws_ecs_cluster': 'demo'},
    })
    run = ansible_adhoc(fast_emu, 'ansible.builtin.raw', 'echo never', '-i', str(inventory), hosts='target', extra_env=run_env(control_dir))
    assert run.rc == 4, run.output
    bad = run.record('ansible.builtin.raw', 'badcreds')
    assert bad['status'] == 'unreachable', bad
    assert 'InvalidSignatureException' in bad['result']['msg'] and 'secret key' in bad['result']['msg'], bad
    noexec = run.record('ansible.builtin.raw', 'noexec')
    assert noexec['status'] == 'unreachable', noexec
    assert 'ExecuteCommandNotEnabled' in noexec['result']['msg'] and '--enable-execute-command' in noexec['result']['msg'], noexec
    assert 'not/the/secret' not in run.stdout + run.stderr
    assert fast_emu.calls('aws-ecs', 'ExecuteCommand') == 0
    assert broker_stats(control_dir) == []


# ---- the broker ----------------------------------------------------------------------------------


def test_broker_is_private_and_persists(fast_emu, control_dir, tmp_path):
    """The control dir is 0700, the socket private, no credential on the broker's command line; a second run
    reuses the session; connection vars stay out of -v output (as ansible-core's suite checks)."""
    temporary = {'AWS_ACCESS_KEY_ID': 'ASIAEMULATOR00000002', 'AWS_SECRET_ACCESS_KEY': 'emulator/secret/key/for/tests/only00002',
                 'AWS_SESSION_TOKEN': 'emulator-session-token-0002'}
    inventory = write_inventory(tmp_path, {'broker': conn_host('broker')})
    for attempt in (1, 2):
        run = ansible_adhoc(fast_emu, 'ansible.builtin.raw', f'echo run-{attempt}', '-i', str(inventory), hosts='target',
                            extra_env=run_env(control_dir, **temporary))
        assert run.rc == 0, run.output
        assert run.result('ansible.builtin.raw')['stdout'] == f'run-{attempt}\n'
    # ControlPersist across ansible runs: one session served both.
    assert fast_emu.calls('aws-ecs', 'ExecuteCommand') == 1
    assert stat.S_IMODE(control_dir.stat().st_mode) == 0o700
    sockets = list(control_dir.glob('*.sock'))
    assert len(sockets) == 1
    assert stat.S_ISSOCK(sockets[0].stat().st_mode) and stat.S_IMODE(sockets[0].stat().st_mode) & 0o077 == 0
    (stats,) = broker_stats(control_dir)
    assert stats['sessions_opened'] == 1 and stats['commands'] >= 2
    cmdline = Path(f'/proc/{stats["pid"]}/cmdline').read_bytes()
    assert b'broker' in cmdline
    for secret in temporary.values():
        assert secret.encode() not in cmdline
    assert os.stat(f'/proc/{stats["pid"]}').st_uid == os.getuid()

    # ansible-core's suite: connection variables do not appear in -v output.
    quiet = ansible_adhoc(fast_emu, 'ansible.builtin.set_fact', 'testing=value', '-v', '-i', str(inventory), hosts='target',
                          extra_env=run_env(control_dir))
    assert quiet.rc == 0, quiet.output
    assert 'ansible_aws_ecs_task' not in quiet.stdout and TASKS['broker'] not in quiet.stdout

    pids = stop_brokers(control_dir)
    assert pids == [stats['pid']]
    assert not alive(stats['pid']) and not list(control_dir.glob('*.sock'))
