# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Session Manager on managed nodes: ids and document names refused before any call, and TargetNotConnected told for
what DescribeInstanceInformation says of the node."""

from __future__ import annotations

import datetime

import botocore.exceptions
import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import ssm_sessions
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError

NODE = 'i-0a1b2c3d4e5f60703'


@pytest.mark.parametrize('node_id', ['i-0a1b2c3d', 'i-0a1b2c3d4e5f60703', 'mi-0a1b2c3d4e5f60801'])
def test_node_ids_accepted(node_id):
    assert ssm_sessions.check_node_id(node_id) == node_id


@pytest.mark.parametrize('node_id, words', [
    (None, 'no managed node id'), ('', 'no managed node id'), ('web-1', 'is not a managed node id'),
    ('i-0A1B2C3D4E5F60703', 'is not a managed node id'), ('mi-0a1b2c3d', 'is not a managed node id'),
    ('ecs:cluster_task_runtime', 'is not a managed node id'),
])
def test_node_ids_refused_before_any_call(node_id, words):
    with pytest.raises(ValidationError) as excinfo:
        ssm_sessions.check_node_id(node_id)
    assert words in excinfo.value.message and 'ansible_aws_ssm_instance_id' in excinfo.value.remedy


def test_document_names():
    assert ssm_sessions.check_document(None) is None and ssm_sessions.check_document('') is None
    arn = 'arn:aws:ssm:us-east-1:123456789012:document/My-RunAsShell'
    assert ssm_sessions.check_document(arn) == arn
    for bad in ('ab', 'x' * 129, 'has space', 'semi;colon'):
        with pytest.raises(ValidationError, match='ssm_document'):
            ssm_sessions.check_document(bad)


class FakeClient:
    """An SSM client whose StartSession answers TargetNotConnected and whose DescribeInstanceInformation answers as given."""

    class meta:  # pylint: disable=invalid-name,too-few-public-methods
        region_name = 'eu-west-1'

    def __init__(self, nodes=None, describe_error=None):
        self.nodes = nodes or []
        self.describe_error = describe_error
        self.calls = []

    def describe_instance_information(self, **kwargs):
        self.calls.append(('DescribeInstanceInformation', kwargs))
        if self.describe_error:
            raise self.describe_error
        return {'InstanceInformationList': self.nodes}


def explained(client):
    return ssm_sessions.not_connected_error(client, NODE, CloudExecError(f'{NODE} is not connected.', code='TargetNotConnected'))


def test_offline_node_named_with_its_ping_status():
    last = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    client = FakeClient([{'InstanceId': NODE, 'PingStatus': 'ConnectionLost', 'LastPingDateTime': last, 'AgentVersion': '3.2.582.0'}])
    error = explained(client)
    assert error.message == (f'managed node {NODE} is not connected: DescribeInstanceInformation reports PingStatus '
                             'ConnectionLost (last ping 2026-01-02 03:04:05 UTC, agent 3.2.582.0)')
    assert error.code == 'TargetNotConnected' and not error.retryable and 'amazon-ssm-agent' in error.remedy
    assert client.calls == [('DescribeInstanceInformation', {'Filters': [{'Key': 'InstanceIds', 'Values': [NODE]}]})]


def test_unknown_node_names_the_region():
    error = explained(FakeClient([]))
    assert error.message.startswith(f'{NODE} is not a managed node in eu-west-1: DescribeInstanceInformation does not list it')
    assert 'ansible_aws_ssm_region' in error.remedy


def test_online_node_and_describe_refused():
    online = explained(FakeClient([{'InstanceId': NODE, 'PingStatus': 'Online'}]))
    assert 'although DescribeInstanceInformation reports PingStatus Online' in online.message

    denied = botocore.exceptions.ClientError({'Error': {'Code': 'AccessDeniedException', 'Message': 'no'}}, 'DescribeInstanceInformation')
    error = explained(FakeClient(describe_error=denied))
    assert 'could not say why (AccessDeniedException' in error.message
    assert 'ssm:DescribeInstanceInformation' in error.remedy
