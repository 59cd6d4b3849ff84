# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How settings and credentials go from an inventory file to the connection, for all three inventories.

The environment holds no cloud variable at all: the region, the endpoint and the profile come from the inventory file
only. They must reach every host as the connection's own variables (so a play reaches the hosts the inventory found),
while keys never reach host variables (ansible-inventory --list, at any verbosity, would show them).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import plain, run_ansible

AWS_WEB = 'demo_1f0e1c2d3b4a59687766554433221100_web'
ECS_WEB = 'i-bp1demo000000000001'
ECI_WEB = 'eci-bp1demo00000000001_web'


def blank_env(tmp_path: Path, control_dir: Path, **extra: str) -> dict[str, str]:
    """No AWS_*/ALICLOUD_*/ALIBABA_CLOUD_* variable (run_ansible drops the caller's), no ~/.aws or ~/.aliyun."""
    home = tmp_path / 'home'
    home.mkdir(exist_ok=True)
    return {'HOME': str(home), 'ALIBABA_CLOUD_ECS_METADATA_DISABLED': 'true', 'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'true',
            'CLOUDEXEC_CONTROL_DIR': str(control_dir), **extra}


def aws_profile(emu, tmp_path: Path) -> dict[str, str]:
    """A named AWS profile 'ops' in files of its own; the variables that point boto3 at them."""
    credentials, config = tmp_path / 'aws-credentials', tmp_path / 'aws-config'
    credentials.write_text(f'[ops]\naws_access_key_id = {emu["aws"]["access_key"]}\n'
                           f'aws_secret_access_key = {emu["aws"]["secret_key"]}\n')
    config.write_text('[profile ops]\nregion = us-east-1\n')
    return {'AWS_SHARED_CREDENTIALS_FILE': str(credentials), 'AWS_CONFIG_FILE': str(config)}


def aliyun_profile(emu, tmp_path: Path) -> str:
    """An Alibaba Cloud CLI configuration file with the profile 'ops'."""
    path = tmp_path / 'aliyun-config.json'
    path.write_text(json.dumps({'current': 'default', 'profiles': [
        {'name': 'ops', 'mode': 'AK', 'access_key_id': emu['alicloud']['access_key'],
         'access_key_secret': emu['alicloud']['secret_key'], 'region_id': 'cn-hangzhou'}]}))
    return str(path)


def write_inventory(tmp_path: Path, name: str, config: dict, group_vars: dict | None = None) -> Path:
    directory = tmp_path / 'inventory'
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(config))
    if group_vars:
        (directory / 'group_vars').mkdir(exist_ok=True)
        for group, values in group_vars.items():
            (directory / 'group_vars' / f'{group}.yml').write_text(yaml.safe_dump(values))
    return path


def setup_case(kind: str, emu, tmp_path: Path) -> tuple[Path, str, dict[str, str], dict[str, str], list[str]]:
    """(inventory file, host, expected connection host vars, extra environment, secrets) for one inventory, by profile."""
    if kind == 'aws_ecs':
        endpoint = emu['aws']['endpoint_url']
        config = {'plugin': 'cloudexec.core.aws_ecs', 'regions': ['us-east-1'], 'endpoint_url': endpoint, 'profile': 'ops',
                  'clusters': ['demo'], 'services': ['web']}
        expected = {'ansible_aws_region': 'us-east-1', 'ansible_aws_endpoint_url': endpoint, 'ansible_aws_profile': 'ops'}
        return (write_inventory(tmp_path, 'test.aws_ecs.yml', config), AWS_WEB, expected, aws_profile(emu, tmp_path),
                [emu['aws']['secret_key'], emu['aws']['access_key']])
    profile_file = aliyun_profile(emu, tmp_path)
    product = 'ecs' if kind == 'ali_ecs' else 'eci'
    endpoint = emu['alicloud'][f'{product}_endpoint']
    config = {'plugin': f'cloudexec.core.{kind}', 'regions': ['cn-hangzhou'], f'{product}_endpoint': endpoint, 'profile': 'ops',
              'shared_credentials_file': profile_file}
    expected = {'ansible_alicloud_region': 'cn-hangzhou', f'ansible_alicloud_{product}_endpoint': endpoint,
                'ansible_alicloud_profile': 'ops', 'ansible_alicloud_shared_credentials_file': profile_file}
    return (write_inventory(tmp_path, f'test.{kind}.yml', config), ECS_WEB if kind == 'ali_ecs' else ECI_WEB, expected, {},
            [emu['alicloud']['secret_key'], emu['alicloud']['access_key']])


PLAY = [{'hosts': 'all', 'gather_facts': False, 'tasks': [
    {'name': 'reach', 'ansible.builtin.raw': 'echo reached'},
    {'name': 'close', 'ansible.builtin.meta': 'reset_connection'},
]}]


@pytest.mark.parametrize('kind', ['aws_ecs', 'ali_ecs', 'ali_eci'])
def test_profile_region_and_endpoint_from_the_inventory_file_reach_the_hosts(kind, emu, tmp_path, control_dir):
    inventory, host, expected, env, secrets = setup_case(kind, emu, tmp_path)
    run = run_ansible('ansible-inventory', ['-i', inventory, '--list', '-vvvv'], None, extra_env=blank_env(tmp_path, control_dir, **env))
    assert run.rc == 0, run.output
    data = json.loads(run.stdout[run.stdout.index('{'):])
    hostvars = plain(data['_meta']['hostvars'])
    assert host in hostvars, sorted(hostvars)
    assert {name: hostvars[host].get(name) for name in expected} == expected
    assert not [name for name in hostvars[host] if any(word in name for word in ('secret', 'access_key', 'token'))]
    for secret in secrets:
        assert secret not in run.stdout + run.stderr

    playbook = tmp_path / 'reach.yml'
    playbook.write_text(yaml.safe_dump(PLAY))
    run = run_ansible('ansible-playbook', ['-i', inventory, '-l', host, playbook, '-vvvv'], None,
                      extra_env=blank_env(tmp_path, control_dir, **env), timeout=300)
    assert run.rc == 0, run.output
    assert run.result('reach', host)['stdout'].strip() == 'reached'
    for secret in secrets:
        assert secret not in run.stdout + run.stderr


def test_keys_in_the_inventory_file_list_hosts_only_and_group_vars_give_the_connection_its_own(emu, tmp_path, control_dir):
    """Keys in the inventory file: the hosts are listed, the keys stay out of host variables, the connection says what to
    set; with the connection's variables in group_vars the same play reaches the host."""
    access, secret = emu['aws']['access_key'], emu['aws']['secret_key']
    config = {'plugin': 'cloudexec.core.aws_ecs', 'regions': ['us-east-1'], 'endpoint_url': emu['aws']['endpoint_url'],
              'access_key': access, 'secret_key': secret, 'clusters': ['demo'], 'services': ['web']}
    inventory = write_inventory(tmp_path, 'keys.aws_ecs.yml', config)
    env = blank_env(tmp_path, control_dir)
    listed = run_ansible('ansible-inventory', ['-i', inventory, '--list', '-vvvv'], None, extra_env=env)
    assert listed.rc == 0, listed.output
    assert AWS_WEB in listed.stdout
    assert secret not in listed.stdout + listed.stderr and access not in listed.stdout + listed.stderr

    playbook = tmp_path / 'reach.yml'
    playbook.write_text(yaml.safe_dump(PLAY))
    run = run_ansible('ansible-playbook', ['-i', inventory, '-l', AWS_WEB, playbook], None, extra_env=env, timeout=300)
    assert run.rc != 0
    unreachable = run.record('reach', AWS_WEB)
    assert unreachable['status'] == 'unreachable' and 'NoCredentials' in unreachable['result']['msg']
    assert 'ansible_aws_access_key_id' in unreachable['result']['msg'], unreachable['result']['msg']

    write_inventory(tmp_path, 'keys.aws_ecs.yml', config,
                    group_vars={'aws_ecs': {'ansible_aws_access_key_id': access, 'ansible_aws_secret_access_key': secret}})
    run = run_ansible('ansible-playbook', ['-i', inventory, '-l', AWS_WEB, playbook, '-vvvv'], None, extra_env=env, timeout=300)
    assert run.rc == 0, run.output
    assert run.result('reach', AWS_WEB)['stdout'].strip() == 'reached'
    assert secret not in run.stdout + run.stderr
