# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's own client factories against the emulator, configured the way users configure them (env vars)."""
from __future__ import annotations

import os
import time

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud, aws, eci  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant as ca  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cloudexec.core.plugins.module_utils.poll import Backoff, Poller, WaitPolicy  # noqa: E402  pylint: disable=wrong-import-position
from alibabacloud_ecs20140526 import models as ecs_models  # noqa: E402  pylint: disable=wrong-import-position
from alibabacloud_eci20180808 import models as eci_models  # noqa: E402  pylint: disable=wrong-import-position
from helpers import refused_endpoint, silent_endpoint  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def user_env(emu, monkeypatch):
    """The environment a user gets from `source emulator.env`, and nothing else of AWS/Alibaba."""
    for name in list(os.environ):
        if name.startswith(('AWS_', 'ALICLOUD_', 'ALIBABA_CLOUD_', 'EC2_')):
            monkeypatch.delenv(name)
    for name, value in emu.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv('AWS_CONFIG_FILE', os.devnull)
    monkeypatch.setenv('AWS_SHARED_CREDENTIALS_FILE', os.devnull)
    return emu


def alicloud_auth_from_env(**overrides):
    """What a module's env fallbacks produce."""
    def get(name):
        if name in overrides:
            return overrides[name]
        for env_name in alicloud.ALICLOUD_AUTH_ENV.get(name, []):
            if os.environ.get(env_name):
                return os.environ[env_name]
        return alicloud.ALICLOUD_AUTH_ARGSPEC[name].get('default')
    return alicloud.AlicloudAuth.from_options(get)


def aws_auth(**values):
    defaults = {'validate_certs': True, 'retry_mode': 'standard', 'max_attempts': 5}
    defaults.update(values)
    return aws.AwsAuth.from_options(defaults.get, environ=os.environ)


def test_aws_client_uses_boto3_chain_and_lists_tasks(user_env):
    client = aws.aws_client(aws_auth(), 'ecs')
    assert client.meta.endpoint_url == user_env['aws']['endpoint_url']
    tasks = aws.paginate(client, 'list_tasks', 'taskArns', cluster='demo')
    assert len(tasks) == 3 and all(':task/demo/' in arn for arn in tasks)
    described = aws.call(client, 'describe_tasks', cluster='demo', tasks=tasks)
    assert {c['name'] for t in described['tasks'] for c in t['containers']} == {'web', 'app', 'sidecar', 'worker'}


def test_aws_wrong_secret_maps_to_error_with_remedy(user_env):
    client = aws.aws_client(aws_auth(access_key=user_env['aws']['access_key'], secret_key='wrong'), 'ecs')
    with pytest.raises(CloudExecError) as info:
        aws.call(client, 'list_clusters')
    assert info.value.code == 'InvalidSignatureException'
    assert info.value.status == 400 and 'secret_key' in info.value.remedy
    assert 'wrong' not in str(info.value)


def test_aws_throttling_is_absorbed_by_botocore_retries(user_env):
    user_env.admin('POST', 'faults', {'service': 'aws-ecs', 'action': 'ListClusters', 'throttle': 2})
    client = aws.aws_client(aws_auth(), 'ecs')
    assert len(aws.call(client, 'list_clusters')['clusterArns']) == 2
    calls = user_env.admin('GET', 'calls')
    assert calls['calls']['aws-ecs']['ListClusters'] == 3


def test_alicloud_clients_from_alicloud_env(user_env):
    auth = alicloud_auth_from_env()
    assert auth.alicloud_region == 'cn-hangzhou'
    body = alicloud.call(alicloud.ecs_client(auth), 'describe_instances',
                         ecs_models.DescribeInstancesRequest(region_id=auth.alicloud_region, page_size=100), auth)
    assert body.total_count == 5
    assert {i.instance_id for i in body.instances.instance} >= {'i-bp1demo000000000001', 'i-bp1demo000000000005'}
    groups = alicloud.call(alicloud.eci_client(auth), 'describe_container_groups',
                           eci_models.DescribeContainerGroupsRequest(region_id=auth.alicloud_region), auth)
    assert {g.container_group_name for g in groups.container_groups} == {'web-1', 'api-1', 'job-1'}


def test_alicloud_sdk_variable_names_work_alone(user_env, monkeypatch):
    for name in list(os.environ):
        if name.startswith('ALICLOUD_') and not name.endswith('_ENDPOINT'):
            monkeypatch.delenv(name)
    auth = alicloud_auth_from_env()
    assert auth.alicloud_access_key == user_env['alicloud']['access_key']
    body = alicloud.call(alicloud.ecs_client(auth), 'describe_cloud_assistant_status',
                         ecs_models.DescribeCloudAssistantStatusRequest(region_id=auth.alicloud_region,
                                                                        instance_id=['i-bp1demo000000000003']), auth)
    status = body.instance_cloud_assistant_status_set.instance_cloud_assistant_status[0]
    assert status.cloud_assistant_status == 'false'


def test_alicloud_wrong_secret_and_unknown_key(user_env):
    auth = alicloud_auth_from_env(alicloud_secret_key='not-the-secret')
    request = ecs_models.DescribeInstancesRequest(region_id=auth.alicloud_region)
    with pytest.raises(CloudExecError) as info:
        alicloud.call(alicloud.ecs_client(auth), 'describe_instances', request, auth)
    assert (info.value.code, info.value.status) == ('SignatureDoesNotMatch', 400)
    assert 'alicloud_secret_key' in info.value.remedy and 'not-the-secret' not in str(info.value)
    auth = alicloud_auth_from_env(alicloud_access_key='LTAInobodyknowsthis')
    with pytest.raises(CloudExecError) as info:
        alicloud.call(alicloud.ecs_client(auth), 'describe_instances', request, auth)
    assert (info.value.code, info.value.status) == ('InvalidAccessKeyId.NotFound', 404)


def test_alicloud_throttling_is_retried_by_the_poller(user_env):
    user_env.admin('POST', 'faults', {'service': 'ali-ecs', 'action': 'DescribeInstances', 'throttle': 2})
    auth = alicloud_auth_from_env()
    client = alicloud.ecs_client(auth)
    request = ecs_models.DescribeInstancesRequest(region_id=auth.alicloud_region)
    seen = []
    poller = Poller(30, policy=WaitPolicy('fast', Backoff(initial=0.05, cap=0.2)), on_progress=lambda e: seen.append(e.error.code))
    body = poller.call(lambda: alicloud.call(client, 'describe_instances', request, auth))
    assert body.total_count == 5
    assert seen == ['Throttling.User', 'Throttling.User']
    assert user_env.admin('GET', 'calls')['calls']['ali-ecs']['DescribeInstances'] == 3


def test_refused_endpoint_fails_within_seconds_naming_url_and_cause(user_env):
    """A refused port: two quick retries (not a minute of them), then the URL and the SDK's real cause."""
    endpoint = refused_endpoint()
    auth = alicloud_auth_from_env(ecs_endpoint=endpoint)
    started = time.monotonic()
    with pytest.raises(CloudExecError) as info:
        ca.retried_call(alicloud.ecs_client(auth), auth, 'describe_instances', ecs_models.DescribeInstancesRequest(region_id='cn-hangzhou'))
    elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed
    assert info.value.code == 'Connection.Refused'
    text = str(info.value)
    assert f'DescribeInstances failed: cannot connect to {endpoint}: Connection refused' in text, text
    assert 'ecs_endpoint' in info.value.remedy and '?' not in text and 'RegionId' not in text


def test_silent_endpoint_is_a_read_timeout_naming_the_option(user_env):
    """An endpoint that accepts and never answers: one read timeout of read_timeout seconds, not retried, said as such."""
    with silent_endpoint() as endpoint:
        auth = alicloud_auth_from_env(eci_endpoint=endpoint, read_timeout=2)
        started = time.monotonic()
        with pytest.raises(CloudExecError) as info:
            eci.describe_groups(alicloud.eci_client(auth), auth, group_id='eci-nothing')
        elapsed = time.monotonic() - started
    assert 2 <= elapsed < 5, elapsed
    assert info.value.code == 'Connection.ReadTimeout' and not info.value.retryable
    assert f'no answer from {endpoint} within the read timeout of 2 seconds (Read timed out)' in str(info.value)
    assert 'read_timeout' in info.value.remedy and 'eci_endpoint' in info.value.remedy
