# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ali_ecs inventory plugin through real ``ansible-inventory`` runs against the emulator."""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from cloudexec_emulator.testing import start_emulator

from helpers import run_ansible

WEB = 'i-bp1demo000000000001'
DB = 'i-bp1demo000000000002'
OFFLINE = 'i-bp1demo000000000003'
STOPPED = 'i-bp1demo000000000004'
WINDOWS = 'i-bp1demo000000000005'


def inventory(emu, tmp_path: Path, config: dict, *extra: str, name: str = 'demo.ali_ecs.yml') -> dict:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({'plugin': 'cloudexec.core.ali_ecs', **config}))
    run = run_ansible('ansible-inventory', ['-i', str(path), '--list', *extra], emu)
    assert run.rc == 0, run.output
    return json.loads(run.stdout)


def plain(value):
    """ansible-inventory --list shows unsafe values as {"__ansible_unsafe": value}: unwrap them."""
    if isinstance(value, dict):
        if set(value) == {'__ansible_unsafe'}:
            return value['__ansible_unsafe']
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def hosts(data: dict, group: str = 'ali_ecs') -> list[str]:
    return sorted(data.get(group, {}).get('hosts', []))


def ecs_calls(emu) -> dict:
    return emu.admin('GET', 'calls')['calls'].get('ali-ecs', {})


def test_default_lists_running_instances_with_online_agent(emu, tmp_path):
    data = inventory(emu, tmp_path, {})
    assert hosts(data) == [WEB, DB, WINDOWS]
    web = plain(data['_meta']['hostvars'][WEB])
    assert web['ansible_ali_assist_instance_id'] == WEB and web['ansible_alicloud_region'] == 'cn-hangzhou'
    facts = web['ali_ecs']
    assert facts['instance_name'] == 'web-01' and facts['zone_id'] == 'cn-hangzhou-h' and facts['os_type'] == 'linux'
    assert facts['tags'] == {'app': 'web', 'env': 'demo'} and facts['cloud_assistant_online'] is True
    assert facts['cloud_assistant_version'] and facts['private_ip'] and facts['vpc_id']
    assert hosts(data, 'zone_cn_hangzhou_h') == [WEB, WINDOWS] and hosts(data, 'os_windows') == [WINDOWS]
    assert hosts(data, 'tag_app_db') == [DB] and hosts(data, 'instance_type_ecs_r7_xlarge') == [DB]
    seen = ecs_calls(emu)
    assert seen['DescribeInstances'] == 1 and seen['DescribeCloudAssistantStatus'] == 1


def test_filters(emu, tmp_path):
    assert hosts(inventory(emu, tmp_path, {'cloud_assistant_online_only': False})) == [WEB, DB, OFFLINE, WINDOWS]
    assert hosts(inventory(emu, tmp_path, {'status': ['Running', 'Stopped'], 'cloud_assistant_online_only': False})) == \
        [WEB, DB, OFFLINE, STOPPED, WINDOWS]
    assert hosts(inventory(emu, tmp_path, {'zones': ['cn-hangzhou-i']})) == [DB]
    assert hosts(inventory(emu, tmp_path, {'instance_names': ['web-*', 'win-0?']})) == [WEB, WINDOWS]
    assert hosts(inventory(emu, tmp_path, {'tags': {'app': ['web', 'db']}})) == [WEB, DB]
    assert hosts(inventory(emu, tmp_path, {'vpc_ids': ['vpc-none']})) == []


def test_hostnames_compose_keyed_groups(emu, tmp_path):
    data = inventory(emu, tmp_path, {
        'hostnames': ['tag:Name', 'instance_name'],
        'compose': {'short': "ali_ecs.instance_name ~ '@' ~ ali_ecs.zone_id"},
        'keyed_groups': [{'key': 'ali_ecs.tags.app', 'prefix': 'app'}],
        'groups': {'big_memory': "ali_ecs.instance_type == 'ecs.r7.xlarge'"},
    })
    assert hosts(data) == ['db-01', 'web-01', 'win-01']
    assert plain(data['_meta']['hostvars']['web-01']['short']) == 'web-01@cn-hangzhou-h'
    assert hosts(data, 'app_db') == ['db-01'] and hosts(data, 'big_memory') == ['db-01']


def test_cache(emu, tmp_path):
    config = {'cache': True, 'cache_plugin': 'ansible.builtin.jsonfile', 'cache_connection': str(tmp_path / 'cache'),
              'cache_timeout': 600}
    first = inventory(emu, tmp_path, config)
    emu.admin('POST', 'calls/reset')
    again = inventory(emu, tmp_path, dict(config, zones=['cn-hangzhou-h']))
    assert ecs_calls(emu) == {}  # filters apply to the cached answer
    assert hosts(again) == [WEB, WINDOWS] and hosts(first) == [WEB, DB, WINDOWS]
    inventory(emu, tmp_path, config, '--flush-cache')
    assert ecs_calls(emu)['DescribeInstances'] == 1


def test_api_data_is_unsafe(emu, tmp_path):
    data = inventory(emu, tmp_path, {})
    web = data['_meta']['hostvars'][WEB]
    # Every string from the API is marked unsafe (never templated).
    assert web['ali_ecs']['instance_name'] == {'__ansible_unsafe': 'web-01'}
    assert web['ali_ecs']['tags']['app'] == {'__ansible_unsafe': 'web'}
    assert web['ansible_ali_assist_instance_id'] == {'__ansible_unsafe': WEB}


FLEET_WORLD = '''
aws:
  credentials:
    - {access_key: AKIAFLEET00000000001, secret_key: fleet-secret-for-tests-only-0001}
alicloud:
  region: cn-hangzhou
  credentials:
    - {access_key_id: LTAIFLEET00000000001, access_key_secret: FleetSecretForTestsOnly000001}
  instances:
    - {count: 230, id_pattern: "i-fleet{index:04d}", name_pattern: "fleet-{index:03d}", tags: {fleet: big}}
'''


def test_describe_instances_is_paged_and_agent_status_batched(tmp_path):
    world = tmp_path / 'fleet.yml'
    world.write_text(FLEET_WORLD)
    with start_emulator(world=world) as fleet:
        data = inventory(fleet, tmp_path, {})
        assert len(hosts(data)) == 230
        seen = ecs_calls(fleet)
        assert seen['DescribeInstances'] == 3 and seen['DescribeCloudAssistantStatus'] == 5


def test_no_credentials_fail_at_once_with_what_to_set(emu, tmp_path):
    """Without any Alibaba credential the SDK's default chain finds none: one clear error naming the options, at once,
    not a minute of retries as if the network were down, and no SDK tracebacks on stderr."""
    path = tmp_path / 'demo.ali_ecs.yml'
    path.write_text(yaml.safe_dump({'plugin': 'cloudexec.core.ali_ecs'}))
    blank = {name: '' for name in emu.env if 'KEY' in name or 'TOKEN' in name or 'SECRET' in name}
    assert blank, emu.env
    blank.update(HOME=str(tmp_path), ALIBABA_CLOUD_ECS_METADATA_DISABLED='true', ANSIBLE_INVENTORY_UNPARSED_FAILED='1')
    run = run_ansible('ansible-inventory', ['-i', str(path), '--list'], emu, extra_env=blank, timeout=120)
    assert run.rc != 0
    assert run.duration < 30, run.duration
    assert 'CredentialError' in run.output and 'alicloud_access_key and alicloud_secret_key' in run.output, run.output
    assert 'could not reach the endpoint' not in run.output
    assert 'Traceback' not in run.stderr, run.stderr
