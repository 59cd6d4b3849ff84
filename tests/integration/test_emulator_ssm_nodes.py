# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSM managed nodes in the emulator: the world schema, SSM's node, document and session actions and EC2's
DescribeInstances through boto3, and StartSession's shell on the data channel through a raw websocket client (the
independent one of test_emulator_ecs_exec.py, frames packed with struct from AWS's layout).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
import yaml
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from websockets.exceptions import ConnectionClosed

from cloudexec_emulator import ssm_documents
from cloudexec_emulator.testing import start_emulator
from cloudexec_emulator.world import WorldError, parse_world

from test_emulator_ecs_exec import OPEN_CHANNELS, Channel, pack  # pylint: disable=wrong-import-order

ACCOUNT = '123456789012'
WEB = 'i-0000000000000a001'
OFFLINE = 'i-0000000000000a002'
STOPPED = 'i-0000000000000a003'
BANNER = 'i-0000000000000a004'
APP = 'i-0000000000000a005'
WIN = 'i-0000000000000a006'
HYBRID = 'mi-0000000000000b001'
FLEET = [f'i-0f1ee7000000000{n:02x}' for n in range(1, 7)]
KMS_KEY_ID = '5e551011-0000-4000-8000-00000000e001'
KMS_KEY = f'arn:aws:kms:us-east-1:{ACCOUNT}:key/{KMS_KEY_ID}'
BANNER_TEXT = b'*** test banner ***'
# What sh prints as its prompt: the emulator's shell runs as the emulator's own user (see ssm_sessions).
PROMPT = b'# ' if os.geteuid() == 0 else b'$ '

WORLD = {
    'aws': {
        'region': 'us-east-1', 'account_id': ACCOUNT,
        'credentials': [
            {'access_key': 'AKIANODESTEST0000001', 'secret_key': 'nodes/test/secret/1', 'principal': f'arn:aws:iam::{ACCOUNT}:user/tester'},
            {'access_key': 'AKIANODESTESTRUNAS01', 'secret_key': 'nodes/test/secret/2', 'tags': {'SSMSessionRunAs': 'deploy'},
             'principal': f'arn:aws:sts::{ACCOUNT}:assumed-role/deployers/deploy-bot'},
            {'access_key': 'AKIANODESTESTDENIED1', 'secret_key': 'nodes/test/secret/3',
             'deny': ['ssm:StartSession', 'ec2:DescribeInstances']},
        ],
        'ssm': {'token_ttl_seconds': 1.5, 'agent_start_ms': 30, 'output_delay_ms': 30, 'latest_agent_version': '3.3.1802.0'},
        'managed_nodes': [
            {'id': WEB, 'name': 'web-1', 'tags': {'app': 'web'}},
            {'id': OFFLINE, 'name': 'db-1', 'ping_status': 'ConnectionLost', 'agent_version': '3.2.582.0', 'tags': {'app': 'db'}},
            {'id': STOPPED, 'name': 'old-1', 'state': 'stopped', 'tags': {'app': 'web'}},
            {'id': BANNER, 'name': 'bastion-1', 'shell_profile': f"echo '{BANNER_TEXT.decode()}'"},
            {'id': APP, 'name': 'app-1', 'users': ['ec2-user', 'deploy'], 'tags': {'app': 'api'}},
            {'id': WIN, 'name': 'win-1', 'platform_type': 'Windows', 'tags': {'app': 'iis'}},
            {'id': HYBRID, 'name': 'onprem-1', 'platform_name': 'Ubuntu', 'platform_version': '22.04', 'tags': {'site': 'dc1'}},
            {'count': 6, 'id_pattern': 'i-0f1ee7000000000{index:02x}', 'name_pattern': 'fleet-{index}', 'tags': {'fleet': 'big'}},
        ],
        'session_preferences': {'runAsEnabled': False, 'idleSessionTimeout': 20},
        'session_documents': [
            {'name': 'Test-RunAsShell', 'tags': {'team': 'ops'},
             'content': {'sessionType': 'Standard_Stream', 'inputs': {'runAsEnabled': True, 'runAsDefaultUser': 'ec2-user'}}},
            {'name': 'Test-NoUserShell', 'content': {'sessionType': 'Standard_Stream', 'inputs': {'runAsEnabled': True}}},
            {'name': 'Test-KmsShell', 'content': {'sessionType': 'Standard_Stream', 'inputs': {'kmsKeyId': KMS_KEY_ID}}},
        ],
    },
}


# ---- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope='module')
def emu(tmp_path_factory):
    directory = tmp_path_factory.mktemp('ssm-nodes')
    (directory / 'world.yml').write_text(yaml.safe_dump(WORLD))
    with start_emulator(world=directory / 'world.yml') as info:
        yield info


@pytest.fixture(autouse=True)
def _clean(emu):
    emu.admin('DELETE', 'faults')
    emu.admin('POST', 'calls/reset')
    yield
    OPEN_CHANNELS.close()
    emu.admin('DELETE', 'faults')


def client(emu, service: str, key: int = 0):
    access = ('AKIANODESTEST0000001', 'AKIANODESTESTRUNAS01', 'AKIANODESTESTDENIED1')[key]
    return boto3.client(service, endpoint_url=emu['aws']['endpoint_url'], region_name='us-east-1', aws_access_key_id=access,
                        aws_secret_access_key=f'nodes/test/secret/{key + 1}',
                        config=botocore.config.Config(retries={'total_max_attempts': 1}))


def error(call, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as excinfo:
        call(*args, **kwargs)
    return excinfo.value.response['Error']['Code'], excinfo.value.response['Error']['Message']


def ids(answer: dict[str, Any]) -> list[str]:
    return [i['InstanceId'] for i in answer['InstanceInformationList']]


def sandbox(emu, node: str) -> Path:
    return Path(emu['state_dir']) / 'sandboxes' / 'aws-ssm' / node


def channel(started: dict[str, Any]) -> Channel:
    return Channel({'streamUrl': started['StreamUrl'], 'tokenValue': started['TokenValue']})


def counters(emu) -> dict[str, int]:
    return emu.admin('GET', 'calls')['ws'].get('aws-ssm-session', {})


def next_output(session: Channel) -> dict[str, Any]:
    """The next output_stream_data message (acknowledgements of our input come in between)."""
    while (message := session.receive())['type'] != 'output_stream_data':
        pass
    return message


def typed(shell: Channel, line: str) -> bytes:
    """Type a line into a shell at its prompt and return what came back up to the next prompt."""
    start = len(shell.output)
    shell.send_input(line.encode() + b'\r')
    shell.until(lambda: shell.output.endswith(PROMPT) and len(shell.output) > start + len(line))
    return shell.output[start:]


# ---- the world ---------------------------------------------------------------------------------


@pytest.mark.parametrize('change, message', [
    ({'id': 'i-123'}, 'neither an EC2 instance id'),
    ({'id': 'mi-0000000000000000Z'}, 'neither an EC2 instance id'),
    ({'resource_type': 'ManagedInstance'}, 'does not match the id'),
    ({'name': 'a', 'tags': {'Name': 'b'}}, 'differ'),
    ({'state': 'stopped', 'ping_status': 'Online'}, 'cannot have an Online agent'),
    ({'ping_status': 'Asleep'}, 'is not one of'),
    ({'agent_version': 'latest'}, 'is not a version'),
    ({'platform_type': 'linux'}, 'is not one of'),
    ({'shell': 'bash'}, 'unknown key'),
])
def test_world_rejects_bad_nodes(change, message):
    node = {'id': 'i-00000000000000001', **change}
    with pytest.raises(WorldError, match=message):
        parse_world({'aws': {'managed_nodes': [node]}})


@pytest.mark.parametrize('section, message', [
    ({'session_preferences': {'idleSessionTimeout': 61}}, '1 to 60'),
    ({'session_preferences': {'kmsKeyId': 'alias/x'}}, 'neither a KMS key ARN'),
    ({'session_preferences': {'runAs': True}}, 'unknown key'),
    ({'session_documents': [{'name': 'AWS-Mine', 'content': {'sessionType': 'Standard_Stream'}}]}, 'reserved'),
    ({'session_documents': [{'name': 'Mine', 'content': {'sessionType': 'Port'}}]}, 'is not one of'),
    ({'session_documents': [{'name': 'Mine', 'content': {'sessionType': 'InteractiveCommands', 'inputs': {'runAsEnabled': True}}}]},
     'inputs are for Standard_Stream'),
])
def test_world_rejects_bad_session_settings(section, message):
    with pytest.raises(WorldError, match=message):
        parse_world({'aws': section})


def test_world_defaults_and_generators():
    world = parse_world({'aws': {'managed_nodes': [
        {'name': 'plain'}, {'resource_type': 'ManagedInstance'}, {'count': 3, 'name_pattern': 'gen-{index}'}]}})
    plain, hybrid, *generated = world.aws.managed_nodes
    assert plain.node_id.startswith('i-') and len(plain.node_id) == 19 and plain.tags == {'Name': 'plain'}
    assert (plain.platform_type, plain.ping_status, plain.state, plain.users) == ('Linux', 'Online', 'running', ('ec2-user',))
    assert plain.computer_name == f'ip-{plain.ip_address.replace(".", "-")}.ec2.internal'
    assert hybrid.node_id.startswith('mi-') and hybrid.resource_type == 'ManagedInstance' and hybrid.iam_role == 'SSMServiceRole'
    assert [n.name for n in generated] == ['gen-1', 'gen-2', 'gen-3'] and len({n.node_id for n in generated}) == 3
    # A key id becomes the key's ARN in this account and Region; KMS then knows it.
    world = parse_world({'aws': {'session_preferences': {'kmsKeyId': KMS_KEY_ID}}})
    assert world.aws.session_preferences.kms_key_id == KMS_KEY and world.aws.kms_keys() == [KMS_KEY]
    # An account that never saved preferences has no SSM-SessionManagerRunShell.
    assert ssm_documents.preferences_document(parse_world({})) is None


def test_default_world_has_the_nodes_the_issue_names(emulator):
    ssm = boto3.client('ssm', endpoint_url=emulator['aws']['endpoint_url'], region_name='us-east-1',
                       aws_access_key_id=emulator['aws']['access_key'], aws_secret_access_key=emulator['aws']['secret_key'])
    nodes = [n for page in ssm.get_paginator('describe_instance_information').paginate() for n in page['InstanceInformationList']]
    by_id = {n['InstanceId']: n for n in nodes}
    assert {n['PingStatus'] for n in nodes} == {'Online', 'ConnectionLost'}
    assert {n['ResourceType'] for n in nodes} == {'EC2Instance', 'ManagedInstance'}
    assert {n['PlatformType'] for n in nodes} == {'Linux', 'Windows'}
    assert 'i-0a1b2c3d4e5f60707' not in by_id   # stopped
    summary = emulator.admin('GET', 'world')['aws']
    assert 'CloudExec-RunAsShell' in summary['session_documents'] and 'SSM-SessionManagerRunShell' in summary['session_documents']
    for node in by_id:
        assert (Path(emulator['state_dir']) / 'sandboxes' / 'aws-ssm' / node).is_dir()


# ---- DescribeInstanceInformation ------------------------------------------------------------------


def test_describe_instance_information_shape(emu):
    info = {n['InstanceId']: n for n in client(emu, 'ssm').describe_instance_information(
        Filters=[{'Key': 'InstanceIds', 'Values': [WEB, HYBRID, OFFLINE]}])['InstanceInformationList']}
    web, hybrid, offline = info[WEB], info[HYBRID], info[OFFLINE]
    assert set(web) == {'InstanceId', 'PingStatus', 'LastPingDateTime', 'AgentVersion', 'IsLatestVersion', 'PlatformType',
                        'PlatformName', 'PlatformVersion', 'ResourceType', 'IPAddress', 'ComputerName', 'SourceId', 'SourceType'}
    assert (web['PingStatus'], web['ResourceType'], web['PlatformType'], web['IsLatestVersion']) == ('Online', 'EC2Instance', 'Linux', True)
    assert web['ComputerName'] == f'ip-{web["IPAddress"].replace(".", "-")}.ec2.internal' and web['SourceType'] == 'AWS::EC2::Instance'
    # Name only for hybrid nodes (an instance's name is its EC2 Name tag), with the activation's id and role.
    assert hybrid['Name'] == 'onprem-1' and hybrid['ResourceType'] == 'ManagedInstance' and hybrid['IamRole'] == 'SSMServiceRole'
    assert len(hybrid['ActivationId']) == 36 and hybrid['PlatformName'] == 'Ubuntu' and 'RegistrationDate' in hybrid
    assert (offline['PingStatus'], offline['IsLatestVersion']) == ('ConnectionLost', False)
    assert (time.time() - offline['LastPingDateTime'].timestamp()) > 80000 > time.time() - web['LastPingDateTime'].timestamp()


def test_describe_instance_information_pages(emu):
    ssm = client(emu, 'ssm')
    everything = ids(ssm.describe_instance_information(MaxResults=50))
    assert STOPPED not in everything and len(everything) == 12
    # Default page of 10, then the rest; a paginator sees every node once.
    first = ssm.describe_instance_information()
    assert len(first['InstanceInformationList']) == 10
    assert ids(first) + ids(ssm.describe_instance_information(NextToken=first['NextToken'])) == everything
    pages = list(ssm.get_paginator('describe_instance_information').paginate(PaginationConfig={'PageSize': 5}))
    assert [len(p['InstanceInformationList']) for p in pages] == [5, 5, 2]
    assert 'NextToken' not in pages[-1]
    assert error(ssm.describe_instance_information, MaxResults=51)[0] == 'ValidationException'
    assert error(ssm.describe_instance_information, NextToken='nonsense')[0] == 'InvalidNextToken'
    # A token belongs to its query.
    token = ssm.describe_instance_information(MaxResults=5)['NextToken']
    assert error(ssm.describe_instance_information, MaxResults=5, NextToken=token,
                 Filters=[{'Key': 'PingStatus', 'Values': ['Online']}])[0] == 'InvalidNextToken'


@pytest.mark.parametrize('filters, expected', [
    ([{'Key': 'PingStatus', 'Values': ['ConnectionLost']}], [OFFLINE]),
    ([{'Key': 'PlatformTypes', 'Values': ['Windows']}], [WIN]),
    ([{'Key': 'ResourceType', 'Values': ['ManagedInstance']}], [HYBRID]),
    ([{'Key': 'AgentVersion', 'Values': ['3.2.582.0']}], [OFFLINE]),
    ([{'Key': 'InstanceIds', 'Values': [WEB, STOPPED]}], [WEB]),
    ([{'Key': 'PingStatus', 'Values': ['Online']}, {'Key': 'PlatformTypes', 'Values': ['Windows', 'MacOS']}], [WIN]),
    ([{'Key': 'tag:app', 'Values': ['web', 'db']}], [WEB, OFFLINE]),
    ([{'Key': 'tag-key', 'Values': ['site']}], [HYBRID]),
    ([{'Key': 'tag:fleet', 'Values': ['big']}, {'Key': 'tag:Name', 'Values': ['fleet-2']}], [FLEET[1]]),
    ([{'Key': 'AssociationStatus', 'Values': ['Success']}], []),
])
def test_describe_instance_information_filters(emu, filters, expected):
    assert ids(client(emu, 'ssm').describe_instance_information(Filters=filters, MaxResults=50)) == expected


def test_describe_instance_information_legacy_filters_and_errors(emu):
    ssm = client(emu, 'ssm')
    legacy = ssm.describe_instance_information(InstanceInformationFilterList=[{'key': 'PingStatus', 'valueSet': ['ConnectionLost']}])
    assert ids(legacy) == [OFFLINE]
    cases = [
        ({'Filters': [{'Key': 'Color', 'Values': ['red']}]}, 'InvalidFilterKey'),
        ({'InstanceInformationFilterList': [{'key': 'tag:app', 'valueSet': ['web']}]}, 'InvalidFilterKey'),
        ({'Filters': [{'Key': 'tag:app', 'Values': ['web']}, {'Key': 'PingStatus', 'Values': ['Online']}]}, 'InvalidFilterKey'),
        ({'Filters': [{'Key': 'PingStatus', 'Values': ['Sleeping']}]}, 'InvalidInstanceInformationFilterValue'),
        ({'Filters': [{'Key': 'PlatformTypes', 'Values': ['linux']}]}, 'InvalidInstanceInformationFilterValue'),
        ({'Filters': [{'Key': 'InstanceIds', 'Values': ['i-0000000000000ffff']}]}, 'InvalidInstanceId'),
        ({'Filters': [{'Key': 'InstanceIds', 'Values': ['web-1']}]}, 'InvalidInstanceId'),
        ({'Filters': [{'Key': 'PingStatus', 'Values': ['Online']}],
          'InstanceInformationFilterList': [{'key': 'PingStatus', 'valueSet': ['Online']}]}, 'ValidationException'),
    ]
    for kwargs, code in cases:
        assert error(ssm.describe_instance_information, **kwargs)[0] == code, kwargs


def test_list_tags_for_resource(emu):
    ssm = client(emu, 'ssm')
    assert ssm.list_tags_for_resource(ResourceType='ManagedInstance', ResourceId=HYBRID)['TagList'] == [{'Key': 'site', 'Value': 'dc1'}]
    assert ssm.list_tags_for_resource(ResourceType='Document', ResourceId='Test-RunAsShell')['TagList'] == [
        {'Key': 'team', 'Value': 'ops'}]
    # ManagedInstance is for hybrid nodes only: an EC2 instance's tags are EC2's.
    assert error(ssm.list_tags_for_resource, ResourceType='ManagedInstance', ResourceId=WEB)[0] == 'InvalidResourceId'
    assert error(ssm.list_tags_for_resource, ResourceType='ManagedInstance', ResourceId='mi-0000000000000ffff')[0] == 'InvalidResourceId'
    assert error(ssm.list_tags_for_resource, ResourceType='Instance', ResourceId=WEB)[0] == 'InvalidResourceType'


# ---- documents ---------------------------------------------------------------------------------


def test_get_and_describe_session_documents(emu):
    ssm = client(emu, 'ssm')
    preferences = ssm.get_document(Name='SSM-SessionManagerRunShell')
    assert (preferences['DocumentType'], preferences['DocumentFormat'], preferences['Status'], preferences['DocumentVersion']) == (
        'Session', 'JSON', 'Active', '1')
    content = json.loads(preferences['Content'])
    assert content['sessionType'] == 'Standard_Stream' and content['schemaVersion'] == '1.0'
    assert content['inputs']['runAsEnabled'] is False and content['inputs']['idleSessionTimeout'] == '20'
    assert content['inputs']['shellProfile'] == {'windows': '', 'linux': ''} and content['inputs']['kmsKeyId'] == ''
    as_yaml = ssm.get_document(Name='SSM-SessionManagerRunShell', DocumentFormat='YAML')
    assert yaml.safe_load(as_yaml['Content']) == content and as_yaml['DocumentFormat'] == 'YAML'
    kms = json.loads(ssm.get_document(Name='Test-KmsShell', DocumentVersion='$LATEST')['Content'])
    assert kms['inputs']['kmsKeyId'] == KMS_KEY
    interactive = json.loads(ssm.get_document(Name='arn:aws:ssm:us-east-1::document/AWS-StartInteractiveCommand')['Content'])
    assert interactive['sessionType'] == 'InteractiveCommands' and interactive['properties']['linux']['commands'] == '{{ command }}'
    described = ssm.describe_document(Name='AWS-StartInteractiveCommand')['Document']
    assert described['Owner'] == 'Amazon' and described['DocumentType'] == 'Session'
    assert described['Parameters'] == [{'Name': 'command', 'Type': 'String', 'Description': 'The command to run on the instance'}]
    own = ssm.describe_document(Name='Test-RunAsShell')['Document']
    assert own['Owner'] == ACCOUNT and own['Tags'] == [{'Key': 'team', 'Value': 'ops'}]
    assert own['Hash'] == hashlib.sha256(ssm.get_document(Name='Test-RunAsShell')['Content'].encode()).hexdigest()
    for kwargs, code in [({'Name': 'AWS-StartPortForwardingSession'}, 'InvalidDocument'), ({'Name': 'Nope-Shell'}, 'InvalidDocument'),
                         ({'Name': 'Test-RunAsShell', 'DocumentVersion': '2'}, 'InvalidDocumentVersion'),
                         ({'Name': 'ab'}, 'ValidationException'), ({'Name': 'Test-RunAsShell', 'DocumentVersion': 'v1'}, 'ValidationException')]:
        assert error(ssm.get_document, **kwargs)[0] == code, kwargs
        assert error(ssm.describe_document, **kwargs)[0] == code, kwargs


# ---- EC2 DescribeInstances -----------------------------------------------------------------------


def _instances(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for r in answer['Reservations'] for i in r['Instances']]


def test_ec2_describe_instances(emu):
    ec2 = client(emu, 'ec2')
    every = _instances(ec2.describe_instances())
    assert [i['InstanceId'] for i in every] == [WEB, OFFLINE, STOPPED, BANNER, APP, WIN, *FLEET]   # no mi- node
    web = every[0]
    assert web['State'] == {'Code': 16, 'Name': 'running'} and {'Key': 'Name', 'Value': 'web-1'} in web['Tags']
    assert web['PrivateIpAddress'] and web['PrivateDnsName'].startswith('ip-') and web['InstanceType'] == 't3.micro'
    assert every[2]['State'] == {'Code': 80, 'Name': 'stopped'} and every[5]['Platform'] == 'windows'
    by_filter = {
        'instance-state-name': (['stopped'], [STOPPED]),
        'tag:Name': (['web-*', 'old-?'], [WEB, STOPPED]),
        'instance-id': ([APP], [APP]),
        'tag-key': (['fleet'], FLEET),
    }
    for name, (values, expected) in by_filter.items():
        assert [i['InstanceId'] for i in _instances(ec2.describe_instances(Filters=[{'Name': name, 'Values': values}]))] == expected
    assert [i['InstanceId'] for i in _instances(ec2.describe_instances(InstanceIds=[APP, WEB]))] == [WEB, APP]
    pages = list(ec2.get_paginator('describe_instances').paginate(PaginationConfig={'PageSize': 5}))
    assert [len(_instances(p)) for p in pages] == [5, 5, 2]


@pytest.mark.parametrize('kwargs, code, message', [
    ({'InstanceIds': ['i-123']}, 'InvalidInstanceID.Malformed', 'Invalid id: "i-123"'),
    ({'InstanceIds': ['i-0000000000000ffff']}, 'InvalidInstanceID.NotFound', "The instance ID 'i-0000000000000ffff' does not exist"),
    ({'InstanceIds': [WEB, 'i-0000000000000fff1', 'i-0000000000000fff2']}, 'InvalidInstanceID.NotFound', 'IDs'),
    ({'InstanceIds': [HYBRID]}, 'InvalidInstanceID.Malformed', HYBRID),
    ({'InstanceIds': [WEB], 'MaxResults': 5}, 'InvalidParameterCombination', 'instancesSet'),
    ({'MaxResults': 4}, 'InvalidParameterValue', 'maxResults'),
    ({'Filters': [{'Name': 'color', 'Values': ['red']}]}, 'InvalidParameterValue', "The filter 'color' is invalid"),
    ({'MaxResults': 5, 'NextToken': 'garbage'}, 'InvalidPaginationToken', 'garbage'),
    ({'DryRun': True}, 'DryRunOperation', 'DryRun flag is set'),
])
def test_ec2_describe_instances_errors(emu, kwargs, code, message):
    got, text = error(client(emu, 'ec2').describe_instances, **kwargs)
    assert got == code and message in text


def test_ec2_and_ssm_faults_and_iam(emu):
    emu.admin('POST', 'faults', [{'service': 'aws-ec2', 'action': 'DescribeInstances', 'throttle': 1},
                                 {'service': 'aws-ssm', 'action': 'DescribeInstanceInformation', 'server_error': 1, 'status': 503}])
    assert error(client(emu, 'ec2').describe_instances)[0] == 'RequestLimitExceeded'
    assert error(client(emu, 'ssm').describe_instance_information)[0] == 'ServiceUnavailableException'
    assert _instances(client(emu, 'ec2').describe_instances())
    assert error(client(emu, 'ec2', key=2).describe_instances)[0] == 'UnauthorizedOperation'
    assert error(client(emu, 'ssm', key=2).start_session, Target=WEB)[0] == 'AccessDeniedException'


# ---- StartSession --------------------------------------------------------------------------------


@pytest.mark.parametrize('kwargs, code, message', [
    ({'Target': 'i-0000000000000ffff'}, 'TargetNotConnected', 'i-0000000000000ffff is not connected.'),
    ({'Target': 'web-1'}, 'TargetNotConnected', 'web-1 is not connected.'),
    ({'Target': OFFLINE}, 'TargetNotConnected', f'{OFFLINE} is not connected.'),
    ({'Target': STOPPED}, 'TargetNotConnected', f'{STOPPED} is not connected.'),
    ({'Target': WEB, 'DocumentName': 'AWS-StartPortForwardingSession'}, 'InvalidDocument', 'AWS-StartPortForwardingSession'),
    ({'Target': WEB, 'Parameters': {'command': ['id']}}, 'InvalidParameters', 'command'),
    ({'Target': WEB, 'DocumentName': 'AWS-StartInteractiveCommand'}, 'InvalidParameters', 'command'),
    ({'Target': WEB, 'DocumentName': 'AWS-StartInteractiveCommand', 'Parameters': {'command': ['a', 'b']}}, 'InvalidParameters', 'one'),
    ({'Target': WEB, 'Reason': 'two\nlines'}, 'ValidationException', 'reason'),
    ({'Target': 'x' * 401}, 'ValidationException', 'target'),
])
def test_start_session_errors(emu, kwargs, code, message):
    got, text = error(client(emu, 'ssm').start_session, **kwargs)
    assert got == code and message in text


def test_start_session_answer(emu):
    started = client(emu, 'ssm').start_session(Target=WEB, Reason='maintenance')
    name, _dash, suffix = started['SessionId'].rpartition('-')
    assert name == 'tester' and len(suffix) == 17 and int(suffix, 16) >= 0
    assert 0 < len(started['TokenValue']) <= 300   # TokenValue: at most 300 characters (botocore model)
    port = emu['endpoint'].rsplit(':', 1)[1]
    assert started['StreamUrl'].startswith(f'ws://127.0.0.1:{port}/v1/data-channel/{started["SessionId"]}?role=publish_subscribe&cell-number=')
    # An assumed role's sessions carry its session name.
    assert client(emu, 'ssm', key=1).start_session(Target=WEB)['SessionId'].startswith('deploy-bot-')


def test_shell_session_prompt_echo_and_exact_output(emu):
    session = channel(client(emu, 'ssm').start_session(Target=WEB))
    first = session.receive()
    # Standard_Stream without KMS: no handshake, the shell's output comes first.
    assert first['type'] == 'output_stream_data' and first['ptype'] == 1 and first['seq'] == 0 and first['flags'] == 1
    session.until(lambda: session.output.endswith(PROMPT))
    assert session.output == PROMPT
    # The terminal echoes the line (CR typed, CRLF shown), then the command's output, then the prompt again.
    assert typed(session, "printf 'one\\ntwo\\n'") == b"printf 'one\\ntwo\\n'\r\none\r\ntwo\r\n" + PROMPT
    home = sandbox(emu, WEB)
    env = typed(session, 'printf "%s|%s|%s|%s|$TERM\\n" "$USER" "$LOGNAME" "$HOME" "$(pwd)"').split(b'\r\n')[1]
    assert env.decode() == f'ssm-user|ssm-user|{home}/home/ssm-user|{home}|xterm-256color'
    session.send_input(b'exit\r')
    session.finish()
    assert session.closed['Output'] == '' and session.closed['DestinationId'] == WEB
    assert 'frames_invalid' not in counters(emu) and counters(emu)['sessions_opened'] == 1


def test_shell_profile_prints_before_the_prompt(emu):
    session = channel(client(emu, 'ssm').start_session(Target=BANNER))
    # The agent types the profile into the shell: its echo, then what it prints, then the prompt.
    session.until(lambda: session.output.endswith(BANNER_TEXT + b'\r\n' + PROMPT))
    assert session.output.count(BANNER_TEXT) == 2 and session.output.startswith((b'echo', PROMPT))
    assert typed(session, 'echo after').endswith(b'after\r\n' + PROMPT)


@pytest.mark.parametrize('key, document, node, user', [
    (0, None, APP, 'ssm-user'),                 # Run As off: ssm-user, whatever the principal's tag
    (1, None, APP, 'ssm-user'),
    (0, 'Test-RunAsShell', APP, 'ec2-user'),    # runAsDefaultUser
    (1, 'Test-RunAsShell', APP, 'deploy'),      # the principal's SSMSessionRunAs tag beats it
])
def test_run_as_user(emu, key, document, node, user):
    kwargs = {'DocumentName': document} if document else {}
    session = channel(client(emu, 'ssm', key=key).start_session(Target=node, **kwargs))
    session.until(lambda: session.output.endswith(PROMPT))
    line = typed(session, 'echo "$USER:$LOGNAME:$HOME"').split(b'\r\n')[1].decode()
    assert line == f'{user}:{user}:{sandbox(emu, node)}/home/{user}'
    session.ws.close()


@pytest.mark.parametrize('key, document, reason', [
    (1, 'Test-RunAsShell', 'Unable to start command: failed to start pty since RunAs user deploy does not exist'),
    (0, 'Test-NoUserShell', 'Unable to start command: please set the RunAs default user'),
])
def test_run_as_user_that_cannot_be_used_fails_the_session(emu, key, document, reason):
    ssm = client(emu, 'ssm', key=key)
    started = ssm.start_session(Target=WEB, DocumentName=document)   # web-1 has no user "deploy"
    session = channel(started)
    assert session.finish() == b''
    assert session.closed['Output'] == reason
    history = ssm.describe_sessions(State='History', Filters=[{'key': 'SessionId', 'value': started['SessionId']}])['Sessions']
    assert [(s['Status'], s['DocumentName']) for s in history] == [('Failed', document)] and 'EndDate' in history[0]


def test_interactive_command_runs_under_sh_c(emu):
    started = client(emu, 'ssm').start_session(Target=WEB, DocumentName='AWS-StartInteractiveCommand',
                                               Parameters={'command': ['printf "%s|" "a b" && echo "$USER"; exit 4']})
    session = channel(started)
    # sh -c: quoting, && and ; work (unlike ECS Exec's container mode), no prompt, the channel closes at the end.
    assert session.finish() == b'a b|ssm-user\r\n'


def test_kms_preferences_ask_for_the_handshake(emu):
    started = client(emu, 'ssm').start_session(Target=WEB, DocumentName='Test-KmsShell')
    session = channel(started)
    request = next_output(session)
    assert (request['ptype'], request['seq']) == (5, 0)
    actions = {a['ActionType']: a['ActionParameters'] for a in json.loads(request['payload'])['RequestedClientActions']}
    assert actions['SessionType'] == {'SessionType': 'Standard_Stream', 'Properties': None}
    assert actions['KMSEncryption']['KMSKeyId'] == KMS_KEY
    context = {'aws:ssm:SessionId': started['SessionId'], 'aws:ssm:TargetId': WEB,
               'aws:ssm:RandomChallenge': actions['KMSEncryption']['Challenge']}
    key = client(emu, 'kms').generate_data_key(KeyId=KMS_KEY, NumberOfBytes=64, EncryptionContext=context)
    opener, sealer = AESGCM(key['Plaintext'][:32]), AESGCM(key['Plaintext'][32:])
    answer = {'ClientVersion': '1.2.0.0', 'Errors': [], 'ProcessedClientActions': [
        {'ActionType': 'KMSEncryption', 'ActionStatus': 1,
         'ActionResult': {'KMSCipherTextKey': base64.b64encode(key['CiphertextBlob']).decode(), 'ChallengeAcknowledgement': True}},
        {'ActionType': 'SessionType', 'ActionStatus': 1}]}
    session.send_input(json.dumps(answer).encode(), payload_type=6)
    challenge = next_output(session)
    assert challenge['ptype'] == 8
    sealed = base64.b64decode(json.loads(challenge['payload'])['Challenge'])
    plain = opener.decrypt(sealed[:12], sealed[12:], None)
    nonce = os.urandom(12)
    session.send_input(json.dumps({'Challenge': base64.b64encode(nonce + sealer.encrypt(nonce, plain, None)).decode()}).encode(),
                       payload_type=9)
    complete = next_output(session)
    assert complete['ptype'] == 7
    shown = b''
    while not shown.endswith(PROMPT):
        message = next_output(session)
        if message['ptype'] == 1:
            shown += opener.decrypt(message['payload'][:12], message['payload'][12:], None)
    assert shown == PROMPT
    assert counters(emu)['kms_sessions'] == 1
    session.ws.close()


# ---- DescribeSessions, ResumeSession, TerminateSession ---------------------------------------------


def _cut(session: Channel) -> None:
    """Lose the connection the way a network does: no close frame."""
    session.ws.socket.shutdown(socket.SHUT_RDWR)
    try:
        session.ws.recv(timeout=2)
    except (ConnectionClosed, TimeoutError):
        pass


def _status(ssm, session_id: str, state: str = 'Active') -> str | None:
    found = ssm.describe_sessions(State=state, Filters=[{'key': 'SessionId', 'value': session_id}])['Sessions']
    return found[0]['Status'] if found else None


def _wait_status(ssm, session_id: str, status: str, state: str = 'Active') -> None:
    deadline = time.monotonic() + 5
    while _status(ssm, session_id, state) != status:
        assert time.monotonic() < deadline, f'{session_id} never became {status}'
        time.sleep(0.02)


def test_sessions_are_described_resumed_and_terminated(emu):
    ssm = client(emu, 'ssm')
    started = ssm.start_session(Target=APP, Reason='patching')
    sid = started['SessionId']
    assert _status(ssm, sid) == 'Connecting'
    first = channel(started)
    first.until(lambda: first.output.endswith(PROMPT))
    _wait_status(ssm, sid, 'Connected')
    listed = ssm.describe_sessions(State='Active', Filters=[{'key': 'Target', 'value': APP}, {'key': 'Status', 'value': 'Connected'}])
    view = listed['Sessions'][0]
    assert set(view) == {'SessionId', 'Target', 'Status', 'StartDate', 'DocumentName', 'Owner', 'Reason', 'AccessType'}
    assert (view['DocumentName'], view['Owner'], view['Reason']) == (
        'SSM-SessionManagerRunShell', f'arn:aws:iam::{ACCOUNT}:user/tester', 'patching')
    # The network drops the websocket: the session waits, its shell alive, and resumes on a new token.
    typed(first, 'marker=kept')
    _cut(first)
    _wait_status(ssm, sid, 'Disconnected')
    resumed = ssm.resume_session(SessionId=sid)
    assert resumed['SessionId'] == sid and resumed['TokenValue'] != started['TokenValue']
    second = channel(resumed)
    second.seq, second.output, second.seen_seq = first.seq, first.output, set(first.seen_seq)
    assert typed(second, 'echo $marker').endswith(b'kept\r\n' + PROMPT)
    assert counters(emu)['resumed'] == 1
    assert ssm.terminate_session(SessionId=sid)['SessionId'] == sid
    second.finish()
    assert second.closed['Output'] == 'Session terminated'
    history = ssm.describe_sessions(State='History', Filters=[{'key': 'SessionId', 'value': sid}])['Sessions']
    assert history[0]['Status'] == 'Terminated' and history[0]['EndDate'] >= history[0]['StartDate']
    assert _status(ssm, sid) is None
    assert error(ssm.resume_session, SessionId=sid)[0] == 'DoesNotExistException'


def test_describe_sessions_pages_filters_and_errors(emu):
    ssm = client(emu, 'ssm')
    mine = [ssm.start_session(Target=FLEET[0])['SessionId'] for _attempt in range(3)]
    pages = list(ssm.get_paginator('describe_sessions').paginate(
        State='Active', Filters=[{'key': 'Target', 'value': FLEET[0]}], PaginationConfig={'PageSize': 2}))
    assert [[s['SessionId'] for s in p['Sessions']] for p in pages] == [mine[::-1][:2], mine[::-1][2:]]
    later = ssm.describe_sessions(State='Active', Filters=[{'key': 'InvokedAfter', 'value': '2999-01-01T00:00:00Z'}])
    assert later['Sessions'] == []
    for sid in mine:
        ssm.terminate_session(SessionId=sid)
    owned = ssm.describe_sessions(State='History', Filters=[{'key': 'Owner', 'value': f'arn:aws:iam::{ACCOUNT}:user/tester'},
                                                            {'key': 'Target', 'value': FLEET[0]}])
    assert sorted(s['SessionId'] for s in owned['Sessions']) == sorted(mine)
    assert error(ssm.describe_sessions, State='Active', Filters=[{'key': 'Color', 'value': 'red'}])[0] == 'InvalidFilterKey'
    assert error(ssm.describe_sessions, State='Running')[0] == 'ValidationException'
    assert error(ssm.describe_sessions, State='Active', MaxResults=201)[0] == 'ValidationException'
    assert error(ssm.describe_sessions, State='Active', NextToken='nonsense')[0] == 'InvalidNextToken'
    assert error(ssm.describe_sessions, State='Active', Filters=[{'key': 'InvokedAfter', 'value': 'yesterday'}])[0] == 'ValidationException'


def test_unused_session_token_expires(emu):
    ssm = client(emu, 'ssm')
    started = ssm.start_session(Target=FLEET[1])
    _wait_status(ssm, started['SessionId'], 'Terminated', state='History')
    session = channel(started)
    with pytest.raises(ConnectionClosed) as excinfo:
        session.ws.recv(timeout=5)
    assert excinfo.value.rcvd.code == 1008 and 'expired' in excinfo.value.rcvd.reason
    assert counters(emu)['sessions_refused'] == 1


def test_websocket_faults_apply_to_ssm_sessions(emu):
    emu.admin('POST', 'faults', {'service': 'ws', 'action': 'StartSession', 'lose_ack': 1})
    session = channel(client(emu, 'ssm').start_session(Target=FLEET[2]))
    session.until(lambda: session.output.endswith(PROMPT))
    frame = pack('input_stream_data', 0, b'echo once\r', message_id=uuid.uuid4())
    attempts = 0
    while not session.acks:
        session.ws.send(frame)
        attempts += 1
        try:
            session.until(lambda: bool(session.acks), timeout=0.3)
        except TimeoutError:
            assert attempts < 10
    session.until(lambda: session.output.endswith(b'once\r\n' + PROMPT))
    assert attempts >= 2 and session.output.count(b'once\r\n') == 2   # typed once: echo and output
    assert counters(emu)['acks_lost'] == 1
    session.ws.close()
