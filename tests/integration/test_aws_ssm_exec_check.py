# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The aws_ssm_exec_check module through real Ansible runs, against a world with one managed node per cause.

An online node in a VPC with the three Systems Manager endpoints, an offline one, agents too old for Session Manager, KMS
or Run As, a stopped instance, a hybrid node, a node in a VPC without endpoints; session documents with Run As (with and
without a default user) and with a KMS key; callers denied ssm:StartSession, kms:GenerateDataKey or the IAM and EC2
reads, and one whose IAM tag SSMSessionRunAs names its Run As user. Every case runs in one ansible-playbook start (one
module call per case); the tests then look at each case's result.
"""
from __future__ import annotations

from typing import Any

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator
from helpers import ansible_adhoc, ansible_playbook

ACCOUNT = '123456789012'
REGION = 'us-east-1'
ONLINE = 'i-05500000000000001'
OFFLINE = 'i-05500000000000002'
ANCIENT = 'i-05500000000000003'      # agent older than Session Manager
OLD = 'i-05500000000000004'          # new enough for sessions and KMS, too old for Run As
STOPPED = 'i-05500000000000005'
PRIVATE = 'i-05500000000000006'      # VPC without endpoints, no public IP
WINDOWS = 'i-05500000000000007'
HYBRID = 'mi-05500000000000001'
UNKNOWN = 'i-055000000000000ff'
KMS_KEY = f'arn:aws:kms:{REGION}:{ACCOUNT}:key/5e551011-0000-4000-8000-00000000e001'

DEFAULT_KEY = {'access_key': 'AKIASSMCHECK00000001', 'secret_key': 'ssm/check/secret/1'}
RUN_AS_KEY = {'access_key': 'AKIASSMCHECKRUNAS001', 'secret_key': 'ssm/check/secret/runas'}
NO_START_KEY = {'access_key': 'AKIASSMCHECKNOSTART1', 'secret_key': 'ssm/check/secret/nostart'}
NO_KMS_KEY = {'access_key': 'AKIASSMCHECKNOKMS001', 'secret_key': 'ssm/check/secret/nokms'}
NO_IAM_KEY = {'access_key': 'AKIASSMCHECKNOIAM001', 'secret_key': 'ssm/check/secret/noiam'}
BAD_SECRET = {'access_key': DEFAULT_KEY['access_key'], 'secret_key': 'not-the-secret-of-this-key'}

WORLD = {'aws': {
    'region': REGION, 'account_id': ACCOUNT,
    'credentials': [
        {**DEFAULT_KEY, 'principal': f'arn:aws:iam::{ACCOUNT}:user/checker'},
        {**RUN_AS_KEY, 'principal': f'arn:aws:sts::{ACCOUNT}:assumed-role/deployers/bot', 'tags': {'SSMSessionRunAs': 'deploy'}},
        {**NO_START_KEY, 'principal': f'arn:aws:iam::{ACCOUNT}:user/no-start', 'deny': ['ssm:StartSession']},
        {**NO_KMS_KEY, 'principal': f'arn:aws:iam::{ACCOUNT}:user/no-kms', 'deny': ['kms:GenerateDataKey']},
        {**NO_IAM_KEY, 'principal': f'arn:aws:iam::{ACCOUNT}:user/no-iam',
         'deny': ['iam:SimulatePrincipalPolicy', 'iam:ListUserTags', 'ec2:DescribeVpcEndpoints']},
    ],
    'vpc_endpoints': [{'vpc_id': 'vpc-0full', 'service_name': f'com.amazonaws.{REGION}.{s}'} for s in ('ssm', 'ssmmessages', 'ec2messages')]
    + [{'vpc_id': 'vpc-0part', 'service_name': f'com.amazonaws.{REGION}.ssm'}],
    'managed_nodes': [
        {'id': ONLINE, 'name': 'good-1', 'vpc_id': 'vpc-0full'},
        {'id': OFFLINE, 'name': 'lost-1', 'vpc_id': 'vpc-0full', 'ping_status': 'ConnectionLost', 'last_ping_age': 7200},
        {'id': ANCIENT, 'name': 'ancient-1', 'vpc_id': 'vpc-0full', 'agent_version': '2.3.50.0'},
        {'id': OLD, 'name': 'old-1', 'vpc_id': 'vpc-0full', 'agent_version': '2.3.600.0'},
        {'id': STOPPED, 'name': 'stopped-1', 'state': 'stopped'},
        {'id': PRIVATE, 'name': 'private-1', 'vpc_id': 'vpc-0part'},
        {'id': WINDOWS, 'name': 'win-1', 'vpc_id': 'vpc-0full', 'platform_type': 'Windows'},
        {'id': HYBRID, 'name': 'onprem-1', 'tags': {'site': 'dc1'}},
    ],
    'session_preferences': {'runAsEnabled': False},
    'session_documents': [
        {'name': 'Check-RunAsShell', 'content': {'sessionType': 'Standard_Stream',
                                                 'inputs': {'runAsEnabled': True, 'runAsDefaultUser': 'ec2-user'}}},
        {'name': 'Check-NoUserShell', 'content': {'sessionType': 'Standard_Stream', 'inputs': {'runAsEnabled': True}}},
        {'name': 'Check-KmsShell', 'content': {'sessionType': 'Standard_Stream', 'inputs': {'kmsKeyId': KMS_KEY}}},
    ],
}}


@pytest.fixture(scope='module')
def ssm_emu(tmp_path_factory):
    directory = tmp_path_factory.mktemp('ssm-check')
    path = directory / 'world.yml'
    path.write_text(yaml.safe_dump(WORLD))
    with start_emulator(world=path, state_dir=directory / 'state') as info:
        yield info


# (id, module arguments, check, expected status, expected ready or None)
CASES = [
    ('online', {'instance_id': ONLINE}, 'agent_online', 'pass', True),
    ('credentials-fail', {'instance_id': ONLINE, **BAD_SECRET}, 'credentials', 'fail', False),
    ('managed_node-pass-hybrid', {'instance_id': HYBRID}, 'managed_node', 'pass', True),
    ('managed_node-fail-stopped', {'instance_id': STOPPED}, 'managed_node', 'fail', False),
    ('managed_node-fail-unknown', {'instance_id': UNKNOWN}, 'managed_node', 'fail', False),
    ('agent_online-fail', {'instance_id': OFFLINE}, 'agent_online', 'fail', False),
    ('agent_version-warn-not-latest', {'instance_id': OLD}, 'agent_version', 'warn', True),
    ('agent_version-fail', {'instance_id': ANCIENT}, 'agent_version', 'fail', False),
    ('agent_version-warn-kms', {'instance_id': OLD, 'document': 'Check-KmsShell'}, 'agent_version', 'warn', True),
    ('agent_version-fail-run-as', {'instance_id': OLD, 'document': 'Check-RunAsShell'}, 'agent_version', 'fail', False),
    ('session_document-pass', {'instance_id': ONLINE}, 'session_document', 'pass', True),
    ('session_document-fail', {'instance_id': ONLINE, 'document': 'No-Such-Document'}, 'session_document', 'fail', False),
    ('start_session_permission-pass', {'instance_id': ONLINE}, 'start_session_permission', 'pass', True),
    ('start_session_permission-fail', {'instance_id': ONLINE, **NO_START_KEY}, 'start_session_permission', 'fail', False),
    ('start_session_permission-unknown', {'instance_id': ONLINE, **NO_IAM_KEY}, 'start_session_permission', 'unknown', True),
    ('kms_permission-pass-no-key', {'instance_id': ONLINE}, 'kms_permission', 'pass', True),
    ('kms_permission-pass', {'instance_id': ONLINE, 'document': 'Check-KmsShell'}, 'kms_permission', 'pass', True),
    ('kms_permission-fail', {'instance_id': ONLINE, 'document': 'Check-KmsShell', **NO_KMS_KEY}, 'kms_permission', 'fail', False),
    ('run_as-pass-off', {'instance_id': ONLINE}, 'run_as', 'pass', True),
    ('run_as-pass-default', {'instance_id': ONLINE, 'document': 'Check-RunAsShell'}, 'run_as', 'pass', True),
    ('run_as-pass-tag', {'instance_id': ONLINE, 'document': 'Check-NoUserShell', **RUN_AS_KEY}, 'run_as', 'pass', True),
    ('run_as-pass-windows', {'instance_id': WINDOWS, 'document': 'Check-NoUserShell'}, 'run_as', 'pass', True),
    ('run_as-fail', {'instance_id': ONLINE, 'document': 'Check-NoUserShell'}, 'run_as', 'fail', False),
    ('run_as-unknown', {'instance_id': ONLINE, 'document': 'Check-NoUserShell', **NO_IAM_KEY}, 'run_as', 'unknown', True),
    ('run_as-warn', {'instance_id': ONLINE, 'document': 'Check-RunAsShell', **NO_IAM_KEY}, 'run_as', 'warn', True),
    ('network_path-pass', {'instance_id': ONLINE}, 'network_path', 'pass', True),
    ('network_path-warn', {'instance_id': PRIVATE}, 'network_path', 'warn', True),
    ('network_path-unknown-hybrid', {'instance_id': HYBRID}, 'network_path', 'unknown', True),
    ('network_path-unknown-denied', {'instance_id': ONLINE, **NO_IAM_KEY}, 'network_path', 'unknown', True),
    ('several', {'instance_id': [ONLINE, OFFLINE, HYBRID]}, None, None, False),
]
NAMES = ['credentials', 'managed_node', 'agent_online', 'agent_version', 'session_document', 'start_session_permission',
         'kms_permission', 'run_as', 'network_path']


@pytest.fixture(scope='module')
def results(ssm_emu) -> dict[str, dict[str, Any]]:
    items = [{'id': case_id, **arguments} for case_id, arguments, *_rest in CASES]
    run = ansible_playbook(ssm_emu, 'exec_check_ssm.yml', extra_vars={'cases': items}, timeout=600)
    assert run.rc == 0, run.output
    found = run.result('ssm checks')['results']
    assert len(found) == len(CASES), run.output
    # Secrets never reach the output, the bad one included.
    for secret in (BAD_SECRET['secret_key'], DEFAULT_KEY['secret_key'], NO_IAM_KEY['secret_key']):
        assert secret not in run.stdout + run.stderr
    return {item['item']['id']: item for item in found}


def _check(result: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in result['checks'] if c['name'] == name]
    assert len(found) == 1, result
    return found[0]


@pytest.mark.parametrize('case_id, check, status, ready', [(c[0], c[2], c[3], c[4]) for c in CASES if c[2]],
                         ids=[c[0] for c in CASES if c[2]])
def test_check(results, case_id, check, status, ready):
    """Each check, passing and failing, on the node or caller the world gives that cause."""
    result = results[case_id]
    assert not result.get('failed'), result
    assert result['changed'] is False and [c['name'] for c in result['checks']] == NAMES
    seen = _check(result, check)
    assert seen['status'] == status, (seen, result['msg'])
    if status in ('fail', 'warn'):
        assert seen['remedy'], seen
    if status == 'fail':
        assert any(line.startswith(f'{check}: ') for line in result['problems']), result['problems']
    assert result['ready'] is ready, result['msg']


def test_reasons_and_remedies(results):
    """The words that tell the user what happened and what to do."""
    online = results['online']
    assert {c['status'] for c in online['checks']} == {'pass'} and online['msg'].startswith('Ready for Session Manager')
    assert online['instance_id'] == ONLINE and online['document'] == 'SSM-SessionManagerRunShell'
    lost = _check(results['agent_online-fail'], 'agent_online')
    assert 'lost its connection' in lost['detail']
    assert 'TargetNotConnected' in lost['detail'] and 'amazon-ssm-agent' in lost['remedy']
    assert 'AmazonSSMManagedInstanceCore' in lost['remedy'] and 'ssmmessages' in lost['remedy']
    # The offline node's other checks still ran.
    assert _check(results['agent_online-fail'], 'network_path')['status'] == 'pass'
    stopped = results['managed_node-fail-stopped']
    assert 'stopped' in _check(stopped, 'managed_node')['detail'] and 'Start the instance' in _check(stopped, 'managed_node')['remedy']
    assert _check(stopped, 'agent_online') == {'name': 'agent_online', 'status': 'unknown', 'detail': 'not checked: managed_node failed',
                                               'remedy': None}
    assert 'region' in _check(results['managed_node-fail-unknown'], 'managed_node')['remedy']
    ancient = _check(results['agent_version-fail'], 'agent_version')
    assert '2.3.50.0' in ancient['detail'] and 'Session Manager needs 2.3.68.0' in ancient['detail'] and 'AWS-UpdateSSMAgent' in ancient['remedy']
    assert 'Run As needs 2.3.672.0' in _check(results['agent_version-fail-run-as'], 'agent_version')['detail']
    assert 'InvalidDocument' not in _check(results['session_document-fail'], 'session_document')['remedy']
    assert 'does not exist' in _check(results['session_document-fail'], 'session_document')['detail']
    denied = _check(results['start_session_permission-fail'], 'start_session_permission')
    assert f'instance/{ONLINE}' in denied['detail'] and 'ssm:StartSession' in denied['remedy']
    assert KMS_KEY in _check(results['kms_permission-fail'], 'kms_permission')['remedy']
    assert 'kms:Decrypt' in _check(results['kms_permission-pass'], 'kms_permission')['detail']
    assert 'ec2-user' in _check(results['run_as-pass-default'], 'run_as')['detail']
    assert 'deploy' in _check(results['run_as-pass-tag'], 'run_as')['detail']
    assert 'ssm-user' in _check(results['run_as-pass-windows'], 'run_as')['detail']
    no_user = _check(results['run_as-fail'], 'run_as')
    assert 'please set the RunAs default user' in no_user['detail'] and 'SSMSessionRunAs' in no_user['remedy']
    assert f'com.amazonaws.{REGION}.ssmmessages' in _check(results['network_path-warn'], 'network_path')['detail']
    assert f'com.amazonaws.{REGION}.ssm,' not in _check(results['network_path-warn'], 'network_path')['detail']
    assert 'on-premises' in _check(results['network_path-unknown-hybrid'], 'network_path')['detail']
    bad = results['credentials-fail']
    assert 'InvalidSignatureException' in _check(bad, 'credentials')['detail']
    assert {c['status'] for c in bad['checks'][1:]} == {'unknown'}


def test_several_nodes(results):
    result = results['several']
    assert [n['instance_id'] for n in result['nodes']] == [ONLINE, OFFLINE, HYBRID]
    assert [n['ready'] for n in result['nodes']] == [True, False, True]
    assert 'checks' not in result and result['ready'] is False
    assert result['problems'] and all(line.startswith(f'{OFFLINE} agent_online: ') for line in result['problems'])
    assert result['msg'].startswith('1 of 3 nodes have problems')


def test_bad_id_is_refused_before_any_call(ssm_emu):
    ssm_emu.admin('POST', 'calls/reset')
    run = ansible_adhoc(ssm_emu, 'cloudexec.core.aws_ssm_exec_check', {'instance_id': 'i-xyz'})
    assert run.rc != 0
    msg = run.result('cloudexec.core.aws_ssm_exec_check')['msg']
    assert 'instance_id' in msg and "'i-xyz' is not a managed node id" in msg
    assert ssm_emu.admin('GET', 'calls')['total'] == 0


def test_check_mode_and_fail_on_problems(ssm_emu):
    run = ansible_adhoc(ssm_emu, 'cloudexec.core.aws_ssm_exec_check', {'instance_id': OFFLINE, 'fail_on_problems': True}, '--check')
    assert run.rc != 0
    assert run.record('cloudexec.core.aws_ssm_exec_check')['status'] == 'failed'
    result = run.result('cloudexec.core.aws_ssm_exec_check')
    assert result['changed'] is False and result['ready'] is False
    assert result['msg'].startswith('Session Manager cannot reach the node: agent_online:') and 'amazon-ssm-agent' in result['msg']
    run = ansible_adhoc(ssm_emu, 'cloudexec.core.aws_ssm_exec_check', {'instance_id': ONLINE, 'fail_on_problems': True}, '--check')
    assert run.rc == 0, run.output
    assert run.result('cloudexec.core.aws_ssm_exec_check')['ready'] is True


def test_emulator_principal_tags(ssm_emu):
    """IAM ListUserTags / ListRoleTags answer the world's principals' tags, and NoSuchEntity for other names."""
    import boto3  # pylint: disable=import-outside-toplevel
    from botocore.exceptions import ClientError  # pylint: disable=import-outside-toplevel

    iam = boto3.client('iam', endpoint_url=ssm_emu['endpoint'], region_name=REGION, aws_access_key_id=DEFAULT_KEY['access_key'],
                       aws_secret_access_key=DEFAULT_KEY['secret_key'])
    assert iam.list_role_tags(RoleName='deployers')['Tags'] == [{'Key': 'SSMSessionRunAs', 'Value': 'deploy'}]
    assert iam.list_user_tags(UserName='checker')['Tags'] == []
    for call, name in ((iam.list_user_tags, {'UserName': 'nobody'}), (iam.list_role_tags, {'RoleName': 'checker'})):
        with pytest.raises(ClientError) as caught:
            call(**name)
        assert caught.value.response['Error']['Code'] == 'NoSuchEntity'
        assert caught.value.response['ResponseMetadata']['HTTPStatusCode'] == 404
