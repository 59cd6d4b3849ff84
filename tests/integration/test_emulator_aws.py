# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""boto3 against the emulator's Amazon ECS: real signing, real parsing, real retries."""
from __future__ import annotations

import datetime
import json
import time
import urllib.error
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import pytest
from botocore.exceptions import ClientError

from cloudexec_emulator import sigv4
from cloudexec_emulator.errors import ApiError
from cloudexec_emulator.world import AwsCredential

DEMO_WEB = '1f0e1c2d3b4a59687766554433221100'
DEMO_API = '2a1b2c3d4e5f60718293a4b5c6d7e8f9'
DEMO_BATCH = '3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f'
STAGING_LEGACY = '5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b'
TARGET = 'AmazonEC2ContainerServiceV20141113'


def ecs_client(emu, attempts: int = 3, **overrides):
    aws = emu['aws']
    kwargs = {
        'endpoint_url': aws['endpoint_url'], 'region_name': aws['region'],
        'aws_access_key_id': aws['access_key'], 'aws_secret_access_key': aws['secret_key'],
        'config': botocore.config.Config(retries={'mode': 'standard', 'total_max_attempts': attempts}),
    }
    kwargs.update(overrides)
    return boto3.client('ecs', **kwargs)


def error_of(excinfo) -> tuple[str, int]:
    err = excinfo.value.response
    return err['Error']['Code'], err['ResponseMetadata']['HTTPStatusCode']


def test_list_clusters(emu):
    assert ecs_client(emu).list_clusters()['clusterArns'] == [
        'arn:aws:ecs:us-east-1:123456789012:cluster/demo',
        'arn:aws:ecs:us-east-1:123456789012:cluster/staging',
    ]
    assert emu.calls('aws-ecs', 'ListClusters') == 1


def test_other_region_has_no_clusters(emu):
    assert ecs_client(emu, region_name='eu-west-1').list_clusters()['clusterArns'] == []


def test_describe_clusters_with_tags_and_failures(emu):
    out = ecs_client(emu).describe_clusters(clusters=['demo', 'nope'], include=['TAGS', 'SETTINGS'])
    assert [c['clusterName'] for c in out['clusters']] == ['demo']
    assert out['clusters'][0]['tags'] == [{'key': 'env', 'value': 'demo'}]
    assert out['clusters'][0]['runningTasksCount'] == 3
    assert out['failures'] == [{'arn': 'arn:aws:ecs:us-east-1:123456789012:cluster/nope', 'reason': 'MISSING'}]


def test_list_tasks_filters(emu):
    ecs = ecs_client(emu)
    assert len(ecs.list_tasks(cluster='demo')['taskArns']) == 3
    assert ecs.list_tasks(cluster='demo', serviceName='api')['taskArns'] == [f'arn:aws:ecs:us-east-1:123456789012:task/demo/{DEMO_API}']
    assert ecs.list_tasks(cluster='demo', family='batch')['taskArns'] == [f'arn:aws:ecs:us-east-1:123456789012:task/demo/{DEMO_BATCH}']
    assert ecs.list_tasks(cluster='staging', launchType='EC2')['taskArns'][0].endswith(STAGING_LEGACY)
    assert ecs.list_tasks(cluster='demo', desiredStatus='STOPPED')['taskArns'] == []
    with pytest.raises(ClientError) as excinfo:
        ecs.list_tasks(cluster='demo', serviceName='missing')
    assert error_of(excinfo) == ('ServiceNotFoundException', 400)
    with pytest.raises(ClientError) as excinfo:
        ecs.list_tasks(cluster='nowhere')
    assert error_of(excinfo) == ('ClusterNotFoundException', 400)


def test_list_tasks_pagination(emu):
    ecs = ecs_client(emu)
    first = ecs.list_tasks(cluster='demo', maxResults=2)
    assert len(first['taskArns']) == 2 and first['nextToken']
    second = ecs.list_tasks(cluster='demo', maxResults=2, nextToken=first['nextToken'])
    assert len(second['taskArns']) == 1 and 'nextToken' not in second
    paged = [arn for p in ecs.get_paginator('list_tasks').paginate(cluster='demo', PaginationConfig={'PageSize': 1}) for arn in p['taskArns']]
    assert paged == first['taskArns'] + second['taskArns']
    assert emu.calls('aws-ecs', 'ListTasks') == 5
    # A token is only valid for the query it came from.
    with pytest.raises(ClientError) as excinfo:
        ecs.list_tasks(cluster='demo', family='web', maxResults=2, nextToken=first['nextToken'])
    assert error_of(excinfo) == ('InvalidParameterException', 400)


def test_describe_tasks(emu):
    out = ecs_client(emu).describe_tasks(cluster='demo', tasks=[DEMO_API, DEMO_BATCH, 'deadbeef'], include=['TAGS'])
    api, batch = out['tasks']
    assert api['taskArn'].endswith(DEMO_API)
    assert api['group'] == 'service:api' and api['launchType'] == 'FARGATE' and api['platformVersion'] == '1.4.0'
    assert api['enableExecuteCommand'] is True and api['lastStatus'] == 'RUNNING'
    assert isinstance(api['createdAt'], datetime.datetime)
    assert {'key': 'app', 'value': 'api'} in api['tags']
    assert [c['name'] for c in api['containers']] == ['app', 'sidecar']
    for container in api['containers']:
        assert container['runtimeId'].startswith(DEMO_API + '-')
        assert container['managedAgents'][0]['name'] == 'ExecuteCommandAgent'
        assert container['managedAgents'][0]['lastStatus'] == 'RUNNING'
    assert batch['enableExecuteCommand'] is False and batch['group'] == 'family:batch'
    assert 'managedAgents' not in batch['containers'][0]
    assert out['failures'] == [{'arn': 'arn:aws:ecs:us-east-1:123456789012:task/demo/deadbeef', 'reason': 'MISSING'}]


def test_describe_tasks_agent_stopped_and_no_tags_by_default(emu):
    task = ecs_client(emu).describe_tasks(cluster='staging', tasks=[STAGING_LEGACY])['tasks'][0]
    assert task['launchType'] == 'EC2' and 'platformVersion' not in task and 'tags' not in task
    assert task['containers'][0]['managedAgents'][0]['lastStatus'] == 'STOPPED'
    assert len(task['containers'][0]['runtimeId']) == 64


def test_wrong_secret_is_invalid_signature(emu):
    with pytest.raises(ClientError) as excinfo:
        ecs_client(emu, aws_secret_access_key='not-the-secret').list_clusters()
    assert error_of(excinfo) == ('InvalidSignatureException', 400)
    assert emu.admin('GET', 'calls')['errors']['aws-ecs']['ListClusters'] == {'InvalidSignatureException': 1}


def test_unknown_key_is_unrecognized_client(emu):
    with pytest.raises(ClientError) as excinfo:
        ecs_client(emu, aws_access_key_id='AKIANOBODYKNOWSTHIS1').list_tasks(cluster='demo')
    assert error_of(excinfo) == ('UnrecognizedClientException', 400)


def test_session_token_must_match(emu):
    temp = {'aws_access_key_id': 'ASIAEMULATOR00000002', 'aws_secret_access_key': 'emulator/secret/key/for/tests/only00002'}
    assert len(ecs_client(emu, aws_session_token='emulator-session-token-0002', **temp).list_clusters()['clusterArns']) == 2
    for token in (None, 'stolen-token'):
        with pytest.raises(ClientError) as excinfo:
            ecs_client(emu, aws_session_token=token, **temp).list_clusters()
        assert error_of(excinfo) == ('UnrecognizedClientException', 400)


def test_denied_action(emu):
    ecs = ecs_client(emu, aws_access_key_id='AKIAEMULATORREADONLY', aws_secret_access_key='emulator/secret/key/for/tests/readonly')
    assert len(ecs.list_clusters()['clusterArns']) == 2
    with pytest.raises(ClientError) as excinfo:
        ecs.list_tasks(cluster='demo')
    assert error_of(excinfo) == ('AccessDeniedException', 400)
    assert 'ecs:ListTasks' in excinfo.value.response['Error']['Message']


def _raw_post(emu, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(emu.endpoint + '/', data=b'{}', method='POST',
                                 headers={'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': f'{TARGET}.ListClusters', **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_missing_and_incomplete_signatures(emu):
    status, body = _raw_post(emu, {})
    assert (status, body['__type']) == (403, 'MissingAuthenticationTokenException')
    status, body = _raw_post(emu, {'Authorization': 'AWS4-HMAC-SHA256 Credential=AKIAEMULATOR00000001/20240101/us-east-1/ecs/aws4_request',
                                   'X-Amz-Date': '20240101T000000Z'})
    assert (status, body['__type']) == (400, 'IncompleteSignatureException')
    assert "'SignedHeaders'" in body['message']


def test_clock_skew_refused():
    """botocore's own signature, checked by our verifier with a clock 10 minutes ahead."""
    cred = AwsCredential(access_key='AKIDCLOCK', secret_key='clock-secret')
    request = botocore.awsrequest.AWSRequest(method='POST', url='http://127.0.0.1:1/', data=b'{}',
                                             headers={'X-Amz-Target': f'{TARGET}.ListClusters'})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials('AKIDCLOCK', 'clock-secret'), 'ecs', 'us-east-1').add_auth(request)
    prepared = request.prepare()
    headers = dict(prepared.headers)
    headers['Host'] = '127.0.0.1:1'
    signed = sigv4.SignedRequest(method='POST', raw_path='/', raw_query='', headers=headers, getall=lambda n: [
        v for k, v in headers.items() if k.lower() == n], body=prepared.body)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert sigv4.verify(signed, {'AKIDCLOCK': cred}.get, 'ecs', now=now).region == 'us-east-1'
    with pytest.raises(ApiError) as excinfo:
        sigv4.verify(signed, {'AKIDCLOCK': cred}.get, 'ecs', now=now + datetime.timedelta(minutes=10))
    assert excinfo.value.code == 'InvalidSignatureException' and 'Signature expired' in excinfo.value.message
    with pytest.raises(ApiError) as excinfo:
        sigv4.verify(signed, {'AKIDCLOCK': cred}.get, 'logs', now=now)
    assert excinfo.value.code == 'InvalidSignatureException'


def test_throttle_recovers_with_standard_retries(emu):
    rule = emu.admin('POST', 'faults', {'service': 'aws-ecs', 'action': 'ListTasks', 'throttle': 2})['faults'][0]
    assert rule['throttle'] == 2
    assert len(ecs_client(emu, attempts=3).list_tasks(cluster='demo')['taskArns']) == 3
    stats = emu.admin('GET', 'calls')
    assert stats['calls']['aws-ecs']['ListTasks'] == 3
    assert stats['errors']['aws-ecs']['ListTasks'] == {'ThrottlingException': 2}
    # Other actions were never affected.
    assert 'ListClusters' not in stats['calls']['aws-ecs']


def test_throttle_without_retries_surfaces_the_code(emu):
    emu.admin('POST', 'faults', {'service': '*', 'throttle': 1})
    with pytest.raises(ClientError) as excinfo:
        ecs_client(emu, attempts=1).list_clusters()
    assert error_of(excinfo) == ('ThrottlingException', 400)
    assert len(ecs_client(emu, attempts=1).list_clusters()['clusterArns']) == 2


def test_server_errors(emu):
    emu.admin('POST', 'faults', [{'service': 'aws-ecs', 'server_error': 1}, {'service': 'aws-ecs', 'server_error': 1, 'status': 503}])
    ecs = ecs_client(emu, attempts=1)
    for expected in (('ServerException', 500), ('ServiceUnavailableException', 503)):
        with pytest.raises(ClientError) as excinfo:
            ecs.list_clusters()
        assert error_of(excinfo) == expected
    assert len(ecs.list_clusters()['clusterArns']) == 2
    assert emu.admin('GET', 'faults')['faults'] == []


def test_latency(emu):
    # Wide apart on purpose: the untouched call must not be slowed, even on a loaded machine.
    emu.admin('POST', 'faults', {'service': 'aws-ecs', 'action': 'ListClusters', 'latency_ms': 1500})
    ecs = ecs_client(emu)
    started = time.monotonic()
    ecs.list_clusters()
    assert time.monotonic() - started >= 1.5
    started = time.monotonic()
    ecs.list_tasks(cluster='demo')
    assert time.monotonic() - started < 1.5


def test_signature_counter(emu):
    ecs_client(emu).list_clusters()
    assert emu.admin('GET', 'calls')['signatures'] == {'aws-ecs': {'AWS4-HMAC-SHA256': 1}}
