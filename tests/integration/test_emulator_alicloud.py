# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Alibaba Tea SDKs against the emulator: both signature algorithms, real parsing, real error codes."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from alibabacloud_eci20180808 import models as eci_models
from alibabacloud_eci20180808.client import Client as EciClient
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config
from Tea.exceptions import TeaException

REGION = 'cn-hangzhou'
ALGORITHMS = ['ACS3-HMAC-SHA256', 'HMAC-SHA1']
STS = {'key': 'STS.EMULATOR000000000002', 'secret': 'EmulatorSecretForTestsOnly000002'}


def config(emu, algorithm: str = 'ACS3-HMAC-SHA256', key: str | None = None, secret: str | None = None,
           token: str | None = None) -> Config:
    ali = emu['alicloud']
    cfg = Config(access_key_id=key or ali['access_key'], access_key_secret=secret or ali['secret_key'], security_token=token,
                 endpoint=ali['ecs_endpoint'].split('://', 1)[1], protocol='http', region_id=REGION)
    if algorithm == 'HMAC-SHA1':
        # The old RPC signature (Signature query parameter) that footmark and the aliyun CLI send.
        cfg.signature_algorithm = 'v2'
    return cfg


def ecs(emu, **kwargs) -> EcsClient:
    return EcsClient(config(emu, **kwargs))


def eci(emu, **kwargs) -> EciClient:
    return EciClient(config(emu, **kwargs))


def describe_instances(client: EcsClient, **kwargs):
    return client.describe_instances(ecs_models.DescribeInstancesRequest(region_id=REGION, **kwargs)).body


@pytest.mark.parametrize('algorithm', ALGORITHMS)
def test_describe_instances(emu, algorithm):
    body = describe_instances(ecs(emu, algorithm=algorithm), page_size=3)
    assert body.total_count == 5 and body.page_number == 1 and body.page_size == 3
    first = body.instances.instance[0]
    assert first.instance_id == 'i-bp1demo000000000001'
    assert first.instance_name == 'web-01' and first.status == 'Running' and first.ostype == 'linux'
    assert first.vpc_attributes.vpc_id == 'vpc-emulator0001'
    assert {t.tag_key: t.tag_value for t in first.tags.tag} == {'app': 'web', 'env': 'demo'}
    assert len(body.instances.instance) == 3
    assert emu.admin('GET', 'calls')['signatures'] == {'ali-ecs': {algorithm: 1}}


def test_describe_instances_filters(emu):
    client = ecs(emu)
    body = describe_instances(client, instance_ids=json.dumps(['i-bp1demo000000000002', 'i-bp1demo000000000005', 'i-nope']))
    assert [i.instance_name for i in body.instances.instance] == ['db-01', 'win-01']
    assert [i.instance_id for i in describe_instances(client, status='Stopped').instances.instance] == ['i-bp1demo000000000004']
    body = describe_instances(client, tag=[ecs_models.DescribeInstancesRequestTag(key='app', value='web')])
    assert sorted(i.instance_name for i in body.instances.instance) == ['stopped-01', 'web-01']
    assert describe_instances(client, instance_name='web-*').total_count == 1
    assert describe_instances(client, zone_id='cn-hangzhou-i').instances.instance[0].instance_type == 'ecs.r7.xlarge'
    assert client.describe_instances(ecs_models.DescribeInstancesRequest(region_id='cn-beijing')).body.total_count == 0


def test_describe_instances_next_token_paging(emu):
    client = ecs(emu)
    seen, token = [], None
    while True:
        body = describe_instances(client, max_results=2, next_token=token)
        seen += [i.instance_id for i in body.instances.instance]
        token = body.next_token
        if not token:
            break
    assert seen == [f'i-bp1demo00000000000{n}' for n in range(1, 6)]
    assert emu.calls('ali-ecs', 'DescribeInstances') == 3


def test_describe_instances_requires_region(emu):
    with pytest.raises(TeaException) as excinfo:
        ecs(emu).describe_instances(ecs_models.DescribeInstancesRequest())
    assert (excinfo.value.code, excinfo.value.status_code) == ('MissingRegionId', 400)


@pytest.mark.parametrize('algorithm', ALGORITHMS)
def test_describe_cloud_assistant_status(emu, algorithm):
    ids = ['i-bp1demo000000000001', 'i-bp1demo000000000003', 'i-bp1demo000000000004', 'i-bp1demo000000000005']
    body = ecs(emu, algorithm=algorithm).describe_cloud_assistant_status(
        ecs_models.DescribeCloudAssistantStatusRequest(region_id=REGION, instance_id=ids)).body
    statuses = {s.instance_id: s for s in body.instance_cloud_assistant_status_set.instance_cloud_assistant_status}
    assert body.total_count == 4 and list(statuses) == ids
    # A string, not a boolean: that is what the service answers.
    assert {i: s.cloud_assistant_status for i, s in statuses.items()} == {
        'i-bp1demo000000000001': 'true', 'i-bp1demo000000000003': 'false',
        'i-bp1demo000000000004': 'false', 'i-bp1demo000000000005': 'true'}
    assert statuses['i-bp1demo000000000003'].cloud_assistant_version == '1.0.2.569'
    assert statuses['i-bp1demo000000000005'].ostype == 'Windows'
    assert statuses['i-bp1demo000000000001'].support_session_manager is True
    assert statuses['i-bp1demo000000000001'].last_heartbeat_time.endswith('Z')


def test_cloud_assistant_status_os_filter_and_paging(emu):
    client = ecs(emu)
    body = client.describe_cloud_assistant_status(ecs_models.DescribeCloudAssistantStatusRequest(region_id=REGION, ostype='Windows')).body
    assert [s.instance_id for s in body.instance_cloud_assistant_status_set.instance_cloud_assistant_status] == ['i-bp1demo000000000005']
    body = client.describe_cloud_assistant_status(ecs_models.DescribeCloudAssistantStatusRequest(region_id=REGION, page_size=2, page_number=3)).body
    assert body.total_count == 5 and len(body.instance_cloud_assistant_status_set.instance_cloud_assistant_status) == 1


@pytest.mark.parametrize('algorithm', ALGORITHMS)
def test_describe_container_groups_pagination(emu, algorithm):
    client = eci(emu, algorithm=algorithm)
    groups, token, pages = [], None, 0
    while True:
        body = client.describe_container_groups(eci_models.DescribeContainerGroupsRequest(region_id=REGION, limit=2, next_token=token)).body
        pages += 1
        assert body.total_count == 3
        groups += body.container_groups
        token = body.next_token
        if not token:
            break
    assert pages == 2
    assert [g.container_group_id for g in groups] == ['eci-bp1demo00000000001', 'eci-bp1demo00000000002', 'eci-bp1demo00000000003']
    assert [c.name for c in groups[1].containers] == ['app', 'sidecar']
    assert groups[0].containers[0].current_state.state == 'Running' and groups[0].containers[0].ready is True
    assert groups[2].status == 'Succeeded' and groups[2].containers[0].current_state.state == 'Terminated'
    assert {t.key: t.value for t in groups[0].tags} == {'app': 'web', 'env': 'demo'}
    assert emu.admin('GET', 'calls')['signatures'] == {'ali-eci': {algorithm: 2}}


def test_describe_container_groups_filters(emu):
    client = eci(emu)

    def ids(**kwargs):
        body = client.describe_container_groups(eci_models.DescribeContainerGroupsRequest(region_id=REGION, **kwargs)).body
        return [g.container_group_id for g in body.container_groups]

    assert ids(status='Succeeded') == ['eci-bp1demo00000000003']
    assert ids(container_group_name='api-1') == ['eci-bp1demo00000000002']
    assert ids(container_group_ids=json.dumps(['eci-bp1demo00000000003', 'eci-bp1demo00000000001'])) == [
        'eci-bp1demo00000000001', 'eci-bp1demo00000000003']
    assert ids(tag=[eci_models.DescribeContainerGroupsRequestTag(key='app', value='api')]) == ['eci-bp1demo00000000002']
    with pytest.raises(TeaException) as excinfo:
        ids(limit=21)
    assert (excinfo.value.code, excinfo.value.status_code) == ('InvalidParameter', 400)


@pytest.mark.parametrize('algorithm', ALGORITHMS)
def test_wrong_secret_is_signature_mismatch(emu, algorithm):
    with pytest.raises(TeaException) as excinfo:
        describe_instances(ecs(emu, algorithm=algorithm, secret='WrongSecret'))
    assert (excinfo.value.code, excinfo.value.status_code) == ('SignatureDoesNotMatch', 400)
    assert excinfo.value.data['Recommend'] and excinfo.value.data['HostId']


@pytest.mark.parametrize('algorithm', ALGORITHMS)
def test_unknown_key_is_not_found(emu, algorithm):
    with pytest.raises(TeaException) as excinfo:
        eci(emu, algorithm=algorithm, key='LTAINOBODYKNOWSTHIS').describe_container_groups(
            eci_models.DescribeContainerGroupsRequest(region_id=REGION))
    assert (excinfo.value.code, excinfo.value.status_code) == ('InvalidAccessKeyId.NotFound', 404)


@pytest.mark.parametrize('algorithm', ALGORITHMS)
def test_sts_security_token(emu, algorithm):
    assert describe_instances(ecs(emu, algorithm=algorithm, key=STS['key'], secret=STS['secret'], token='emulator-sts-token-0002')).total_count == 5
    for token, code in ((None, 'InvalidSecurityToken.Malformed'), ('forged', 'InvalidSecurityToken.MismatchWithAccessKey')):
        with pytest.raises(TeaException) as excinfo:
            describe_instances(ecs(emu, algorithm=algorithm, key=STS['key'], secret=STS['secret'], token=token))
        assert (excinfo.value.code, excinfo.value.status_code) == (code, 400)


def _raw(emu, query: str, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(f'{emu.endpoint}/?{query}', data=b'', method='POST', headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_incomplete_signatures(emu):
    status, body = _raw(emu, 'RegionId=cn-hangzhou', {'x-acs-action': 'DescribeInstances', 'x-acs-version': '2014-05-26'})
    assert (status, body['Code']) == (400, 'IncompleteSignature')
    status, body = _raw(emu, 'RegionId=cn-hangzhou', {'x-acs-action': 'DescribeInstances', 'x-acs-version': '2014-05-26',
                                                      'Authorization': 'ACS3-HMAC-SHA256 Credential=LTAIEMULATOR0000000001'})
    assert (status, body['Code']) == (400, 'IncompleteSignature')
    status, body = _raw(emu, 'Action=DescribeInstances&Version=2014-05-26&AccessKeyId=LTAIEMULATOR0000000001&SignatureMethod=HMAC-SHA1', {})
    assert (status, body['Code']) == (400, 'IncompleteSignature')
    assert body['RequestId'] and set(body) == {'RequestId', 'HostId', 'Code', 'Message', 'Recommend'}


def test_unknown_action_and_version(emu):
    status, body = _raw(emu, 'RegionId=cn-hangzhou', {'x-acs-action': 'NoSuchThing', 'x-acs-version': '2014-05-26'})
    assert (status, body['Code']) == (404, 'InvalidAction.NotFound')
    status, body = _raw(emu, 'RegionId=cn-hangzhou', {'x-acs-action': 'DescribeInstances', 'x-acs-version': '2099-01-01'})
    assert (status, body['Code']) == (400, 'InvalidVersion')


@pytest.mark.parametrize('algorithm', ALGORITHMS)
def test_throttling_fault(emu, algorithm):
    emu.admin('POST', 'faults', {'service': 'ali-ecs', 'action': 'DescribeInstances', 'throttle': 2})
    client = ecs(emu, algorithm=algorithm)
    for _attempt in range(2):
        with pytest.raises(TeaException) as excinfo:
            describe_instances(client)
        assert (excinfo.value.code, excinfo.value.status_code) == ('Throttling.User', 400)
    assert describe_instances(client).total_count == 5
    # ECI was never throttled.
    assert eci(emu).describe_container_groups(eci_models.DescribeContainerGroupsRequest(region_id=REGION)).body.total_count == 3
    stats = emu.admin('GET', 'calls')
    assert stats['calls']['ali-ecs']['DescribeInstances'] == 3
    assert stats['errors']['ali-ecs']['DescribeInstances'] == {'Throttling.User': 2}


def test_server_error_fault(emu):
    emu.admin('POST', 'faults', {'service': 'ali-eci', 'server_error': 1, 'status': 503})
    with pytest.raises(TeaException) as excinfo:
        eci(emu).describe_container_groups(eci_models.DescribeContainerGroupsRequest(region_id=REGION))
    assert (excinfo.value.code, excinfo.value.status_code) == ('ServiceUnavailable', 503)
    emu.admin('POST', 'faults', {'service': 'ali-eci', 'server_error': 1})
    with pytest.raises(TeaException) as excinfo:
        eci(emu).describe_container_groups(eci_models.DescribeContainerGroupsRequest(region_id=REGION))
    assert (excinfo.value.code, excinfo.value.status_code) == ('InternalError', 500)
