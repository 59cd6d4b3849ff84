# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ali_eci inventory plugin through real ansible-inventory / ansible-playbook runs against the emulator."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator
from helpers import cli, collections_path, plain

PLUGIN = 'cloudexec.core.ali_eci'
WEB_ID, API_ID, JOB_ID = 'eci-bp1demo00000000001', 'eci-bp1demo00000000002', 'eci-bp1demo00000000003'
WEB = f'{WEB_ID}_web'
APP = f'{API_ID}_app'
SIDECAR = f'{API_ID}_sidecar'
JOB = f'{JOB_ID}_job'            # Succeeded: listed only when status allows it
RUNNING = {WEB, APP, SIDECAR}
EVERYTHING = RUNNING | {JOB}
EVIL = "{{ lookup('pipe', 'id') }}"


def _env(emu, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('ALICLOUD_', 'ALIBABA_CLOUD_', 'AWS_', 'ANSIBLE_'))}
    env.update(emu.env)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': collections_path(),
        'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'true',
        'ANSIBLE_INVENTORY_ENABLED': PLUGIN,
        'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'ansible-tmp'),
        'ANSIBLE_NOCOLOR': '1',
    })
    env.update(extra)
    return env


def _write_config(tmp_path: Path, config: dict, name: str = 'test.ali_eci.yml') -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({'plugin': PLUGIN, **config}))
    return path


def inventory(emu, tmp_path: Path, config: dict, *args: str, check: bool = True, name: str = 'test.ali_eci.yml',
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


def hosts_of(proc, group: str = 'ali_eci') -> set[str]:
    return set(proc.data.get(group, {}).get('hosts', []))


def eci_calls(emu) -> dict[str, int]:
    return emu.admin('GET', 'calls')['calls'].get('ali-eci', {})


# ---------------------------------------------------------------------------------------------- default world

def test_default_lists_containers_of_running_groups(emu, tmp_path):
    proc = inventory(emu, tmp_path, {})
    assert set(hostvars(proc)) == RUNNING == hosts_of(proc)
    assert eci_calls(emu) == {'DescribeContainerGroups': 1}


def test_hostvars_wire_the_connection(emu, tmp_path):
    facts = hostvars(inventory(emu, tmp_path, {}))[SIDECAR]
    assert facts['ansible_connection'] == 'cloudexec.core.ali_eci'
    assert facts['ansible_ali_eci_container_group_id'] == API_ID
    assert facts['ansible_ali_eci_container_name'] == 'sidecar'
    assert facts['ansible_alicloud_region'] == 'cn-hangzhou'
    assert facts['ansible_alicloud_eci_endpoint'] == emu.env['ALICLOUD_ECI_ENDPOINT']
    eci = facts['ali_eci']
    assert (eci['container_group_id'], eci['container_group_name'], eci['container_name']) == (API_ID, 'api-1', 'sidecar')
    assert (eci['region_id'], eci['zone_id'], eci['status']) == ('cn-hangzhou', 'cn-hangzhou-i', 'Running')
    assert eci['tags'] == {'app': 'api', 'env': 'demo'}
    assert eci['image'] == 'busybox:1.36' and eci['containers'] == ['app', 'sidecar']
    assert eci['container_state'] == 'Running' and eci['ready'] is True and eci['restart_count'] == 0
    assert eci['vpc_id'] and eci['vswitch_id'] and eci['security_group_id'] and eci['intranet_ip']
    assert 'alicloud_secret_key' not in json.dumps(facts) and emu['alicloud']['secret_key'] not in json.dumps(facts)


def test_groups_by_zone_tags_group_and_region(emu, tmp_path):
    proc = inventory(emu, tmp_path, {'status': []})
    assert set(hostvars(proc)) == EVERYTHING
    assert hosts_of(proc, 'zone_cn_hangzhou_h') == {WEB, JOB}   # job-1 is in the region's default zone
    assert hosts_of(proc, 'zone_cn_hangzhou_i') == {APP, SIDECAR}
    assert hosts_of(proc, 'container_group_api_1') == {APP, SIDECAR}
    assert hosts_of(proc, 'container_group_job_1') == {JOB}
    assert hosts_of(proc, 'tag_app_web') == {WEB} and hosts_of(proc, 'tag_app_job') == {JOB}
    assert hosts_of(proc, 'tag_env_demo') == EVERYTHING
    assert hosts_of(proc, 'region_cn_hangzhou') == EVERYTHING
    assert hostvars(proc)[JOB]['ali_eci']['status'] == 'Succeeded'


@pytest.mark.parametrize(('config', 'expected'), [
    ({'status': ['Succeeded']}, {JOB}),
    ({'status': ['Running', 'Succeeded']}, EVERYTHING),
    ({'status': ['Pending']}, set()),
    ({'zones': ['cn-hangzhou-i']}, {APP, SIDECAR}),
    ({'zones': ['cn-hangzhou-h', 'cn-hangzhou-i']}, RUNNING),
    ({'names': ['web-*']}, {WEB}),
    ({'names': ['web-1', 'api-?']}, RUNNING),
    ({'names': ['job-*']}, set()),
    ({'names': ['job-*'], 'status': []}, {JOB}),
    ({'tags': {'app': 'web'}}, {WEB}),
    ({'tags': {'app': ['web', 'api']}}, RUNNING),
    ({'tags': {'env': None}}, RUNNING),
    ({'tags': {'app': 'web', 'env': 'prod'}}, set()),
    ({'regions': ['cn-shanghai']}, set()),
    ({'regions': ['cn-shanghai', 'cn-hangzhou']}, RUNNING),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_filters(emu, tmp_path, config, expected):
    assert set(hostvars(inventory(emu, tmp_path, config))) == expected


def test_single_status_and_zone_are_sent_to_the_api(emu, tmp_path):
    # One status and one zone filter on the API side: one call, and only the matching group comes back.
    proc = inventory(emu, tmp_path, {'status': ['Running'], 'zones': ['cn-hangzhou-h'], 'regions': ['cn-hangzhou']})
    assert set(hostvars(proc)) == {WEB}
    assert eci_calls(emu) == {'DescribeContainerGroups': 1}


def test_container_mode_group_and_hostnames(emu, tmp_path):
    proc = inventory(emu, tmp_path, {'container_mode': 'group'})
    facts = hostvars(proc)
    assert set(facts) == {WEB_ID, API_ID}
    assert facts[API_ID]['ansible_ali_eci_container_name'] == 'app'
    proc = inventory(emu, tmp_path, {'container_mode': 'group', 'hostnames': ['tag:Name', 'container_group_name']})
    assert set(hostvars(proc)) == {'web-1', 'api-1'}
    proc = inventory(emu, tmp_path, {'hostnames': ['{container_group_name}-{container_name}']})
    assert set(hostvars(proc)) == {'web-1-web', 'api-1-app', 'api-1-sidecar'}
    # A name already taken falls back to the default pattern.
    proc = inventory(emu, tmp_path, {'hostnames': ['container_group_name']})
    assert set(hostvars(proc)) == {'web-1', 'api-1', SIDECAR}


def test_unknown_hostname_field_is_an_error(emu, tmp_path):
    proc = inventory(emu, tmp_path, {'hostnames': ['{nope}']}, check=False)
    assert proc.returncode != 0 and "Unknown field 'nope'" in proc.stderr


def test_compose_groups_and_keyed_groups(emu, tmp_path):
    proc = inventory(emu, tmp_path, {
        'compose': {'short_name': "ali_eci.container_group_name ~ '/' ~ ali_eci.container_name", 'ansible_user': "'app'"},
        'groups': {'multi': 'ali_eci.containers | length > 1', 'named_web': "short_name.startswith('web')"},
        'keyed_groups': [{'key': 'ali_eci.tags.app', 'prefix': 'app'}, {'key': 'ali_eci.image', 'prefix': 'image'}],
    })
    facts = hostvars(proc)
    assert facts[WEB]['short_name'] == 'web-1/web' and facts[APP]['ansible_user'] == 'app'
    assert hosts_of(proc, 'multi') == {APP, SIDECAR}
    assert hosts_of(proc, 'named_web') == {WEB}
    assert hosts_of(proc, 'app_api') == {APP, SIDECAR}
    assert hosts_of(proc, 'image_busybox_1_36') == {SIDECAR}


def test_strict_fails_on_a_bad_key(emu, tmp_path):
    config = {'keyed_groups': [{'key': 'ali_eci.tags.missing', 'prefix': 'x'}]}
    assert set(hostvars(inventory(emu, tmp_path, config))) == RUNNING
    proc = inventory(emu, tmp_path, {**config, 'strict': True}, check=False)
    assert proc.returncode != 0 and 'missing' in proc.stderr


def test_file_name_must_end_with_ali_eci_yml(emu, tmp_path):
    proc = inventory(emu, tmp_path, {}, name='test.yml', check=False)
    assert proc.returncode != 0 and eci_calls(emu) == {}
    assert set(hostvars(inventory(emu, tmp_path, {}, name='other.ali_eci.yaml'))) == RUNNING


# ---------------------------------------------------------------------------------------------- caching

def test_cache(emu, tmp_path):
    config = {'cache': True, 'cache_plugin': 'ansible.builtin.jsonfile', 'cache_connection': str(tmp_path / 'cache'),
              'cache_timeout': 600}
    first = inventory(emu, tmp_path, config)
    assert eci_calls(emu) == {'DescribeContainerGroups': 1}
    emu.admin('POST', 'calls/reset')
    second = inventory(emu, tmp_path, config)
    assert eci_calls(emu) == {} and hostvars(second) == hostvars(first)
    # Client-side filters still apply to the cached answer.
    assert set(hostvars(inventory(emu, tmp_path, {**config, 'tags': {'app': 'web'}, 'names': ['web-*']}))) == {WEB}
    assert eci_calls(emu) == {}
    # A query-shaping option is another key: a miss, not another query's hosts.
    assert set(hostvars(inventory(emu, tmp_path, {**config, 'status': ['Succeeded']}))) == {JOB}
    assert eci_calls(emu) == {'DescribeContainerGroups': 1}
    emu.admin('POST', 'calls/reset')
    inventory(emu, tmp_path, config, '--list', '--flush-cache')
    assert eci_calls(emu) == {'DescribeContainerGroups': 1}


# ---------------------------------------------------------------------------------------------- errors

def test_wrong_secret_is_a_clear_error(emu, tmp_path):
    proc = inventory(emu, tmp_path, {}, check=False, ALICLOUD_SECRET_KEY='not-the-secret-value',
                     ALIBABA_CLOUD_ACCESS_KEY_SECRET='not-the-secret-value')
    assert proc.returncode != 0
    assert 'SignatureDoesNotMatch' in proc.stderr and 'not-the-secret-value' not in proc.stderr + proc.stdout


def test_no_region_is_a_clear_error(emu, tmp_path):
    env = _env(emu, tmp_path)
    for key in ('ALICLOUD_REGION', 'ALIBABA_CLOUD_REGION_ID'):
        env.pop(key, None)
    path = _write_config(tmp_path, {})
    proc = subprocess.run([cli('ansible-inventory'), '-i', str(path), '--list'], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode != 0 and 'alicloud_region' in proc.stderr
    # With regions listed, no credential region is needed.
    proc = subprocess.run([cli('ansible-inventory'), '-i', str(_write_config(tmp_path, {'regions': ['cn-hangzhou']})), '--list'],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_throttling_is_retried(emu, tmp_path):
    emu.admin('POST', 'faults', {'service': 'ali-eci', 'action': 'DescribeContainerGroups', 'throttle': 2})
    assert set(hostvars(inventory(emu, tmp_path, {}))) == RUNNING
    assert eci_calls(emu) == {'DescribeContainerGroups': 3}


# ---------------------------------------------------------------------------------------------- custom world

CUSTOM_WORLD = {
    'alicloud': {
        'region': 'cn-hangzhou',
        'credentials': [{'access_key_id': 'LTAIEMULATOR0000000001', 'access_key_secret': 'EmulatorSecretForTestsOnly000001'}],
        'container_groups': [
            {'id': 'eci-tricky000000000001', 'name': 'tricky', 'tags': {'app': 'tricky', 'note': EVIL, 'Name': 'named-host'},
             'containers': [{'name': 'main', 'image': 'busybox'}]},
            {'count': 45, 'id_pattern': 'eci-fleet{index:016d}', 'name_pattern': 'fleet-{index:03d}', 'tags': {'fleet': 'big'},
             'containers': [{'name': 'c', 'image': 'busybox'}]},
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


def test_pagination_over_46_groups(custom, tmp_path):
    proc = inventory(custom, tmp_path, {})
    assert len(hostvars(proc)) == 46
    assert len(hosts_of(proc, 'tag_fleet_big')) == 45
    assert eci_calls(custom) == {'DescribeContainerGroups': 3}     # pages of 20


def test_api_values_are_unsafe(custom, tmp_path):
    proc = inventory(custom, tmp_path, {'names': ['tricky'], 'hostnames': ['tag:note', 'tag:Name'],
                                        'compose': {'note_copy': 'ali_eci.tags.note'}})
    raw = proc.data['_meta']['hostvars']
    assert set(raw) == {'named-host'}        # a tag holding braces is not a usable host name
    assert raw['named-host']['ali_eci']['tags']['note'] == {'__ansible_unsafe': EVIL}
    assert plain(raw['named-host']['note_copy']) == EVIL
    assert 'uid=' not in proc.stdout


def test_api_values_are_not_templated_in_a_playbook(custom, tmp_path):
    config = _write_config(tmp_path, {'names': ['tricky'], 'compose': {'note_copy': 'ali_eci.tags.note'}})
    playbook = tmp_path / 'show.yml'
    playbook.write_text(yaml.safe_dump([{
        'hosts': 'localhost', 'gather_facts': False,
        'tasks': [
            {'name': 'note', 'ansible.builtin.debug': {'msg': 'NOTE<{{ hostvars[item].ali_eci.tags.note }}>'},
             'loop': "{{ groups['tag_app_tricky'] }}"},
            {'name': 'composed', 'ansible.builtin.debug': {'msg': 'COMPOSED<{{ hostvars[item].note_copy }}>'},
             'loop': "{{ groups['ali_eci'] }}"},
        ],
    }]))
    proc = subprocess.run([cli('ansible-playbook'), '-i', str(config), str(playbook)], env=_env(custom, tmp_path),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f'NOTE<{EVIL}>' in proc.stdout and f'COMPOSED<{EVIL}>' in proc.stdout
    assert 'uid=' not in proc.stdout
