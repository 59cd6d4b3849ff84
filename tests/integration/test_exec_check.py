# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preflight modules (aws_ecs_exec_check, ali_exec_check) and the exec_ready role, through real Ansible runs.

The emulator's world models each cause a check looks for (a task without exec, an old platform or agent, a task role
without the ssmmessages permissions, a caller denied ecs:ExecuteCommand, a stopped instance, an old Cloud Assistant
agent...), so every check is seen both passing and failing. The cases run in one playbook per cloud (one ansible-playbook
start, one module call per case); the parametrized tests then look at each case's result.

The exec_ready role's molecule scenario (roles/exec_ready/molecule/default) runs here too: with ``molecule test`` when
molecule is installed (tests/requirements.txt has it), else as its playbooks with ansible-playbook.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator

from helpers import ansible_adhoc, ansible_playbook, molecule_test

DEFAULT_WORLD = Path(__file__).resolve().parents[1] / 'emulator' / 'cloudexec_emulator' / 'worlds' / 'default.yml'
ROLE_DIR = Path(__file__).resolve().parents[2] / 'roles' / 'exec_ready'
ACCOUNT = '123456789012'

# Default world targets.
WEB = '1f0e1c2d3b4a59687766554433221100'
API = '2a1b2c3d4e5f60718293a4b5c6d7e8f9'
NO_EXEC = '3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f'
LEGACY = '5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b'
ECI_WEB, ECI_API, ECI_JOB = 'eci-bp1demo00000000001', 'eci-bp1demo00000000002', 'eci-bp1demo00000000003'
I_WEB, I_OFFLINE, I_STOPPED, I_WINDOWS = 'i-bp1demo000000000001', 'i-bp1demo000000000003', 'i-bp1demo000000000004', 'i-bp1demo000000000005'

# Targets this test adds, one per cause.
GOOD = 'a0000000000000000000000000000001'
OLD_PV = 'a0000000000000000000000000000002'
EC2_OLD = 'a0000000000000000000000000000003'
EC2_NEW = 'a0000000000000000000000000000004'
NO_ROLE = 'a0000000000000000000000000000005'
DENIED_ROLE = 'a0000000000000000000000000000006'
STOPPED = 'a0000000000000000000000000000007'
PRIVATE = 'a0000000000000000000000000000008'
AUDITED = 'a0000000000000000000000000000009'
ECI_NOT_READY, ECI_WAITING = 'eci-preflightnotready1', 'eci-preflightwaiting01'
I_OLD_AGENT, I_NO_SM = 'i-preflightoldagent01', 'i-preflightnosm00001'

NO_EXEC_KEY = {'access_key': 'AKIAPREFLIGHTNOEXEC1', 'secret_key': 'preflight/secret/noexec'}
NO_IAM_KEY = {'access_key': 'AKIAPREFLIGHTNOIAM01', 'secret_key': 'preflight/secret/noiam'}
BAD_AWS_SECRET = {'access_key': 'AKIAEMULATOR00000001', 'secret_key': 'not-the-secret'}
BAD_ALI_SECRET = {'access_key': 'LTAIEMULATOR0000000001', 'secret_key': 'not-the-secret'}


def _world() -> dict[str, Any]:
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['aws']['exec'] = {'agent_start_ms': 10, 'output_delay_ms': 20}
    world['aws']['credentials'] += [
        {**NO_EXEC_KEY, 'principal': f'arn:aws:iam::{ACCOUNT}:user/no-exec', 'deny': ['ecs:ExecuteCommand']},
        {**NO_IAM_KEY, 'principal': f'arn:aws:iam::{ACCOUNT}:user/no-iam',
         'deny': ['iam:SimulatePrincipalPolicy', 'ec2:DescribeNetworkInterfaces']},
    ]
    world['aws']['vpc_endpoints'] = [{'vpc_id': 'vpc-private0001', 'service_name': 'com.amazonaws.us-east-1.ssmmessages'}]
    world['aws']['clusters'] += [
        {'name': 'preflight', 'tasks': [
            {'id': GOOD, 'family': 'good', 'public_ip': '203.0.113.10', 'containers': [{'name': 'app'}]},
            {'id': OLD_PV, 'family': 'oldpv', 'platform_version': '1.3.0'},
            {'id': EC2_OLD, 'family': 'ec2old', 'launch_type': 'EC2', 'ecs_agent_version': '1.50.1'},
            {'id': EC2_NEW, 'family': 'ec2new', 'launch_type': 'EC2', 'ecs_agent_version': '1.51.0'},
            {'id': NO_ROLE, 'family': 'norole', 'task_role_arn': None},
            {'id': DENIED_ROLE, 'family': 'denied', 'task_role_permissions_ok': False},
            {'id': STOPPED, 'family': 'stopped', 'last_status': 'STOPPED', 'desired_status': 'STOPPED'},
            {'id': PRIVATE, 'family': 'private', 'vpc_id': 'vpc-private0001'},
        ]},
        {'name': 'audited', 'kms_key_id': f'arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd', 'exec_logging': 'OVERRIDE',
         'tasks': [{'id': AUDITED, 'family': 'audited'}]},
    ]
    world['alicloud']['container_groups'] += [
        {'id': ECI_NOT_READY, 'name': 'notready-1', 'containers': [{'name': 'app', 'ready': False, 'restart_count': 3}]},
        {'id': ECI_WAITING, 'name': 'waiting-1', 'containers': [{'name': 'app', 'state': 'Waiting'}]},
    ]
    world['alicloud']['instances'] += [
        {'id': I_OLD_AGENT, 'name': 'old-agent', 'cloud_assistant': {'online': True, 'version': '1.0.2.569'}},
        {'id': I_NO_SM, 'name': 'no-sm', 'cloud_assistant': {'session_manager': False}},
    ]
    return world


@pytest.fixture(scope='module')
def preflight_emu(tmp_path_factory):
    """An emulator whose world has one target per cause."""
    directory = tmp_path_factory.mktemp('exec-check')
    path = directory / 'world.yml'
    path.write_text(yaml.safe_dump(_world()))
    with start_emulator(world=path, state_dir=directory / 'state') as info:
        yield info


# ---- the cases: (id, module arguments, check, expected status, expected ready or None) ----------------------------

AWS_CASES = [
    ('credentials-pass', {'cluster': 'preflight', 'task': GOOD}, 'credentials', 'pass', True),
    ('credentials-fail', {'cluster': 'preflight', 'task': GOOD, **BAD_AWS_SECRET}, 'credentials', 'fail', False),
    ('cluster-pass', {'cluster': 'preflight', 'task': GOOD}, 'cluster', 'pass', True),
    ('cluster-fail', {'cluster': 'nope', 'task': GOOD}, 'cluster', 'fail', False),
    ('task-fail', {'cluster': 'preflight', 'task': '0' * 32}, 'task', 'fail', False),
    ('task_running-pass', {'cluster': 'preflight', 'task': GOOD}, 'task_running', 'pass', True),
    ('task_running-fail', {'cluster': 'preflight', 'task': STOPPED}, 'task_running', 'fail', False),
    ('exec_enabled-pass', {'cluster': 'demo', 'task': WEB}, 'exec_enabled', 'pass', True),
    ('exec_enabled-fail', {'cluster': 'demo', 'task': NO_EXEC}, 'exec_enabled', 'fail', False),
    ('container-pass', {'cluster': 'demo', 'task': API, 'container': 'app'}, 'container', 'pass', True),
    ('container-fail-unnamed', {'cluster': 'demo', 'task': API}, 'container', 'fail', False),
    ('container-fail-wrong', {'cluster': 'demo', 'task': API, 'container': 'nope'}, 'container', 'fail', False),
    ('agent_running-pass', {'cluster': 'demo', 'task': WEB}, 'agent_running', 'pass', True),
    ('agent_running-fail', {'cluster': 'staging', 'task': LEGACY}, 'agent_running', 'fail', False),
    ('platform_version-pass', {'cluster': 'preflight', 'task': GOOD}, 'platform_version', 'pass', True),
    ('platform_version-fail', {'cluster': 'preflight', 'task': OLD_PV}, 'platform_version', 'fail', False),
    ('ecs_agent-pass', {'cluster': 'preflight', 'task': EC2_NEW}, 'platform_version', 'pass', None),
    ('ecs_agent-fail', {'cluster': 'preflight', 'task': EC2_OLD}, 'platform_version', 'fail', False),
    ('task_role-pass', {'cluster': 'preflight', 'task': GOOD}, 'task_role', 'pass', True),
    ('task_role-fail', {'cluster': 'preflight', 'task': NO_ROLE}, 'task_role', 'fail', False),
    ('task_role_permissions-pass', {'cluster': 'preflight', 'task': GOOD}, 'task_role_permissions', 'pass', True),
    ('task_role_permissions-fail', {'cluster': 'preflight', 'task': DENIED_ROLE}, 'task_role_permissions', 'fail', False),
    ('task_role_permissions-unknown', {'cluster': 'preflight', 'task': GOOD, **NO_IAM_KEY}, 'task_role_permissions', 'unknown', True),
    ('exec_logging-pass', {'cluster': 'preflight', 'task': GOOD}, 'exec_logging', 'pass', True),
    ('exec_logging-warn', {'cluster': 'audited', 'task': AUDITED}, 'exec_logging', 'warn', True),
    ('exec_kms-pass', {'cluster': 'preflight', 'task': GOOD}, 'exec_kms', 'pass', True),
    ('exec_kms-warn', {'cluster': 'audited', 'task': AUDITED}, 'exec_kms', 'warn', True),
    ('network_path-pass-public-ip', {'cluster': 'preflight', 'task': GOOD}, 'network_path', 'pass', True),
    ('network_path-pass-endpoint', {'cluster': 'preflight', 'task': PRIVATE}, 'network_path', 'pass', True),
    ('network_path-warn', {'cluster': 'demo', 'task': WEB}, 'network_path', 'warn', True),
    ('network_path-unknown', {'cluster': 'preflight', 'task': GOOD, **NO_IAM_KEY}, 'network_path', 'unknown', True),
    ('caller_permission-pass', {'cluster': 'preflight', 'task': GOOD}, 'caller_permission', 'pass', True),
    ('caller_permission-fail', {'cluster': 'preflight', 'task': GOOD, **NO_EXEC_KEY}, 'caller_permission', 'fail', False),
    ('caller_permission-unknown', {'cluster': 'preflight', 'task': GOOD, **NO_IAM_KEY}, 'caller_permission', 'unknown', True),
]

ALI_CASES = [
    ('eci-credentials-pass', {'service': 'eci', 'container_group_id': ECI_WEB}, 'credentials', 'pass', True),
    ('eci-credentials-fail', {'service': 'eci', 'container_group_id': ECI_WEB, **BAD_ALI_SECRET}, 'credentials', 'fail', False),
    ('group_exists-pass', {'service': 'eci', 'container_group_name': 'web-1'}, 'group_exists', 'pass', True),
    ('group_exists-fail', {'service': 'eci', 'container_group_id': 'eci-nope0000000000001'}, 'group_exists', 'fail', False),
    ('group_running-pass', {'service': 'eci', 'container_group_id': ECI_WEB}, 'group_running', 'pass', True),
    ('group_running-fail', {'service': 'eci', 'container_group_id': ECI_JOB}, 'group_running', 'fail', False),
    ('eci-container-pass', {'service': 'eci', 'container_group_id': ECI_API, 'container_name': 'app'}, 'container', 'pass', True),
    ('eci-container-fail-unnamed', {'service': 'eci', 'container_group_id': ECI_API}, 'container', 'fail', False),
    ('eci-container-fail-wrong', {'service': 'eci', 'container_group_id': ECI_API, 'container_name': 'nope'}, 'container', 'fail', False),
    ('container_running-pass', {'service': 'eci', 'container_group_id': ECI_WEB}, 'container_running', 'pass', True),
    ('container_running-fail', {'service': 'eci', 'container_group_id': ECI_WAITING}, 'container_running', 'fail', False),
    ('container_ready-pass', {'service': 'eci', 'container_group_id': ECI_WEB}, 'container_ready', 'pass', True),
    ('container_ready-warn', {'service': 'eci', 'container_group_id': ECI_NOT_READY}, 'container_ready', 'warn', True),
    ('ecs-credentials-pass', {'service': 'ecs', 'instance_id': I_WEB}, 'credentials', 'pass', True),
    ('ecs-credentials-fail', {'service': 'ecs', 'instance_id': I_WEB, **BAD_ALI_SECRET}, 'credentials', 'fail', False),
    ('instance_exists-pass', {'service': 'ecs', 'instance_id': I_WEB}, 'instance_exists', 'pass', True),
    ('instance_exists-fail', {'service': 'ecs', 'instance_id': 'i-nope000000000000001'}, 'instance_exists', 'fail', False),
    ('instance_running-pass', {'service': 'ecs', 'instance_id': I_WEB}, 'instance_running', 'pass', True),
    ('instance_running-fail', {'service': 'ecs', 'instance_id': I_STOPPED}, 'instance_running', 'fail', False),
    ('assistant_online-pass', {'service': 'ecs', 'instance_id': I_WEB}, 'assistant_online', 'pass', True),
    ('assistant_online-fail', {'service': 'ecs', 'instance_id': I_OFFLINE}, 'assistant_online', 'fail', False),
    ('assistant_version-pass', {'service': 'ecs', 'instance_id': I_WEB}, 'assistant_version', 'pass', True),
    ('assistant_version-fail', {'service': 'ecs', 'instance_id': I_OLD_AGENT}, 'assistant_version', 'fail', False),
    ('assistant_version-fail-minimum', {'service': 'ecs', 'instance_id': I_WEB, 'min_agent_version': '9.0'}, 'assistant_version', 'fail', False),
    ('os_type-pass', {'service': 'ecs', 'instance_id': I_WEB}, 'os_type', 'pass', True),
    ('os_type-fail', {'service': 'ecs', 'instance_id': I_WINDOWS}, 'os_type', 'fail', False),
    ('os_type-pass-windows', {'service': 'ecs', 'instance_id': I_WINDOWS, 'command_type': 'RunPowerShellScript'}, 'os_type', 'pass', True),
    ('session_manager-pass', {'service': 'ecs', 'instance_id': I_WEB}, 'session_manager', 'pass', True),
    ('session_manager-warn', {'service': 'ecs', 'instance_id': I_NO_SM}, 'session_manager', 'warn', True),
]


def _run_cases(emulator: Any, playbook: str, task: str, cases: list[tuple], *args: str) -> dict[str, dict[str, Any]]:
    items = [{'id': case_id, **arguments} for case_id, arguments, *_rest in cases]
    run = ansible_playbook(emulator, playbook, *args, extra_vars={'cases': items}, timeout=900)
    assert run.rc == 0, run.output
    results = run.result(task)['results']
    assert len(results) == len(cases), run.output
    return {item['item']['id']: item for item in results}


@pytest.fixture(scope='module')
def aws_results(preflight_emu):
    return _run_cases(preflight_emu, 'exec_check_aws.yml', 'aws checks', AWS_CASES)


@pytest.fixture(scope='module')
def ali_results(preflight_emu):
    return _run_cases(preflight_emu, 'exec_check_ali.yml', 'ali checks', ALI_CASES)


def _check(result: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in result['checks'] if c['name'] == name]
    assert len(found) == 1, result
    return found[0]


def _assert_case(result: dict[str, Any], check: str, status: str, ready: bool | None) -> None:
    assert not result.get('failed'), result
    assert result['changed'] is False
    seen = _check(result, check)
    assert seen['status'] == status, (seen, result['msg'])
    if status in ('fail', 'warn', 'unknown'):
        assert seen['remedy'] or status == 'unknown', seen
    if status == 'fail':
        assert any(line.startswith(f'{check}: ') for line in result['problems']), result['problems']
    if ready is not None:
        assert result['ready'] is ready, result['msg']
    assert {c['status'] for c in result['checks']} <= {'pass', 'fail', 'warn', 'unknown'}


@pytest.mark.parametrize('case_id, check, status, ready', [(c[0], c[2], c[3], c[4]) for c in AWS_CASES], ids=[c[0] for c in AWS_CASES])
def test_aws_check(aws_results, case_id, check, status, ready):
    """Each ECS Exec check, passing and failing, on the target the world gives that cause."""
    _assert_case(aws_results[case_id], check, status, ready)


@pytest.mark.parametrize('case_id, check, status, ready', [(c[0], c[2], c[3], c[4]) for c in ALI_CASES], ids=[c[0] for c in ALI_CASES])
def test_ali_check(ali_results, case_id, check, status, ready):
    """Each ECI and Cloud Assistant check, passing and failing."""
    _assert_case(ali_results[case_id], check, status, ready)


def test_aws_full_list_and_remedies(aws_results):
    """Every check is always reported, in order; a check the failure makes pointless is unknown, naming the failure."""
    names = ['credentials', 'cluster', 'task', 'task_running', 'exec_enabled', 'container', 'agent_running', 'platform_version',
             'task_role', 'task_role_permissions', 'exec_logging', 'exec_kms', 'network_path', 'caller_permission']
    for result in aws_results.values():
        assert [c['name'] for c in result['checks']] == names
    cluster = aws_results['cluster-fail']
    assert _check(cluster, 'task')['status'] == 'unknown'
    assert 'cluster failed' in _check(cluster, 'task')['detail']
    disabled = _check(aws_results['exec_enabled-fail'], 'exec_enabled')
    assert '--enable-execute-command' in disabled['remedy']
    role = _check(aws_results['task_role_permissions-fail'], 'task_role_permissions')
    assert 'ssmmessages:CreateControlChannel' in role['detail'] and 'denied-task-role' in role['remedy']
    assert aws_results['credentials-fail']['ready'] is False
    assert 'InvalidSignatureException' in _check(aws_results['credentials-fail'], 'credentials')['detail']


def test_fail_on_problems(preflight_emu):
    """fail_on_problems turns a failed check into a failed task whose message holds the remedy; a good target passes."""
    cases = [('bad', {'cluster': 'demo', 'task': NO_EXEC, 'fail_on_problems': True}, None, None, None),
             ('good', {'cluster': 'preflight', 'task': GOOD, 'fail_on_problems': True}, None, None, None)]
    items = [{'id': case_id, **arguments} for case_id, arguments, *_rest in cases]
    run = ansible_playbook(preflight_emu, 'exec_check_aws.yml', extra_vars={'cases': items})
    results = {r['item']['id']: r for r in run.result('aws checks')['results']}
    assert results['bad']['failed'] is True
    assert 'exec_enabled' in results['bad']['msg'] and '--enable-execute-command' in results['bad']['msg']
    assert not results['good'].get('failed') and results['good']['ready'] is True


@pytest.mark.parametrize('module, args, ready', [
    ('cloudexec.core.aws_ecs_exec_check', {'cluster': 'demo', 'task': NO_EXEC}, False),
    ('cloudexec.core.aws_ecs_exec_check', {'cluster': 'preflight', 'task': GOOD}, True),
    ('cloudexec.core.ali_exec_check', {'service': 'eci', 'container_group_id': ECI_JOB}, False),
    ('cloudexec.core.ali_exec_check', {'service': 'ecs', 'instance_id': I_WEB}, True),
])
def test_check_mode(preflight_emu, module, args, ready):
    """The modules only read: in check mode they run every check the same way."""
    run = ansible_adhoc(preflight_emu, module, args, '--check')
    assert run.rc == 0, run.output
    result = run.result(module)
    assert result['changed'] is False and result['ready'] is ready
    assert len(result['checks']) >= 6


def test_exec_path_messages_point_to_the_checks(preflight_emu):
    """The exec module's refusal names the check module, and the Alibaba exec refusals name ali_exec_check."""
    run = ansible_adhoc(preflight_emu, 'cloudexec.core.aws_ecs_exec', {'cluster': 'staging', 'task': LEGACY, 'command': 'true'})
    assert run.rc != 0
    assert 'cloudexec.core.aws_ecs_exec_check' in run.result('cloudexec.core.aws_ecs_exec')['msg']
    run = ansible_adhoc(preflight_emu, 'cloudexec.core.ali_eci_exec', {'container_group_id': ECI_JOB, 'command': 'true'})
    assert run.rc != 0
    assert 'cloudexec.core.ali_exec_check' in run.result('cloudexec.core.ali_eci_exec')['msg']
    run = ansible_adhoc(preflight_emu, 'cloudexec.core.ali_ecs_command', {'instance_ids': [I_STOPPED], 'content': 'true'})
    assert run.rc != 0
    assert 'cloudexec.core.ali_exec_check' in run.result('cloudexec.core.ali_ecs_command')['msg']


# ---- the exec_ready role ------------------------------------------------------------------------------------------

ROLE = 'cloudexec.core.exec_ready : '


def test_exec_ready_role(preflight_emu, control_dir, tmp_path):
    """Good hosts of each transport pass the checks and the ping; bad ones fail with the remedies and go no further."""
    import sys  # pylint: disable=import-outside-toplevel
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(yaml.safe_dump({'all': {'vars': {'ansible_python_interpreter': sys.executable}, 'children': {
        'ecs_tasks': {'vars': {'ansible_connection': 'cloudexec.core.aws_ecs'}, 'hosts': {
            'aws-good': {'ansible_aws_ecs_cluster': 'preflight', 'ansible_aws_ecs_task': GOOD},
            'aws-bad': {'ansible_aws_ecs_cluster': 'demo', 'ansible_aws_ecs_task': NO_EXEC},
        }},
        'eci': {'vars': {'ansible_connection': 'cloudexec.core.ali_eci'}, 'hosts': {
            'eci-good': {'ansible_host': ECI_WEB, 'exec_ready_ping_method': 'raw'},
            'eci-bad': {'ansible_host': ECI_JOB},
        }},
        'assist': {'vars': {'ansible_connection': 'cloudexec.core.ali_assist'}, 'hosts': {
            'assist-bad': {'ansible_host': I_OFFLINE},
        }},
    }}}))
    run = ansible_playbook(preflight_emu, 'exec_ready.yml', '-i', str(inventory), extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir)},
                           timeout=600)
    assert run.rc != 0, run.output
    stats = run.stats
    for host in ('aws-good', 'eci-good'):
        assert stats[host]['failures'] == 0 and stats[host]['unreachable'] == 0, run.output
        assert run.result('after exec_ready', host)['stdout'].strip() == 'after-exec-ready'
    # aws-good pings with wait_for_connection (the default), eci-good with raw.
    assert run.record(ROLE + 'Ping the host through its connection', 'aws-good')['status'] == 'ok', run.output
    assert run.record(ROLE + 'Run a command through the host\'s connection', 'aws-good')['status'] == 'skipped'
    assert run.result(ROLE + 'Run a command through the host\'s connection', 'eci-good')['stdout'].strip() == 'cloudexec-exec-ready'
    assert run.record(ROLE + 'Ping the host through its connection', 'eci-good')['status'] == 'skipped'
    expected = {'aws-bad': ['exec_enabled', '--enable-execute-command'],
                'eci-bad': ['group_running', 'Wait until the group is Running'],
                'assist-bad': ['assistant_online', 'Start the agent on the instance']}
    for host, words in expected.items():
        assert stats[host]['failures'] == 1, run.output
        record = run.record(ROLE + 'Fail with the remedies', host)
        assert record['status'] == 'failed'
        for word in words:
            assert word in record['result']['msg'], record['result']['msg']
        assert not [r for r in run.results if r['host'] == host and r['task'] == 'after exec_ready']


def test_exec_ready_role_check_mode_and_no_fail(preflight_emu, tmp_path):
    """exec_ready_fail=false keeps the result without failing (and without pinging a host that is not ready); check mode
    runs the (read-only) checks too."""
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(yaml.safe_dump({'all': {'hosts': {
        'aws-bad': {'ansible_connection': 'cloudexec.core.aws_ecs', 'ansible_aws_ecs_cluster': 'demo', 'ansible_aws_ecs_task': NO_EXEC},
    }}}))
    run = ansible_playbook(preflight_emu, 'exec_ready.yml', '-i', str(inventory), '--check', '--limit', 'aws-bad',
                           extra_vars={'exec_ready_fail': False})
    assert run.rc == 0, run.output
    assert run.result(ROLE + 'Run the ECS Exec checks', 'aws-bad')['ready'] is False
    assert run.record(ROLE + 'Fail with the remedies', 'aws-bad')['status'] == 'skipped'
    assert run.record(ROLE + 'Ping the host through its connection', 'aws-bad')['status'] == 'skipped'


RECAP = re.compile(r'^(\S+)\s+: ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=\d+\s+rescued=(\d+)', re.M)
SCENARIO_PLATFORMS = ('aws-ecs-web', 'ali-eci-web-1', 'ali-assist-web-01')
SCENARIO_NOT_READY = ('aws-ecs-no-exec', 'ali-eci-job-1', 'ali-assist-legacy-01')   # added by its verify.yml


def test_exec_ready_molecule_scenario(preflight_emu, control_dir, tmp_path):
    """roles/exec_ready/molecule/default: an ECS task container, an ECI container and a Cloud Assistant instance.

    Converge, a second converge that changes nothing, and verify: the role's result, a module and a raw command through
    each connection, then one target of each transport that is not ready, failed with its remedy (rescued).
    """
    run = molecule_test(preflight_emu, ROLE_DIR, tmp_path, {'CLOUDEXEC_CONTROL_DIR': str(control_dir)}, timeout=300)
    recaps = RECAP.findall(run.output)
    assert {host for host, *_counts in recaps} == {*SCENARIO_PLATFORMS, *SCENARIO_NOT_READY, 'localhost'}, run.output
    assert all(unreachable == failed == '0' for _host, unreachable, failed, _rescued in recaps), run.output
    assert {host: rescued for host, _unreachable, _failed, rescued in recaps if host in SCENARIO_NOT_READY} == \
        dict.fromkeys(SCENARIO_NOT_READY, '1'), run.output
