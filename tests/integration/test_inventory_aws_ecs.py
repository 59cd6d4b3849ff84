# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The aws_ecs inventory plugin through real ansible-inventory / ansible-playbook runs against the emulator."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator
from helpers import cli, collections_path, plain

PLUGIN = 'cloudexec.core.aws_ecs'
WEB = 'demo_1f0e1c2d3b4a59687766554433221100_web'
APP = 'demo_2a1b2c3d4e5f60718293a4b5c6d7e8f9_app'
SIDECAR = 'demo_2a1b2c3d4e5f60718293a4b5c6d7e8f9_sidecar'
BATCH = 'demo_3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f_worker'           # exec not enabled
STAGING_WEB = 'staging_4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a_web'
LEGACY = 'staging_5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b_legacy'       # agent STOPPED, EC2
EXEC_READY = {WEB, APP, SIDECAR, STAGING_WEB}
EVERYTHING = EXEC_READY | {BATCH, LEGACY}
EVIL = "{{ lookup('pipe', 'id') }}"


def _env(emu, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('AWS_', 'EC2_', 'ANSIBLE_'))}
    env.update(emu.env)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': collections_path(),
        'AWS_CONFIG_FILE': os.devnull,
        'AWS_SHARED_CREDENTIALS_FILE': os.devnull,
        # A source the plugin cannot parse must fail the run, not fall back to an empty inventory.
        'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'true',
        'ANSIBLE_INVENTORY_ENABLED': PLUGIN,
        'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'ansible-tmp'),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_HOST_KEY_CHECKING': 'false',
    })
    env.update(extra)
    return env


def _write_config(tmp_path: Path, config: dict, name: str = 'test.aws_ecs.yml') -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({'plugin': PLUGIN, **config}))
    return path


def inventory(emu, tmp_path: Path, config: dict, *args: str, check: bool = True, name: str = 'test.aws_ecs.yml',
              **env: str) -> subprocess.CompletedProcess:
    """Run ansible-inventory on a config file made from config; --list output parsed into .data."""
    path = _write_config(tmp_path, config, name)
    argv = [cli('ansible-inventory'), '-i', str(path), *(args or ('--list',))]
    proc = subprocess.run(argv, env=_env(emu, tmp_path, **env), capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    proc.data = json.loads(proc.stdout) if proc.returncode == 0 and '--list' in argv else None  # type: ignore[attr-defined]
    return proc


def hostvars(proc) -> dict:
    return plain(proc.data['_meta']['hostvars'])


def hosts_of(proc, group: str = 'aws_ecs') -> set[str]:
    return set(proc.data.get(group, {}).get('hosts', []))


def ecs_calls(emu) -> dict[str, int]:
    return emu.admin('GET', 'calls')['calls'].get('aws-ecs', {})


# ---------------------------------------------------------------------------------------------- default world

def test_default_lists_exec_capable_containers_only(emu, tmp_path):
    proc = inventory(emu, tmp_path, {})
    assert set(hostvars(proc)) == EXEC_READY
    assert hosts_of(proc) == EXEC_READY


def test_hostvars_wire_the_connection(emu, tmp_path):
    proc = inventory(emu, tmp_path, {})
    web = hostvars(proc)[APP]
    assert web['ansible_connection'] == 'cloudexec.core.aws_ecs'
    assert web['ansible_aws_ecs_cluster'] == 'arn:aws:ecs:us-east-1:123456789012:cluster/demo'
    assert web['ansible_aws_ecs_task'] == 'arn:aws:ecs:us-east-1:123456789012:task/demo/2a1b2c3d4e5f60718293a4b5c6d7e8f9'
    assert web['ansible_aws_ecs_container'] == 'app'
    assert web['ansible_aws_region'] == 'us-east-1'
    facts = web['aws_ecs']
    assert facts['cluster_name'] == 'demo' and facts['task_id'] == '2a1b2c3d4e5f60718293a4b5c6d7e8f9'
    assert facts['container_name'] == 'app' and facts['container_runtime_id']
    assert (facts['service'], facts['family'], facts['revision']) == ('api', 'api', 3)
    assert facts['tags'] == {'app': 'api', 'env': 'demo'}
    assert (facts['launch_type'], facts['platform_version']) == ('FARGATE', '1.4.0')
    assert (facts['last_status'], facts['desired_status']) == ('RUNNING', 'RUNNING')
    assert facts['availability_zone'] == 'us-east-1a'
    assert facts['exec_enabled'] is True and facts['agent_status'] == 'RUNNING'
    expected_keys = {'cluster_arn', 'cluster_name', 'task_arn', 'task_id', 'container_name', 'container_runtime_id',
                     'launch_type', 'platform_version', 'service', 'family', 'revision', 'tags', 'last_status',
                     'desired_status', 'availability_zone', 'exec_enabled', 'agent_status'}
    assert expected_keys <= set(facts)


def test_exec_enabled_only_false_lists_everything(emu, tmp_path):
    proc = inventory(emu, tmp_path, {'exec_enabled_only': False})
    assert set(hostvars(proc)) == EVERYTHING
    facts = hostvars(proc)
    assert facts[BATCH]['aws_ecs']['exec_enabled'] is False and facts[BATCH]['aws_ecs']['agent_status'] is None
    assert facts[BATCH]['aws_ecs']['service'] is None
    assert facts[LEGACY]['aws_ecs']['agent_status'] == 'STOPPED'


def test_groups_by_cluster_service_and_launch_type(emu, tmp_path):
    proc = inventory(emu, tmp_path, {'exec_enabled_only': False})
    assert hosts_of(proc, 'cluster_demo') == {WEB, APP, SIDECAR, BATCH}
    assert hosts_of(proc, 'cluster_staging') == {STAGING_WEB, LEGACY}
    assert hosts_of(proc, 'service_web') == {WEB, STAGING_WEB}
    assert hosts_of(proc, 'service_api') == {APP, SIDECAR}
    assert hosts_of(proc, 'launch_type_fargate') == {WEB, APP, SIDECAR, BATCH, STAGING_WEB}
    assert hosts_of(proc, 'launch_type_ec2') == {LEGACY}
    expected = {'aws_ecs', 'cluster_demo', 'cluster_staging', 'service_web', 'service_api', 'launch_type_fargate',
                'launch_type_ec2'}
    assert set(proc.data['all']['children']) >= expected


def test_graph_output(emu, tmp_path):
    proc = inventory(emu, tmp_path, {}, '--graph', 'cluster_staging')
    assert '@cluster_staging:' in proc.stdout and STAGING_WEB in proc.stdout and LEGACY not in proc.stdout


@pytest.mark.parametrize(('config', 'expected'), [
    ({'clusters': ['staging']}, {STAGING_WEB}),
    ({'clusters': ['staging'], 'exec_enabled_only': False}, {STAGING_WEB, LEGACY}),
    ({'clusters': ['arn:aws:ecs:us-east-1:123456789012:cluster/demo']}, {WEB, APP, SIDECAR}),
    ({'services': ['web']}, {WEB, STAGING_WEB}),
    ({'services': ['api']}, {APP, SIDECAR}),                     # staging has no api service: skipped
    ({'services': ['web', 'api'], 'clusters': ['demo']}, {WEB, APP, SIDECAR}),
    ({'launch_type': 'EC2', 'exec_enabled_only': False}, {LEGACY}),
    ({'launch_type': 'EC2'}, set()),
    ({'launch_type': 'FARGATE', 'exec_enabled_only': False}, EVERYTHING - {LEGACY}),
    ({'tags': {'app': 'web'}}, {WEB, STAGING_WEB}),
    ({'tags': {'app': 'web', 'env': 'staging'}}, {STAGING_WEB}),
    ({'tags': {'env': ['staging', 'demo']}}, EXEC_READY),
    ({'tags': {'app': None}, 'exec_enabled_only': False}, EXEC_READY),  # the batch and legacy tasks have no tags
    ({'tags': {'app': 'nope'}}, set()),
    ({'desired_status': 'STOPPED', 'exec_enabled_only': False}, set()),
    ({'regions': ['eu-west-1']}, set()),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_filters(emu, tmp_path, config, expected):
    proc = inventory(emu, tmp_path, config)
    assert set(hostvars(proc)) == expected


def test_filters_are_sent_to_list_tasks(emu, tmp_path):
    inventory(emu, tmp_path, {'clusters': ['demo'], 'services': ['web'], 'launch_type': 'FARGATE'})
    calls = ecs_calls(emu)
    assert calls.get('ListClusters', 0) == 0          # clusters given: no listing
    assert calls['ListTasks'] == 1 and calls['DescribeTasks'] == 1


def test_container_mode_task(emu, tmp_path):
    proc = inventory(emu, tmp_path, {'container_mode': 'task'})
    facts = hostvars(proc)
    assert set(facts) == {'demo_1f0e1c2d3b4a59687766554433221100', 'demo_2a1b2c3d4e5f60718293a4b5c6d7e8f9',
                          'staging_4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a'}
    assert facts['demo_2a1b2c3d4e5f60718293a4b5c6d7e8f9']['ansible_aws_ecs_container'] == 'app'
    proc = inventory(emu, tmp_path, {'container_mode': 'task', 'exec_enabled_only': False, 'hostnames': ['task_id']})
    assert set(hostvars(proc)) == {'1f0e1c2d3b4a59687766554433221100', '2a1b2c3d4e5f60718293a4b5c6d7e8f9',
                                   '3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f', '4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a',
                                   '5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b'}


def test_hostnames_preferences(emu, tmp_path):
    # task_id is taken by the first container of the two-container task; the second falls back to the default.
    proc = inventory(emu, tmp_path, {'hostnames': ['tag:Name', '{service}-{container_name}-{task_id}', 'task_id'],
                                     'clusters': ['demo'], 'exec_enabled_only': False})
    assert set(hostvars(proc)) == {'web-web-1f0e1c2d3b4a59687766554433221100', 'api-app-2a1b2c3d4e5f60718293a4b5c6d7e8f9',
                                   'api-sidecar-2a1b2c3d4e5f60718293a4b5c6d7e8f9', '3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f'}
    proc = inventory(emu, tmp_path, {'hostnames': ['task_id'], 'clusters': ['demo']})
    assert set(hostvars(proc)) == {'1f0e1c2d3b4a59687766554433221100', '2a1b2c3d4e5f60718293a4b5c6d7e8f9', SIDECAR}


def test_unknown_hostname_field_is_an_error(emu, tmp_path):
    proc = inventory(emu, tmp_path, {'hostnames': ['{nope}']}, check=False)
    assert proc.returncode != 0
    assert "Unknown field 'nope'" in proc.stderr


def test_compose_groups_and_keyed_groups(emu, tmp_path):
    proc = inventory(emu, tmp_path, {
        'compose': {'short_name': "aws_ecs.family ~ '-' ~ aws_ecs.task_id[:4]", 'ansible_user': "'app'"},
        'groups': {'multi_container': "aws_ecs.service == 'api'", 'named': "short_name.startswith('web')"},
        'keyed_groups': [{'key': 'aws_ecs.tags.app', 'prefix': 'app'}, {'key': 'aws_ecs.availability_zone', 'prefix': 'az'}],
    })
    facts = hostvars(proc)
    assert facts[WEB]['short_name'] == 'web-1f0e' and facts[APP]['ansible_user'] == 'app'
    assert hosts_of(proc, 'app_web') == {WEB, STAGING_WEB}
    assert hosts_of(proc, 'app_api') == {APP, SIDECAR}
    assert hosts_of(proc, 'az_us_east_1a') == EXEC_READY
    assert hosts_of(proc, 'multi_container') == {APP, SIDECAR}
    assert hosts_of(proc, 'named') == {WEB, STAGING_WEB}      # groups see composed variables


def test_strict_fails_on_a_bad_key(emu, tmp_path):
    config = {'keyed_groups': [{'key': 'aws_ecs.tags.missing', 'prefix': 'x'}], 'exec_enabled_only': False}
    assert set(hostvars(inventory(emu, tmp_path, config))) == EVERYTHING
    proc = inventory(emu, tmp_path, {**config, 'strict': True}, check=False)
    assert proc.returncode != 0 and 'missing' in proc.stderr


def test_file_name_must_end_with_aws_ecs_yml(emu, tmp_path):
    proc = inventory(emu, tmp_path, {}, name='test.yml', check=False)
    assert proc.returncode != 0
    assert ecs_calls(emu).get('ListClusters', 0) == 0
    proc = inventory(emu, tmp_path, {}, name='other.aws_ecs.yaml')
    assert set(hostvars(proc)) == EXEC_READY


# ---------------------------------------------------------------------------------------------- caching

def test_cache_second_run_makes_no_ecs_calls(emu, tmp_path):
    config = {'cache': True, 'cache_plugin': 'ansible.builtin.jsonfile', 'cache_connection': str(tmp_path / 'cache'),
              'cache_timeout': 600}
    first = inventory(emu, tmp_path, config)
    assert ecs_calls(emu).get('DescribeTasks', 0) >= 1
    emu.admin('POST', 'calls/reset')

    second = inventory(emu, tmp_path, config)
    assert ecs_calls(emu) == {}
    assert hostvars(second) == hostvars(first)
    # Filters applied after the query still apply to cached answers.
    assert set(hostvars(inventory(emu, tmp_path, {**config, 'tags': {'app': 'web'}}))) == {WEB, STAGING_WEB}
    assert ecs_calls(emu) == {}

    # A query-shaping option makes a different key: a miss, not another query's hosts.
    assert set(hostvars(inventory(emu, tmp_path, {**config, 'clusters': ['staging']}))) == {STAGING_WEB}
    assert ecs_calls(emu).get('ListTasks', 0) == 1
    emu.admin('POST', 'calls/reset')

    inventory(emu, tmp_path, config, '--list', '--flush-cache')
    assert ecs_calls(emu).get('DescribeTasks', 0) >= 1


def test_cache_off_queries_every_time(emu, tmp_path):
    config = {'cache': False, 'cache_plugin': 'ansible.builtin.jsonfile', 'cache_connection': str(tmp_path / 'cache')}
    inventory(emu, tmp_path, config)
    emu.admin('POST', 'calls/reset')
    inventory(emu, tmp_path, config)
    assert ecs_calls(emu).get('DescribeTasks', 0) >= 1


# ---------------------------------------------------------------------------------------------- errors

def test_wrong_secret_is_a_clear_error(emu, tmp_path):
    proc = inventory(emu, tmp_path, {}, check=False, AWS_SECRET_ACCESS_KEY='not-the-secret')
    assert proc.returncode != 0
    assert 'InvalidSignatureException' in proc.stderr
    assert 'secret key does not match' in proc.stderr
    assert 'not-the-secret' not in proc.stderr + proc.stdout


def test_unknown_key_is_a_clear_error(emu, tmp_path):
    proc = inventory(emu, tmp_path, {'access_key': 'AKIAUNKNOWN000000000', 'secret_key': 'whatever-secret-value'},
                     check=False)
    assert proc.returncode != 0
    assert 'UnrecognizedClientException' in proc.stderr and 'whatever-secret-value' not in proc.stderr


def test_denied_principal_names_the_code(emu, tmp_path):
    proc = inventory(emu, tmp_path, {}, check=False, AWS_ACCESS_KEY_ID='AKIAEMULATORREADONLY',
                     AWS_SECRET_ACCESS_KEY='emulator/secret/key/for/tests/readonly')
    assert proc.returncode != 0
    assert 'AccessDeniedException' in proc.stderr and 'ListTasks' in proc.stderr


def test_unknown_cluster_is_an_error(emu, tmp_path):
    proc = inventory(emu, tmp_path, {'clusters': ['nope']}, check=False)
    assert proc.returncode != 0
    assert 'ClusterNotFoundException' in proc.stderr


def test_throttling_is_retried(emu, tmp_path):
    emu.admin('POST', 'faults', {'service': 'aws-ecs', 'action': 'DescribeTasks', 'throttle': 2})
    proc = inventory(emu, tmp_path, {'clusters': ['demo']})
    assert set(hostvars(proc)) == {WEB, APP, SIDECAR}


# ---------------------------------------------------------------------------------------------- custom world

CUSTOM_WORLD = {
    'aws': {
        'region': 'us-east-1',
        'credentials': [{'access_key': 'AKIAEMULATOR00000001', 'secret_key': 'emulator/secret/key/for/tests/only00001'}],
        'clusters': [
            {'name': 'odd', 'tasks': [
                {'id': 'aaaa0000bbbb1111cccc2222dddd3333', 'family': 'tricky', 'service': 'tricky',
                 'tags': {'app': 'tricky', 'note': EVIL, 'Name': 'named-host'},
                 'containers': [{'name': 'main'}]},
                {'id': 'eeee4444ffff5555aaaa6666bbbb7777', 'family': 'gone', 'last_status': 'STOPPED',
                 'desired_status': 'STOPPED', 'containers': [{'name': 'main', 'last_status': 'STOPPED'}]},
            ]},
            {'name': 'fleet', 'tasks': [{'count': 150, 'family': 'fleet', 'service': 'fleet', 'tags': {'fleet': 'big'}}]},
        ],
    },
}


@pytest.fixture(scope='module')
def custom_emu(tmp_path_factory):
    world = tmp_path_factory.mktemp('world') / 'world.yml'
    world.write_text(yaml.safe_dump(CUSTOM_WORLD))
    with start_emulator(world=world) as info:
        yield info


@pytest.fixture
def custom(custom_emu):
    custom_emu.admin('DELETE', 'faults')
    custom_emu.admin('POST', 'calls/reset')
    return custom_emu


def test_pagination_over_150_tasks(custom, tmp_path):
    proc = inventory(custom, tmp_path, {'clusters': ['fleet']})
    assert len(hostvars(proc)) == 150
    assert len({v['ansible_aws_ecs_task'] for v in hostvars(proc).values()}) == 150
    calls = ecs_calls(custom)
    assert calls['ListTasks'] == 2          # pages of 100
    assert calls['DescribeTasks'] == 2      # batches of 100


def test_list_clusters_and_all_regions_by_default(custom, tmp_path):
    proc = inventory(custom, tmp_path, {})
    assert len(hostvars(proc)) == 151
    assert ecs_calls(custom)['ListClusters'] == 1


def test_desired_status_stopped(custom, tmp_path):
    proc = inventory(custom, tmp_path, {'clusters': ['odd'], 'desired_status': 'STOPPED', 'exec_enabled_only': False})
    assert set(hostvars(proc)) == {'odd_eeee4444ffff5555aaaa6666bbbb7777_main'}
    proc = inventory(custom, tmp_path, {'clusters': ['odd'], 'desired_status': 'STOPPED'})
    assert hostvars(proc) == {}


def test_api_values_are_unsafe_in_inventory(custom, tmp_path):
    proc = inventory(custom, tmp_path, {'clusters': ['odd'], 'hostnames': ['tag:note', 'tag:Name'],
                                        'compose': {'note_copy': 'aws_ecs.tags.note'}})
    raw = proc.data['_meta']['hostvars']
    assert set(raw) == {'named-host'}    # a tag holding braces is not a usable host name
    assert raw['named-host']['aws_ecs']['tags']['note'] == {'__ansible_unsafe': EVIL}
    assert plain(raw['named-host']['note_copy']) == EVIL
    assert 'uid=' not in proc.stdout


def test_api_values_are_not_templated_in_a_playbook(custom, tmp_path):
    config = _write_config(tmp_path, {'clusters': ['odd'], 'compose': {'note_copy': 'aws_ecs.tags.note'},
                                      'keyed_groups': [{'key': 'aws_ecs.tags.app', 'prefix': 'app'}]})
    playbook = tmp_path / 'show.yml'
    playbook.write_text(yaml.safe_dump([{
        'hosts': 'localhost', 'gather_facts': False,
        'tasks': [
            {'name': 'note', 'ansible.builtin.debug': {'msg': "NOTE<{{ hostvars[item].aws_ecs.tags.note }}>"},
             'loop': "{{ groups['app_tricky'] }}"},
            {'name': 'composed', 'ansible.builtin.debug': {'msg': "COMPOSED<{{ hostvars[item].note_copy }}>"},
             'loop': "{{ groups['cluster_odd'] }}"},
            {'name': 'connection vars', 'ansible.builtin.debug': {
                'msg': "CONN<{{ hostvars[item].ansible_connection }}|{{ hostvars[item].ansible_aws_ecs_container }}>"},
             'loop': "{{ groups['aws_ecs'] }}"},
        ],
    }]))
    proc = subprocess.run([cli('ansible-playbook'), '-i', str(config), str(playbook)], env=_env(custom, tmp_path),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f'NOTE<{EVIL}>' in proc.stdout
    assert f'COMPOSED<{EVIL}>' in proc.stdout
    assert 'CONN<cloudexec.core.aws_ecs|main>' in proc.stdout
    assert 'uid=' not in proc.stdout
