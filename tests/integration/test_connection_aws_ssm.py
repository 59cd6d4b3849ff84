# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The aws_ssm connection plugin through real ``ansible`` / ``ansible-playbook`` runs against the emulator.

What this plugin promises on top of the shared conformance suite (test_connection_conformance.py): an inventory written
for amazon.aws.aws_ssm works with only ``ansible_connection`` changed (its credentials, region, document, timeout and
retries variables read; its S3 and plugin-path variables accepted, with one warning per run); one StartSession per host
across a play; the banner node's profile, the Run As document and the principal's SSMSessionRunAs tag, a KMS-encrypted
session; nothing of the terminal (echo, CR, bracketed paste, prompt, banner) in results; an offline, a stopped and an
unknown node each told apart; no secret at -vvvv.

One emulator for the module: the default world, with the SSM agent's start-up delays cut.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from cloudexec_emulator.testing import start_emulator

from helpers import AnsibleRun, PLAYBOOKS, ansible_adhoc, ansible_playbook

DEFAULT_WORLD = Path(__file__).resolve().parents[1] / 'emulator' / 'cloudexec_emulator' / 'worlds' / 'default.yml'
WEB_1, WEB_2, DB_1, BANNER_1, APP_1, OLD_1 = (f'i-0a1b2c3d4e5f6070{n}' for n in (1, 2, 3, 4, 5, 7))
ONPREM_1 = 'mi-0a1b2c3d4e5f60801'
BANNER = '*** banner-1: authorized use only ***'
# The default world's temporary credential (its session token must come along) and the principal tagged
# SSMSessionRunAs=deploy: given through amazon.aws.aws_ssm's variables, not the environment.
TEMP_KEY = {'ansible_aws_ssm_access_key_id': 'ASIAEMULATOR00000002',
            'ansible_aws_ssm_secret_access_key': 'emulator/secret/key/for/tests/only00002',
            'ansible_aws_ssm_session_token': 'emulator-session-token-0002'}
RUN_AS_KEY = {'ansible_aws_ssm_access_key_id': 'AKIAEMULATORRUNAS001',
              'ansible_aws_ssm_secret_access_key': 'emulator/secret/key/for/tests/runas'}
SECRETS = ('emulator/secret/key/for/tests/only00002', 'emulator-session-token-0002', 'emulator/secret/key/for/tests/runas')
# What amazon.aws.aws_ssm needed and this connection does not: accepted, one warning per run.
S3_VARS = {'ansible_aws_ssm_bucket_name': 'transfer-bucket', 'ansible_aws_ssm_bucket_endpoint_url': 'https://s3.us-east-1.amazonaws.com',
           'ansible_aws_ssm_bucket_sse_mode': 'aws:kms', 'ansible_aws_ssm_bucket_sse_kms_key_id': 'alias/transfer',
           'ansible_aws_ssm_s3_addressing_style': 'virtual', 'ansible_aws_ssm_plugin': '/usr/local/bin/session-manager-plugin'}
WARNING = 'cloudexec.core.aws_ssm does not use ansible_aws_ssm_bucket_name, ansible_aws_ssm_bucket_endpoint_url'
# The hosts of group ssm, and the user each one's session runs as.
USERS = {'web-1': 'ssm-user', ONPREM_1: 'ssm-user', 'banner-1': 'ssm-user', 'app-1': 'deploy', 'kms-1': 'ssm-user'}
SANDBOXES = {'web-1': WEB_1, ONPREM_1: ONPREM_1, 'banner-1': BANNER_1, 'app-1': APP_1, 'kms-1': WEB_2}


@pytest.fixture(scope='module')
def ssm_emu(tmp_path_factory):
    directory = tmp_path_factory.mktemp('aws-ssm-connection')
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['aws']['ssm'] = {'agent_start_ms': 10, 'output_delay_ms': 20}
    path = directory / 'world.yml'
    path.write_text(yaml.safe_dump(world, allow_unicode=True))
    with start_emulator(world=path, state_dir=directory / 'state') as info:
        yield info


@pytest.fixture
def emu(ssm_emu):
    ssm_emu.admin('DELETE', 'faults')
    ssm_emu.admin('POST', 'calls/reset')
    yield ssm_emu
    ssm_emu.admin('DELETE', 'faults')


def drop_in_inventory(directory: Path) -> Path:
    """An inventory as written for amazon.aws.aws_ssm; ansible_connection is the one line changed."""
    hosts: dict[str, Any] = {
        'web-1': {'ansible_aws_ssm_instance_id': WEB_1, **TEMP_KEY},
        ONPREM_1: {**TEMP_KEY},   # no instance id: the inventory name is the node id, as with amazon.aws.aws_ssm
        'banner-1': {'ansible_aws_ssm_instance_id': BANNER_1, **TEMP_KEY},
        'app-1': {'ansible_aws_ssm_instance_id': APP_1, 'ansible_aws_ssm_document': 'CloudExec-RunAsShell', **RUN_AS_KEY},
        'kms-1': {'ansible_aws_ssm_instance_id': WEB_2, 'ansible_aws_ssm_document': 'CloudExec-EncryptedShell'},
    }
    path = directory / 'inventory.yml'
    path.write_text(yaml.safe_dump({'all': {
        'children': {
            'ssm': {'hosts': hosts},
            'unreachable': {'hosts': {
                'db-1': {'ansible_aws_ssm_instance_id': DB_1},
                'old-1': {'ansible_aws_ssm_instance_id': OLD_1},
                'gone-1': {'ansible_aws_ssm_instance_id': 'i-0a1b2c3d4e5f6ffff'},
                'nodoc-1': {'ansible_aws_ssm_instance_id': WEB_1, 'ansible_aws_ssm_document': 'No-Such-Document'},
                'win-1': {'ansible_aws_ssm_instance_id': 'i-0a1b2c3d4e5f60706', 'ansible_shell_type': 'powershell'},
                # Run As by the principal's tag (deploy), on a node without that user.
                'norunas-1': {'ansible_aws_ssm_instance_id': WEB_1, 'ansible_aws_ssm_document': 'CloudExec-RunAsShell', **RUN_AS_KEY},
            }},
        },
        'vars': {
            'ansible_connection': 'cloudexec.core.aws_ssm',   # was: amazon.aws.aws_ssm
            'ansible_aws_ssm_region': 'us-east-1',
            'ansible_aws_ssm_timeout': 60,
            'ansible_aws_ssm_retries': 2,
            'ansible_python_interpreter': sys.executable,
            **S3_VARS,
        },
    }}))
    return path


def sandbox(emu, host: str) -> Path:
    return Path(emu['state_dir']) / 'sandboxes' / 'aws-ssm' / SANDBOXES[host]


def home(emu, host: str) -> Path:
    return sandbox(emu, host) / 'home' / USERS[host]


def hygienic(text: str) -> None:
    """Nothing of the terminal in a result."""
    assert '\r' not in text and '\x1b' not in text and BANNER not in text and 'printf' not in text, repr(text)


def start_sessions(emu) -> int:
    return emu.calls('aws-ssm', 'StartSession')


def active_sessions(emu) -> list[dict[str, Any]]:
    """Session Manager's Active sessions (Connecting, Connected, Disconnected, Terminating) of the account."""
    ssm = boto3.client('ssm', endpoint_url=emu['aws']['endpoint_url'], region_name='us-east-1',
                       aws_access_key_id=emu['aws']['access_key'], aws_secret_access_key=emu['aws']['secret_key'])
    return ssm.describe_sessions(State='Active')['Sessions']


def test_adhoc_ping_with_an_amazon_aws_inventory(emu, tmp_path, control_dir):
    """ansible all -m ping: every node answers; the S3 and plugin settings are warned about once; no secret at -vvvv."""
    inventory = drop_in_inventory(tmp_path)
    run = ansible_adhoc(emu, 'ping', '', '-i', str(inventory), '-vvvv', hosts='ssm',
                        extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir)})
    assert run.rc == 0, run.output
    assert {r['host'] for r in run.results if r['status'] == 'ok' and r['result'].get('ping') == 'pong'} == set(USERS)
    assert run.output.count(WARNING) == 1, run.output
    assert 'ansible_aws_ssm_plugin' in run.output and 'ansible_aws_ssm_s3_addressing_style' in run.output
    for secret in SECRETS:
        assert secret not in run.output
    assert '/v1/data-channel/' not in run.output   # the stream URL locates the session
    assert start_sessions(emu) == len(USERS)
    # The encrypted document's session went through the KMS handshake.
    assert emu.admin('GET', 'calls')['ws']['aws-ssm-session']['kms_sessions'] == 1


def test_play_with_copy_template_fetch_and_become(emu, tmp_path, control_dir):
    """A play of the drop-in inventory: one session per host, exact results, files there and back, become on top of
    Run As (the principal's tag beats the document's default user)."""
    inventory = drop_in_inventory(tmp_path)
    template = tmp_path / 'rendered.conf.j2'
    template.write_text('host = {{ inventory_hostname }}\nnode = {{ ansible_aws_ssm_instance_id | default(inventory_hostname) }}\n')
    fetched = tmp_path / 'fetched'
    run = ansible_playbook(emu, PLAYBOOKS / 'aws_ssm_drop_in.yml', '-i', str(inventory), '--limit', 'ssm', '--forks', '5',
                           extra_vars={'template_src': str(template), 'fetch_dir': str(fetched)},
                           extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir)})
    assert run.rc == 0, run.output
    assert start_sessions(emu) == len(USERS), 'one StartSession per host for the whole play'
    for host, user in USERS.items():
        raw = run.result('raw output comes back exact', host)
        assert (raw['stdout'], raw['stderr'], raw['rc']) == ('one\ntwo\n', 'err\n', 0), raw
        where = run.result('the session user and where the session starts', host)['stdout']
        assert where == f'{user}|{home(emu, host)}|{home(emu, host)}', where
        output = run.result("a module's output", host)
        assert output['stdout'] == 'a b' and output['stdout_lines'] == ['a b'], output
        for task in ('raw output comes back exact', 'the session user and where the session starts', "a module's output"):
            hygienic(run.result(task, host)['stdout'])
        assert run.result('become', host)['stdout'] == f'copied to {host}'
        assert 'sudo user=root' in (home(emu, host) / '.cloudexec-become.log').read_text()
        rendered = home(emu, host) / 'dropin' / 'rendered.conf'
        assert rendered.read_text().startswith(f'host = {host}\n') and rendered.stat().st_mode & 0o777 == 0o640
        assert (fetched / host / 'dropin' / 'rendered.conf').read_bytes() == rendered.read_bytes()
        assert (home(emu, host) / 'dropin' / 'copied.txt').read_text() == f'copied to {host}\n'
    assert run.output.count(WARNING) == 1, run.output
    # reset_connection ended every session: the shell exits, so the agent ends it (or TerminateSession does).
    deadline = time.monotonic() + 10
    while (active := active_sessions(emu)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert active == []


def unreachable(run: AnsibleRun, host: str) -> str:
    record = run.record('ping', host)
    assert record['status'] == 'unreachable', record
    return record['result']['msg']


def test_nodes_that_cannot_be_reached_are_told_apart(emu, tmp_path, control_dir):
    """TargetNotConnected for an offline, a stopped and an unknown node, each explained; a missing document named;
    a Run As user the node does not have; a Windows node refused."""
    inventory = drop_in_inventory(tmp_path)
    run = ansible_adhoc(emu, 'ping', '', '-i', str(inventory), hosts='unreachable',
                        extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir)})
    assert run.rc != 0
    offline = unreachable(run, 'db-1')
    assert f'managed node {DB_1} is not connected: DescribeInstanceInformation reports PingStatus ConnectionLost' in offline
    assert 'amazon-ssm-agent' in offline and 'ssmmessages' in offline
    for host, node in (('old-1', OLD_1), ('gone-1', 'i-0a1b2c3d4e5f6ffff')):
        message = unreachable(run, host)
        assert f'{node} is not a managed node in us-east-1: DescribeInstanceInformation does not list it' in message
        assert 'ansible_aws_ssm_region' in message
    nodoc = unreachable(run, 'nodoc-1')
    assert 'InvalidDocument' in nodoc and 'No-Such-Document' in nodoc
    # A Windows node (amazon.aws.aws_ssm's PowerShell hosts) is refused before any call.
    assert 'does not support Windows nodes' in unreachable(run, 'win-1')
    norunas = unreachable(run, 'norunas-1')
    assert 'failed to start pty since RunAs user deploy does not exist' in norunas and 'SSMSessionRunAs' in norunas
    # TargetNotConnected is not tried again (reconnection_retries is for failures on the way), nor a session the agent
    # refused.
    assert start_sessions(emu) == 5


def test_a_connection_lost_mid_command_is_resumed(emu, tmp_path, control_dir):
    """The websocket drops while a command prints: ResumeSession on the same session, the output exact and whole,
    nothing run twice, no second StartSession."""
    inventory = drop_in_inventory(tmp_path)
    emu.admin('POST', 'faults', {'service': 'ws', 'action': 'StartSession', 'drop_after_bytes': 3000})
    command = 'head -c 20000 /dev/zero | tr "\\0" x | wc -c; head -c 9000 /dev/zero | tr "\\0" y; echo >> ran.txt'
    run = ansible_adhoc(emu, 'raw', command, '-i', str(inventory), hosts='web-1',
                        extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir)})
    assert run.rc == 0, run.output
    assert run.result('raw')['stdout'].split() == ['20000', 'y' * 9000]
    assert (home(emu, 'web-1') / 'ran.txt').read_text() == '\n'
    counters = emu.admin('GET', 'calls')
    assert counters['ws']['aws-ssm-session']['drops'] >= 1 and counters['calls']['aws-ssm']['ResumeSession'] >= 1, counters
    assert start_sessions(emu) == 1
