# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The aws_ssm inventory plugin through real ansible-inventory runs against the emulator's SSM managed nodes.

The default world has two web instances, an instance whose agent lost its connection (db-1), a banner node, a Run As
node, a Windows node, a stopped instance (old-1, which SSM does not list) and a hybrid node (onprem-1, mi-, whose tags
are SSM's). Names of EC2 instances come from EC2 DescribeInstances: SSM does not send them.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator
from helpers import ansible_env, cli, plain

PLUGIN = 'cloudexec.core.aws_ssm'
WEB1, WEB2, DB1, BANNER, APP, WIN, OLD = (f'i-0a1b2c3d4e5f6070{n}' for n in range(1, 8))
HYBRID = 'mi-0a1b2c3d4e5f60801'
ONLINE = {WEB1, WEB2, BANNER, APP, WIN, HYBRID}
NAMES = {WEB1: 'web-1', WEB2: 'web-2', DB1: 'db-1', BANNER: 'banner-1', APP: 'app-1', WIN: 'win-1', HYBRID: 'onprem-1'}
EVIL = "{{ lookup('pipe', 'id') }}"


def inventory(emu, tmp_path: Path, config: dict, *args: str, check: bool = True, name: str = 'test.aws_ssm.yml',
              **env: str) -> subprocess.CompletedProcess:
    """ansible-inventory on a config file made from config; --list output parsed into .data."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump({'plugin': PLUGIN, **config}))
    argv = [cli('ansible-inventory'), '-i', str(path), *(args or ('--list',))]
    environment = ansible_env(emu, {'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'true', 'ANSIBLE_INVENTORY_ENABLED': PLUGIN,
                                    'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'ansible-tmp'), **env})
    proc = subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    # With -v, ansible-inventory prints its banner first: the JSON starts at the first line that opens an object.
    start = 0 if proc.stdout.startswith('{') else proc.stdout.find('\n{') + 1
    proc.data = json.loads(proc.stdout[start:]) if proc.returncode == 0 and '--list' in argv else None  # type: ignore[attr-defined]
    return proc


def hostvars(proc) -> dict:
    return plain(proc.data['_meta']['hostvars'])


def hosts_of(proc, group: str = 'aws_ssm') -> set[str]:
    return set(proc.data.get(group, {}).get('hosts', []))


def calls(emu) -> dict[str, dict[str, int]]:
    found = emu.admin('GET', 'calls')['calls']
    return {service: found.get(service, {}) for service in ('aws-ssm', 'aws-ec2')}


# ---------------------------------------------------------------------------------------------- default world

def test_online_nodes_wired_to_the_connection(emu, tmp_path):
    proc = inventory(emu, tmp_path, {})
    facts = hostvars(proc)
    # Offline (db-1) is left out; the stopped instance is not a managed node at all.
    assert set(facts) == ONLINE and hosts_of(proc) == ONLINE
    web = facts[WEB1]
    assert web['ansible_connection'] == 'cloudexec.core.aws_ssm'
    assert (web['ansible_aws_ssm_instance_id'], web['ansible_aws_ssm_region']) == (WEB1, 'us-east-1')
    node = web['aws_ssm']
    assert (node['name'], node['resource_type'], node['ping_status'], node['platform_type']) == ('web-1', 'EC2Instance', 'Online', 'Linux')
    assert node['tags'] == {'Name': 'web-1', 'app': 'web', 'env': 'demo'}       # EC2's tags
    assert node['agent_version'] == '3.3.1802.0' and node['is_latest_version'] is True
    assert node['ip_address'] == '172.31.0.10' and node['computer_name'].startswith('ip-172-31-0-10')
    assert (node['instance_state'], node['vpc_id'], node['availability_zone']) == ('running', 'vpc-emulator0001', 'us-east-1a')
    assert node['last_ping'].startswith('20')
    hybrid = facts[HYBRID]['aws_ssm']
    assert (hybrid['resource_type'], hybrid['name'], hybrid['platform_name']) == ('ManagedInstance', 'onprem-1', 'Ubuntu')
    assert hybrid['tags'] == {'app': 'legacy', 'env': 'demo', 'site': 'dc1'}   # SSM's ListTagsForResource
    assert hybrid['activation_id'] and hybrid['computer_name'] == 'onprem-1.corp.example'
    assert facts[HYBRID]['ansible_aws_ssm_instance_id'] == HYBRID
    # One EC2 call for every instance's name and tags; one ListTagsForResource, for the one hybrid node.
    seen = calls(emu)
    assert seen['aws-ec2'] == {'DescribeInstances': 1}
    assert seen['aws-ssm'] == {'DescribeInstanceInformation': 1, 'ListTagsForResource': 1}


def test_include_offline(emu, tmp_path):
    proc = inventory(emu, tmp_path, {'include_offline': True})
    facts = hostvars(proc)
    assert set(facts) == ONLINE | {DB1}                       # never the stopped instance
    assert facts[DB1]['aws_ssm']['ping_status'] == 'ConnectionLost' and facts[DB1]['aws_ssm']['name'] == 'db-1'
    assert hosts_of(proc, 'ping_status_connectionlost') == {DB1}
    assert hosts_of(proc, 'ping_status_online') == ONLINE


def test_groups_keyed_groups_and_compose(emu, tmp_path):
    proc = inventory(emu, tmp_path, {
        'hostnames': ['tag:Name', 'name'],
        'keyed_groups': [{'key': 'aws_ssm.platform_type', 'prefix': 'os'}, {'key': "aws_ssm.tags.app | default('none')", 'prefix': 'app'}],
        'compose': {'short': "aws_ssm.instance_id[-4:]", 'ansible_user': "'ops'"},
        'groups': {'hybrid': "aws_ssm.resource_type == 'ManagedInstance'", 'composed': "short == '0701'"},
    })
    facts = hostvars(proc)
    assert set(facts) == {NAMES[n] for n in ONLINE}           # EC2 Name tags, and the activation's name for mi-
    assert hosts_of(proc) == set(facts)
    assert hosts_of(proc, 'platform_linux') == {'web-1', 'web-2', 'banner-1', 'app-1', 'onprem-1'}
    assert hosts_of(proc, 'platform_windows') == hosts_of(proc, 'os_Windows') == {'win-1'}
    assert hosts_of(proc, 'resource_type_managedinstance') == hosts_of(proc, 'hybrid') == {'onprem-1'}
    assert hosts_of(proc, 'app_web') == {'web-1', 'web-2'}
    assert hosts_of(proc, 'app_legacy') == {'onprem-1'}       # a hybrid node's SSM tag
    assert hosts_of(proc, 'composed') == {'web-1'}
    assert facts['app-1']['short'] == '0705' and facts['app-1']['ansible_user'] == 'ops'


def test_hostnames_ec2_style_and_fallback(emu, tmp_path):
    proc = inventory(emu, tmp_path, {'hostnames': ['tag:app', 'computer-name']})
    facts = hostvars(proc)
    # The first node with tag app=web takes "web"; the second falls to its computer name; win-1 to EC2AMAZ-WIN0001.
    assert {'web', 'api', 'bastion', 'iis', 'legacy'} <= set(facts)
    assert 'EC2AMAZ-WIN0001' not in facts and facts['iis']['ansible_aws_ssm_instance_id'] == WIN
    assert facts[next(n for n in facts if n.startswith('ip-172-31-0-11'))]['ansible_aws_ssm_instance_id'] == WEB2
    proc = inventory(emu, tmp_path, {'hostnames': ['{nope}']}, check=False)
    assert proc.returncode != 0 and "Unknown field 'nope'" in proc.stderr


@pytest.mark.parametrize(('filters', 'expected'), [
    ({'PlatformTypes': 'Windows'}, {WIN}),
    ({'ResourceType': ['ManagedInstance']}, {HYBRID}),
    ({'tag:app': ['web', 'db']}, {WEB1, WEB2}),                # db-1 matches but is offline
    ({'InstanceIds': [WEB1, DB1]}, {WEB1}),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_filters_go_to_the_api(emu, tmp_path, filters, expected):
    proc = inventory(emu, tmp_path, {'filters': filters})
    assert set(hostvars(proc)) == expected


@pytest.mark.parametrize(('filters', 'words'), [
    ({'Platform': 'Linux'}, "'Platform' is not a filter key"),
    ({'tag:app': 'web', 'PlatformTypes': 'Linux'}, 'cannot be combined'),
    ({'PingStatus': []}, 'PingStatus needs 1 to 100 values'),
])
def test_bad_filters_are_refused_before_any_call(emu, tmp_path, filters, words):
    proc = inventory(emu, tmp_path, {'filters': filters}, check=False)
    assert proc.returncode != 0 and 'filters' in proc.stderr and words in proc.stderr
    assert calls(emu) == {'aws-ssm': {}, 'aws-ec2': {}}


def test_file_name_must_end_with_aws_ssm_yml(emu, tmp_path):
    proc = inventory(emu, tmp_path, {}, name='test.yml', check=False)
    assert proc.returncode != 0 and calls(emu)['aws-ssm'] == {}


def test_cache_hit_makes_no_api_calls(emu, tmp_path):
    config = {'cache': True, 'cache_plugin': 'ansible.builtin.jsonfile', 'cache_connection': str(tmp_path / 'cache'),
              'cache_timeout': 600}
    first = inventory(emu, tmp_path, config)
    assert calls(emu)['aws-ssm'].get('DescribeInstanceInformation') == 1
    emu.admin('POST', 'calls/reset')
    second = inventory(emu, tmp_path, config)
    assert calls(emu) == {'aws-ssm': {}, 'aws-ec2': {}}
    assert hostvars(second) == hostvars(first)
    # include_offline applies to the cached answer: still no call.
    assert set(hostvars(inventory(emu, tmp_path, {**config, 'include_offline': True}))) == ONLINE | {DB1}
    assert calls(emu) == {'aws-ssm': {}, 'aws-ec2': {}}
    # A filter shapes the query: a new key, a new call.
    assert set(hostvars(inventory(emu, tmp_path, {**config, 'filters': {'PlatformTypes': 'Windows'}}))) == {WIN}
    assert calls(emu)['aws-ssm'].get('DescribeInstanceInformation') == 1


def test_credentials_never_in_output(emu, tmp_path):
    secret = emu['aws']['secret_key']
    proc = inventory(emu, tmp_path, {'access_key': emu['aws']['access_key'], 'secret_key': secret}, '--list', '-vvv')
    assert set(hostvars(proc)) == ONLINE
    assert secret not in proc.stdout + proc.stderr
    assert not {k for v in hostvars(proc).values() for k in v if 'secret' in k or 'access_key' in k or 'token' in k}
    proc = inventory(emu, tmp_path, {}, check=False, AWS_SECRET_ACCESS_KEY='not-the-secret-value')
    assert proc.returncode != 0 and 'InvalidSignatureException' in proc.stderr
    assert 'not-the-secret-value' not in proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------- custom world

FLEET = 60
CUSTOM_WORLD = {
    'aws': {
        'region': 'us-east-1',
        'credentials': [
            {'access_key': 'AKIAEMULATOR00000001', 'secret_key': 'emulator/secret/key/for/tests/only00001'},
            {'access_key': 'AKIASSMINVNOEC2DESCR', 'secret_key': 'ssm/inventory/no-ec2',
             'deny': ['ec2:DescribeInstances', 'ssm:ListTagsForResource']},
        ],
        'managed_nodes': [
            {'count': FLEET, 'id_pattern': 'i-0f1ee7000000{index:05x}', 'name_pattern': 'fleet-{index:02d}', 'tags': {'fleet': 'big'}},
            {'id': 'mi-0e0e0e0e0e0e0e0e1', 'name': 'odd-1', 'tags': {'note': EVIL, 'Name': 'named-host'}},
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
    custom_emu.admin('POST', 'calls/reset')
    return custom_emu


def test_pages_of_fifty_and_unsafe_tags(custom, tmp_path):
    proc = inventory(custom, tmp_path, {'hostnames': ['tag:note', 'tag:Name'], 'compose': {'note_copy': 'aws_ssm.tags.note'}})
    facts = hostvars(proc)
    assert len(facts) == FLEET + 1
    assert calls(custom)['aws-ssm']['DescribeInstanceInformation'] == 2       # 61 nodes in pages of 50
    assert facts['fleet-07']['aws_ssm']['tags'] == {'Name': 'fleet-07', 'fleet': 'big'}
    raw = proc.data['_meta']['hostvars']['named-host']                        # a tag holding braces is no host name
    assert raw['aws_ssm']['tags']['note'] == {'__ansible_unsafe': EVIL}
    assert facts['named-host']['note_copy'] == EVIL and 'uid=' not in proc.stdout


def test_without_tag_permissions_nodes_come_without_names_and_tags(custom, tmp_path):
    proc = inventory(custom, tmp_path, {'hostnames': ['tag:Name', 'name']}, AWS_ACCESS_KEY_ID='AKIASSMINVNOEC2DESCR',
                     AWS_SECRET_ACCESS_KEY='ssm/inventory/no-ec2')
    facts = hostvars(proc)
    assert len(facts) == FLEET + 1
    assert 'i-0f1ee700000000001' in facts and facts['i-0f1ee700000000001']['aws_ssm']['name'] is None
    assert facts['odd-1']['aws_ssm']['tags'] == {}          # the activation's name still comes from SSM
    assert 'UnauthorizedOperation' in proc.stderr and 'ec2:DescribeInstances' in proc.stderr
    assert 'AccessDeniedException' in proc.stderr and 'ssm:ListTagsForResource' in proc.stderr


def test_inventory_hosts_answer_through_the_connection(emu, tmp_path):
    """The inventory's hosts need nothing more: `ansible -m ping` reaches them through cloudexec.core.aws_ssm."""
    path = tmp_path / 'nodes.aws_ssm.yml'
    path.write_text(yaml.safe_dump({'plugin': PLUGIN}))
    environment = ansible_env(emu, {'ANSIBLE_INVENTORY_ENABLED': PLUGIN, 'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'ansible-tmp'),
                                    'CLOUDEXEC_CONTROL_DIR': str(tmp_path / 'cp')})
    chosen = [WEB1, HYBRID, BANNER]
    try:
        proc = subprocess.run([cli('ansible'), '-i', str(path), ':'.join(chosen), '-m', 'ping', '-o'], env=environment,
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert sorted(line.split()[0] for line in proc.stdout.splitlines() if '"pong"' in line) == sorted(chosen)
        assert set(calls(emu)['aws-ssm']) >= {'DescribeInstanceInformation', 'StartSession'}
    finally:
        subprocess.run([cli('ansible'), '-i', str(path), ':'.join(chosen), '-m', 'meta', '-a', 'reset_connection'],
                       env=environment, capture_output=True, timeout=120, check=False)
