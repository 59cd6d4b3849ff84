# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ECS Exec on a cluster whose executeCommandConfiguration encrypts sessions with a KMS key.

The agent asks for a data key in the handshake; the client gets one from KMS GenerateDataKey (the session id and
target id as encryption context) and both ends seal the stream with AES-GCM. The emulator's KMS opens the key for its
agent, so a client that generated the key wrongly (wrong context, wrong halves, no key) gets no command run.
Through the task module and through the connection plugin; and a caller KMS refuses.
"""
from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from cloudexec_emulator.testing import start_emulator

from helpers import ansible_adhoc, ansible_playbook

DEFAULT_WORLD = Path(__file__).resolve().parents[1] / 'emulator' / 'cloudexec_emulator' / 'worlds' / 'default.yml'
KEY = 'arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-0b0a-0908-0706-050403020100'
TASK = 'c0000000000000000000000000000001'
NO_KMS_KEY = {'access_key': 'AKIAEMULATORNOKMS001', 'secret_key': 'emulator/secret/no-kms'}


@pytest.fixture(scope='module')
def kms_emu(tmp_path_factory):
    directory = tmp_path_factory.mktemp('kms')
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['aws']['exec'] = {'agent_start_ms': 10, 'output_delay_ms': 20}
    world['aws']['clusters'].append({'name': 'vault', 'kms_key_id': KEY, 'tasks': [{'id': TASK, 'family': 'vault',
                                                                                    'containers': [{'name': 'app'}]}]})
    world['aws']['credentials'].append({**NO_KMS_KEY, 'principal': 'arn:aws:iam::123456789012:user/no-kms',
                                        'deny': ['kms:GenerateDataKey']})
    (directory / 'world.yml').write_text(yaml.safe_dump(world))
    with start_emulator(world=directory / 'world.yml', state_dir=directory / 'state') as info:
        yield info


def calls(emu) -> dict:
    return emu.admin('GET', 'calls')


def test_module_runs_a_command_in_an_encrypted_session(kms_emu):
    before = calls(kms_emu)
    run = ansible_adhoc(kms_emu, 'cloudexec.core.aws_ecs_exec', {
        'cluster': 'vault', 'task': TASK, 'command': "printf 'sealed %s\\n' \"$(id -un)\"; printf 'to stderr' >&2; exit 3"})
    result = run.results[0]['result']
    assert result['rc'] == 3 and result['stdout_lines'] == ['sealed root'] and result['stderr'] == 'to stderr', run.output
    after = calls(kms_emu)
    assert after['calls']['aws-kms']['GenerateDataKey'] - before['calls'].get('aws-kms', {}).get('GenerateDataKey', 0) == 1
    ws = after['ws']['aws-ecs-exec']
    assert ws.get('kms_sessions', 0) - before.get('ws', {}).get('aws-ecs-exec', {}).get('kms_sessions', 0) == 1
    # The data key and its ciphertext never reach the result.
    assert 'Plaintext' not in json.dumps(result) and 'CiphertextBlob' not in json.dumps(result)


def test_connection_keeps_one_encrypted_session_for_the_play(kms_emu, tmp_path, control_dir):
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(yaml.safe_dump({'all': {'hosts': {'vault': {
        'ansible_connection': 'cloudexec.core.aws_ecs', 'ansible_aws_ecs_cluster': 'vault', 'ansible_aws_ecs_task': TASK,
        'ansible_python_interpreter': '{{ ansible_playbook_python }}'}}}}))
    play = tmp_path / 'play.yml'
    play.write_text(yaml.safe_dump([{'name': 'encrypted', 'hosts': 'vault', 'gather_facts': False, 'tasks': [
        {'name': 'copy', 'ansible.builtin.copy': {'content': 'secret config\n', 'dest': 'sealed.conf', 'mode': '0600'}},
        {'name': 'read', 'ansible.builtin.command': 'cat sealed.conf'},
        {'name': 'close', 'ansible.builtin.meta': 'reset_connection'}]}]))
    before = calls(kms_emu)['calls'].get('aws-kms', {}).get('GenerateDataKey', 0)
    run = ansible_playbook(kms_emu, play, '-i', str(inventory), extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir)})
    assert run.rc == 0, run.output
    assert run.result('read')['stdout'] == 'secret config'
    assert calls(kms_emu)['calls']['aws-kms']['GenerateDataKey'] - before == 1   # one session, one data key


def test_kms_refusal_says_what_to_grant_and_runs_nothing(kms_emu):
    run = ansible_adhoc(kms_emu, 'cloudexec.core.aws_ecs_exec', {'cluster': 'vault', 'task': TASK, 'command': 'touch ran'},
                        extra_env={'AWS_ACCESS_KEY_ID': NO_KMS_KEY['access_key'],
                                   'AWS_SECRET_ACCESS_KEY': NO_KMS_KEY['secret_key'], 'AWS_SESSION_TOKEN': ''})
    assert run.rc == 2 and run.results[0]['status'] == 'failed', run.output
    result = run.results[0]['result']
    assert 'AccessDeniedException' in result['msg'] and 'kms:GenerateDataKey' in result['msg'], result['msg']
    sandbox = Path(kms_emu['state_dir']) / 'sandboxes' / 'aws-ecs' / TASK / 'app'
    assert not (sandbox / 'ran').exists()


def test_emulator_kms_binds_the_key_to_its_context(kms_emu):
    kms = boto3.client('kms', region_name='us-east-1', endpoint_url=kms_emu.env['AWS_ENDPOINT_URL_KMS'],
                       aws_access_key_id=kms_emu.env['AWS_ACCESS_KEY_ID'], aws_secret_access_key=kms_emu.env['AWS_SECRET_ACCESS_KEY'],
                       aws_session_token=kms_emu.env.get('AWS_SESSION_TOKEN') or None)
    context = {'aws:ssm:SessionId': 's-1', 'aws:ssm:TargetId': 'ecs:vault_x_y'}
    key = kms.generate_data_key(KeyId=KEY, NumberOfBytes=64, EncryptionContext=context)
    assert len(key['Plaintext']) == 64 and key['KeyId'] == KEY
    opened = kms.decrypt(CiphertextBlob=key['CiphertextBlob'], EncryptionContext=context)
    assert opened['Plaintext'] == key['Plaintext']
    with pytest.raises(ClientError) as wrong_context:
        kms.decrypt(CiphertextBlob=key['CiphertextBlob'], EncryptionContext={**context, 'aws:ssm:SessionId': 's-2'})
    assert wrong_context.value.response['Error']['Code'] == 'InvalidCiphertextException'
    with pytest.raises(ClientError) as unknown:
        kms.generate_data_key(KeyId='arn:aws:kms:us-east-1:123456789012:key/unknown', NumberOfBytes=64)
    assert unknown.value.response['Error']['Code'] == 'NotFoundException'
