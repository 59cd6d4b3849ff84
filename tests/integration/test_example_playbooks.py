# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The example playbooks of playbooks/ run against the emulator as shipped, with the demo inventory.

Each example runs as its header says (``ansible-playbook -i playbooks/inventory playbooks/NAME.yml``, which is what
``make demo PLAYBOOK=playbooks/NAME.yml`` runs) against an emulator of its own on the default world, so the
sandboxes start empty and nothing another test did can change a result. Each test then checks what the example is
there to show: registered outputs, idempotence, files in the targets' sandboxes, fetched files, become. Every run has
its own CLOUDEXEC_CONTROL_DIR, whose brokers are stopped afterwards.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from cloudexec_emulator.testing import start_emulator

from helpers import AnsibleRun, BIN_DIR, ansible_env, ansible_playbook, plain

REPO = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO / 'playbooks'
INVENTORY = EXAMPLES_DIR / 'inventory'
# Examples whose runs are tested elsewhere: demo.yml by test_awx_runner.py, fleet_run.yml by its job slicing test.
TESTED_ELSEWHERE = {'demo.yml', 'fleet_run.yml'}

API_TASK = '2a1b2c3d4e5f60718293a4b5c6d7e8f9'
WEB_GROUP, API_GROUP = 'eci-bp1demo00000000001', 'eci-bp1demo00000000002'
WEB_01, DB_01, LEGACY_01 = 'i-bp1demo000000000001', 'i-bp1demo000000000002', 'i-bp1demo000000000003'
# The hosts each connection example reaches, with their sandbox (relative to <state_dir>/sandboxes) and the
# `instance` line its template writes.
CONNECTION_HOSTS = {
    'connection_aws_ecs.yml': ('cloudexec.core.aws_ecs', {
        'demo-web-web': ('aws-ecs/1f0e1c2d3b4a59687766554433221100/web', '1f0e1c2d3b4a59687766554433221100'),
        'staging-web-web': ('aws-ecs/4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a/web', '4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a'),
    }),
    'connection_ali_eci.yml': ('cloudexec.core.ali_eci', {
        'web-1-web': (f'ali-eci/{WEB_GROUP}/web', f'{WEB_GROUP}/web'),
        'api-1-app': (f'ali-eci/{API_GROUP}/app', f'{API_GROUP}/app'),
        'api-1-sidecar': (f'ali-eci/{API_GROUP}/sidecar', f'{API_GROUP}/sidecar'),
    }),
    'connection_aws_ssm.yml': ('cloudexec.core.aws_ssm', {
        'ssm-banner-1': ('aws-ssm/i-0a1b2c3d4e5f60704/home/ssm-user', 'i-0a1b2c3d4e5f60704'),
        'ssm-app-1': ('aws-ssm/i-0a1b2c3d4e5f60705/home/ec2-user', 'i-0a1b2c3d4e5f60705'),   # Run As
        'ssm-onprem-1': ('aws-ssm/mi-0a1b2c3d4e5f60801/home/ssm-user', 'mi-0a1b2c3d4e5f60801'),
    }),
    'connection_ali_assist.yml': ('cloudexec.core.ali_assist', {
        'web-01': (f'ali-ecs/{WEB_01}', WEB_01),
        'db-01': (f'ali-ecs/{DB_01}', DB_01),
    }),
}


@pytest.fixture(scope='module')
def shipped(tmp_path_factory):
    """An emulator of this module's own on the default world, exactly as shipped."""
    directory = tmp_path_factory.mktemp('examples')
    with start_emulator(state_dir=directory / 'state') as info:
        yield info


def sandbox(emu, relative: str) -> Path:
    return Path(emu['state_dir']) / 'sandboxes' / relative


def hosts_of(run: AnsibleRun, task: str, status: str = 'ok') -> set[str]:
    return {r['host'] for r in run.results if r['task'] == task and r['status'] == status}


def run_example(emu, name: str, tmp_path: Path, control_dir: Path) -> AnsibleRun:
    """The example as its header says to run it, fetched files going to tmp_path/fetched."""
    run = ansible_playbook(emu, EXAMPLES_DIR / name, '-i', str(INVENTORY), timeout=420, cwd=REPO,
                           extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir), 'CLOUDEXEC_DEMO_OUT': str(tmp_path / 'fetched')})
    assert run.rc == 0, run.output
    assert run.stats, run.output
    for host, stats in run.stats.items():
        assert stats['failures'] == 0 and stats['unreachable'] == 0, (host, stats, run.output)
    return run


# ---- the task module examples ----------------------------------------------------------------------


def check_aws_ecs_exec(run: AnsibleRun, emu, fetched: Path) -> None:  # pylint: disable=unused-argument
    assert set(run.stats) == {'localhost'}
    assert run.result('Preflight - can ECS Exec reach the container? (stop here if not)')['ready'] is True
    batch = run.result('The same check on a task without ECS Exec reports what to fix, without failing')
    assert batch['ready'] is False and [p.split(':')[0] for p in batch['problems']] == ['exec_enabled'], batch

    hello = run.result('A shell command line, stdout and stderr kept apart')
    assert (hello['rc'], hello['stderr'], hello['container_name']) == (0, 'a warning\n', 'app'), hello
    assert re.fullmatch(r'hello from \S+\n', hello['stdout']), hello
    assert run.result('An argv list needs no quoting')['stdout'] == "two words|it's|$HOME|"

    app = sandbox(emu, f'aws-ecs/{API_TASK}/app')
    first, second = run.result('A one-off migration (runs once; later runs report ok, not changed)')['results']
    assert first['changed'] and first['stdout'] == 'migrated\n', first
    assert not second['changed'] and 'rc' not in second and '.migrated exists' in second['msg'], second
    # chdir: the migration ran in releases/v2 and wrote its working directory there.
    assert (app / 'releases' / 'v2' / '.migrated').read_text().strip().endswith('/releases/v2')

    dry_run = run.result('Check mode - would this run?')
    assert dry_run['changed'] and 'stdout' not in dry_run, dry_run
    assert not (app / 'check-mode-was-here').exists()
    handled = run.record('A non-zero exit code handled with failed_when')
    assert handled['status'] == 'ok' and handled['result']['rc'] == 1, handled
    assert run.result('Report it')['msg'] == 'no ERROR lines'


def check_ali_eci_exec(run: AnsibleRun, emu, fetched: Path) -> None:  # pylint: disable=unused-argument
    assert set(run.stats) == {'localhost'}
    assert run.result('Preflight - can ExecContainerCommand reach the container? (stop here if not)')['ready'] is True
    job = run.result('A finished group is reported with its remedy, without failing the task')
    assert job['ready'] is False and any(p.startswith('group_running:') for p in job['problems']), job

    hello = run.result('By group id, in sync mode')
    assert (hello['mode'], hello['rc'], hello['stderr'], hello['container_group_id']) == ('sync', 0, 'a warning\n', WEB_GROUP)
    assert re.fullmatch(r'hello from \S+\n', hello['stdout']), hello
    script = run.result('By group name, in stream mode, with a script on stdin')
    assert (script['mode'], script['stdout'], script['container_group_id']) == ('stream', '2\n', API_GROUP), script
    settings = run.result('An argv list, in the conf directory, once')
    assert (settings['mode'], settings['stdout'], settings['rc']) == ('sync', '2\n', 0), settings

    app = sandbox(emu, f'ali-eci/{API_GROUP}/app')
    assert (app / 'conf' / 'app.ini').read_text() == 'workers = 4\nlisten = 0.0.0.0:8080\n'
    assert (app / 'conf' / 'checked').read_text() == '2\n'
    # Check mode ran nothing: conf/ is still there, and grep found no debug line in it (rc 1, not a failure).
    assert run.result('Check mode - would this run?')['changed'] is True
    assert run.record('A non-zero exit code handled with failed_when')['result']['rc'] == 1
    assert run.result('Report it')['msg'] == 'debug is off'


def check_ali_ecs_command(run: AnsibleRun, emu, fetched: Path) -> None:  # pylint: disable=unused-argument
    assert set(run.stats) == {'localhost'}
    preflight = {r['instance_id']: r['ready'] for r in run.result('Preflight - which instances can run commands?')['results']}
    assert preflight == {WEB_01: True, DB_01: True, LEGACY_01: False}
    facts = run.result('Keep the ready ones, and say why the others are left out')['ansible_facts']
    assert facts['targets'] == [WEB_01, DB_01]
    assert list(facts['left_out']) == [LEGACY_01] and any('assistant_online' in p for p in facts['left_out'][LEGACY_01])

    rollout = run.result('Store a deploy token on every target, passed as a masked parameter')
    assert [(r['instance_id'], r['status'], r['exit_code']) for r in rollout['results']] == [(WEB_01, 'Success', 0), (DB_01, 'Success', 0)]
    assert [r['output'] for r in rollout['results']] == ['web-01 runs 2024.06.1, token stored\n', 'db-01 runs 2024.06.1, token stored\n']
    for instance in (WEB_01, DB_01):
        app = sandbox(emu, f'ali-ecs/{instance}/srv/app')   # working_dir /srv/app, inside the instance's sandbox
        assert (app / 'RELEASE').read_text() == '2024.06.1\n'
        assert (app / '.token').read_text() == 'not-a-real-token'
        assert (app / '.token').stat().st_mode & 0o777 == 0o600
    assert 'not-a-real-token' not in run.stdout + run.stderr   # parameters are no_log

    job = run.result('Start a longer job without waiting')
    assert job['invoke_id'] and 'results' not in job, job
    info = run.result('Poll the invocation until every instance has finished')
    assert info['attempts'] >= 1, info
    invocation = info['invocations'][0]
    assert invocation['invoke_id'] == job['invoke_id'] and invocation['invocation_status'] == 'Success', invocation
    assert {r['instance_id']: r['output'] for r in invocation['results']} == {WEB_01: 'verified 2024.06.1\n', DB_01: 'verified 2024.06.1\n'}

    partial = run.record('A health check that fails on one instance (db-01 plays the broken one), handled by the play')
    assert partial['status'] == 'ok', partial
    assert partial['result']['counts'] == {'Success': 1, 'Failed': 1} and partial['result']['failed_instances'] == [DB_01]
    failed = next(r for r in partial['result']['results'] if r['instance_id'] == DB_01)
    assert (failed['exit_code'], failed['error_code']) == (3, 'ExitCodeNonzero'), failed


SSM_WEB_1, SSM_WEB_2, SSM_ONPREM = 'i-0a1b2c3d4e5f60701', 'i-0a1b2c3d4e5f60702', 'mi-0a1b2c3d4e5f60801'


def check_aws_ssm_command(run: AnsibleRun, emu, fetched: Path) -> None:  # pylint: disable=unused-argument
    assert set(run.stats) == {'localhost'}
    preview = run.result('Check mode - which nodes would a fleet-wide command reach?')
    assert 'nothing was sent' in preview['msg'] and len(preview['targets']) >= 5
    install = run.result('Install the release in /srv/app on two instances and the on-premises server')
    assert [(r['instance_id'], r['status'], r['stdout']) for r in install['results']] == [
        (node, 'Success', 'installed 2024.06.1\n') for node in (SSM_WEB_1, SSM_WEB_2, SSM_ONPREM)]
    for node in (SSM_WEB_1, SSM_WEB_2, SSM_ONPREM):
        assert sandbox(emu, f'aws-ssm/{node}/srv/app/RELEASE').read_text() == '2024.06.1\n'   # inside the node's sandbox
    restart = run.result('Restart the app on the web fleet, one node at a time')
    assert restart['instance_ids'] == [SSM_WEB_1, SSM_WEB_2] and restart['counts'] == {'Success': 2}
    check = run.record('A check that fails, handled by the play')
    assert check['status'] == 'ok' and (check['result']['rc'], check['result']['stderr']) == (1, 'no debug line in app.conf\n')
    report = run.result('A report larger than SSM returns')
    assert report['truncated'] == {'stdout': True, 'stderr': False} and len(report['stdout']) == 24000
    info = run.result('Poll the command until every node has finished')
    assert info['command']['command_id'] == run.result('Start a longer job without waiting')['command_id']
    assert [r['stdout'] for r in info['results']] == ['verified 2024.06.1\n'] * 2


# ---- the connection examples -----------------------------------------------------------------------


def check_connection(name: str) -> Callable[[AnsibleRun, Any, Path], None]:
    connection, hosts = CONNECTION_HOSTS[name]

    def check(run: AnsibleRun, emu, fetched: Path) -> None:
        assert set(run.stats) == set(hosts), run.stats
        facts_task = next(r['task'] for r in run.results if r['task'].startswith('Facts come from'))
        assert hosts_of(run, facts_task) == set(hosts)
        assert hosts_of(run, 'Restart the app', 'ok') == set(hosts)   # the handler ran, once per host
        for host, (relative, instance) in hosts.items():
            assert run.result('A command (no shell)', host)['stdout'].startswith('Deployed by Ansible through ')
            assert run.result('A shell line ($(...), redirections, &&)', host)['stdout'] == '5 settings in 11 lines'
            # The fetched files: what the template and the become'd handler wrote in the target.
            conf = (fetched / host / 'webapp' / 'app.conf').read_text()
            assert f'host = {host}\n' in conf and f'instance = {instance}\n' in conf, conf
            assert f'connection = {connection}\n' in conf and 'listen = 0.0.0.0:8080\n' in conf, conf
            assert re.fullmatch(r'restarted as \S+ with 5 settings\n', (fetched / host / 'webapp' / 'restart.log').read_text())
            target = sandbox(emu, relative)
            assert (target / 'webapp' / 'app.conf').read_text() == conf
            assert (target / 'webapp' / 'app.conf').stat().st_mode & 0o777 == 0o640
            # become went through sudo (the emulator's stand-in logs each call).
            assert 'sudo user=root' in (target / '.cloudexec-become.log').read_text()

    return check


EXAMPLES: dict[str, Callable[[AnsibleRun, Any, Path], None]] = {
    'aws_ecs_exec.yml': check_aws_ecs_exec,
    'ali_eci_exec.yml': check_ali_eci_exec,
    'ali_ecs_command.yml': check_ali_ecs_command,
    'aws_ssm_command.yml': check_aws_ssm_command,
    **{name: check_connection(name) for name in CONNECTION_HOSTS},
}


@pytest.mark.parametrize('name', sorted(EXAMPLES))
def test_example(shipped, tmp_path, control_dir, name):
    """The example runs cleanly and does what it shows; the sessions it opened are closed when it ends."""
    run = run_example(shipped, name, tmp_path, control_dir)
    EXAMPLES[name](run, shipped, tmp_path / 'fetched')
    # The session examples end with meta: reset_connection, which stops their brokers.
    deadline = time.monotonic() + 10
    while sorted(control_dir.glob('*.sock')) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not sorted(control_dir.glob('*.sock')), 'brokers left running'


def test_every_example_is_tested_and_says_how_to_run_it():
    """A new playbooks/*.yml needs a test here (or elsewhere), and each tells how to run it against the emulator."""
    names = {path.name for path in EXAMPLES_DIR.glob('*.yml')}
    assert names == set(EXAMPLES) | TESTED_ELSEWHERE
    for name in EXAMPLES:
        header = (EXAMPLES_DIR / name).read_text().split('\n- name:')[0]
        assert f'#   make demo PLAYBOOK=playbooks/{name}\n' in header, name
        assert f'#   ansible-playbook -i playbooks/inventory playbooks/{name}\n' in header, name


def test_demo_inventory_keeps_clouds_apart(shipped):
    """playbooks/inventory: one group per cloud, no Alibaba host in the aws_ecs group, each group's group_vars."""
    proc = subprocess.run([str(BIN_DIR / 'ansible-inventory'), '-i', str(INVENTORY), '--list'], env=ansible_env(shipped),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    inventory = plain(json.loads(proc.stdout))
    assert inventory['aws_ecs']['hosts'] == ['demo-web-web', 'demo-api-app', 'demo-api-sidecar', 'staging-web-web']
    assert inventory['ali_eci']['hosts'] == ['web-1-web', 'api-1-app', 'api-1-sidecar']
    assert inventory['ali_ecs']['hosts'] == ['web-01', 'db-01', 'win-01']
    hostvars = inventory['_meta']['hostvars']
    for group, connection in (('aws_ecs', 'aws_ecs'), ('ali_eci', 'ali_eci'), ('ali_ecs', 'ali_assist')):
        for host in inventory[group]['hosts']:
            assert hostvars[host]['ansible_connection'] == f'cloudexec.core.{connection}', host
            assert hostvars[host]['ansible_python_interpreter'] == '{{ ansible_playbook_python }}', host
    assert all(hostvars[host].get('ansible_pipelining') is True for host in inventory['ali_ecs']['hosts'])
