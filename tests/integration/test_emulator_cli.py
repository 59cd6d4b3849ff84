# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The emulator's command line: the listening line, the JSON and env files, worlds, shutdown."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config

from cloudexec_emulator.testing import RUN_SCRIPT, start_emulator

ENV_KEYS = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_ENDPOINT_URL_ECS',
            'ALICLOUD_ACCESS_KEY', 'ALICLOUD_SECRET_KEY', 'ALICLOUD_REGION', 'ALICLOUD_ECS_ENDPOINT', 'ALICLOUD_ECI_ENDPOINT',
            'ALIBABA_CLOUD_ACCESS_KEY_ID', 'ALIBABA_CLOUD_ACCESS_KEY_SECRET', 'ALIBABA_CLOUD_REGION_ID']

# Secrets with shell metacharacters prove the env file quotes its values.
AWKWARD_WORLD = textwrap.dedent('''\
    aws:
      region: eu-central-1
      account_id: "210987654321"
      credentials:
        - {access_key: AKIAAWKWARD000000001, secret_key: "it's a $ecret `x` \\"y\\" z"}
    alicloud:
      region: cn-shanghai
      credentials:
        - {access_key_id: LTAIAWKWARD, access_key_secret: "a b;c&d|e$(f)"}
      instances:
        - count: 150
          id_pattern: "i-fleet{index:04d}"
          name_pattern: "fleet-{index:03d}"
          tags: {fleet: big}
''')


def sourced_env(env_file) -> dict[str, str]:
    out = subprocess.run(['bash', '-c', f'set -eu; source {env_file}; env -0'], check=True, capture_output=True, env={'PATH': os.environ['PATH']})
    return dict(item.split('=', 1) for item in out.stdout.decode().split('\0') if '=' in item)


def test_json_file_and_env_file_for_default_world(emulator):
    info = json.loads(emulator.json_file.read_text())
    endpoint = info['endpoint']
    assert endpoint.startswith('http://127.0.0.1:') and int(endpoint.rsplit(':', 1)[1]) > 0
    assert info['pid'] == emulator.process.pid
    assert os.path.isdir(os.path.join(info['state_dir'], 'sandboxes', 'aws-ecs'))
    assert info['aws'] == {'endpoint_url': endpoint, 'region': 'us-east-1', 'access_key': 'AKIAEMULATOR00000001',
                           'secret_key': 'emulator/secret/key/for/tests/only00001'}
    assert info['alicloud'] == {'ecs_endpoint': endpoint, 'eci_endpoint': endpoint, 'region': 'cn-hangzhou',
                                'access_key': 'LTAIEMULATOR0000000001', 'secret_key': 'EmulatorSecretForTestsOnly000001'}
    env = sourced_env(emulator.env_file)
    assert {k: env[k] for k in ENV_KEYS} == {k: emulator.env[k] for k in ENV_KEYS}
    assert env['AWS_ENDPOINT_URL_ECS'] == env['ALICLOUD_ECS_ENDPOINT'] == env['ALICLOUD_ECI_ENDPOINT'] == endpoint
    assert env['ALIBABA_CLOUD_REGION_ID'] == 'cn-hangzhou' and env['AWS_DEFAULT_REGION'] == 'us-east-1'
    assert 'AWS_SESSION_TOKEN' not in env


def test_custom_world_quoting_and_fleet(tmp_path):
    world = tmp_path / 'world.yml'
    world.write_text(AWKWARD_WORLD)
    state = tmp_path / 'state'
    with start_emulator(world=world, state_dir=state) as emu:
        env = sourced_env(emu.env_file)
        assert env['AWS_SECRET_ACCESS_KEY'] == 'it\'s a $ecret `x` "y" z'
        assert env['ALICLOUD_SECRET_KEY'] == env['ALIBABA_CLOUD_ACCESS_KEY_SECRET'] == 'a b;c&d|e$(f)'
        assert env['AWS_REGION'] == 'eu-central-1' and env['ALICLOUD_REGION'] == 'cn-shanghai'
        assert len(os.listdir(state / 'sandboxes' / 'ali-ecs')) == 150
        client = EcsClient(Config(access_key_id='LTAIAWKWARD', access_key_secret='a b;c&d|e$(f)', protocol='http',
                                  endpoint=emu.endpoint.split('://', 1)[1], region_id='cn-shanghai'))
        ids = []
        for page in (1, 2):
            body = client.describe_instances(ecs_models.DescribeInstancesRequest(region_id='cn-shanghai', page_size=100, page_number=page)).body
            assert body.total_count == 150
            ids += [i.instance_id for i in body.instances.instance]
        assert ids == [f'i-fleet{n:04d}' for n in range(1, 151)]
        assert emu.admin('GET', 'world')['alicloud']['instances'][149]['id'] == 'i-fleet0150'
    # A given state dir is kept after shutdown.
    assert (state / 'sandboxes' / 'ali-ecs' / 'i-fleet0001').is_dir()


def test_foreground_line_and_clean_shutdown(tmp_path):
    json_file = tmp_path / 'emu.json'
    proc = subprocess.Popen([sys.executable, str(RUN_SCRIPT), '--json-file', str(json_file)],  # pylint: disable=consider-using-with
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        info = json.loads(json_file.read_text())
        assert line == f'cloudexec emulator listening on {info["endpoint"]}\n'
        assert os.path.isdir(info['state_dir'])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        # The temporary state dir goes away with the process.
        assert not os.path.exists(info['state_dir'])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize('content, message', [
    ('aws: {clusters: [{name: a, tasks: [{family: x, launch_type: MOON}]}]}', 'launch_type'),
    ('alicloud: {instances: [{id: i-1, colour: blue}]}', 'unknown key(s) colour'),
    ('faults: [{service: aws-ecs, throttle: 1, latency_ms: 5}]', 'exactly one of'),
])
def test_bad_world_is_refused(tmp_path, content, message):
    world = tmp_path / 'bad.yml'
    world.write_text(content)
    out = subprocess.run([sys.executable, str(RUN_SCRIPT), '--world', str(world)], capture_output=True, timeout=30, check=False)
    assert out.returncode == 2
    assert message in out.stderr.decode()


def test_world_faults_apply_from_start(tmp_path):
    world = tmp_path / 'faulty.yml'
    world.write_text('alicloud:\n  credentials: [{access_key_id: K, access_key_secret: S}]\nfaults:\n  - {service: ali-ecs, throttle: 1}\n')
    with start_emulator(world=world) as emu:
        rules = emu.admin('GET', 'faults')['faults']
        assert [(r['service'], r['action'], r['throttle']) for r in rules] == [('ali-ecs', '*', 1)]
        assert emu.admin('DELETE', f'faults/{rules[0]["id"]}') == {'deleted': rules[0]['id']}
        assert emu.admin('GET', 'faults')['faults'] == []
