# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""ssm_nodes (records, filters, ids) and ssm_checks (the Session Manager preflight verdicts), without any API."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.cloudexec.core.plugins.inventory import aws_ssm
from ansible_collections.cloudexec.core.plugins.module_utils import ssm_checks, ssm_nodes, ssm_sessions
from ansible_collections.cloudexec.core.plugins.module_utils.errors import ValidationError


@pytest.mark.parametrize('node_id', ['i-0a1b2c3d', 'i-0a1b2c3d4e5f60701', 'mi-0a1b2c3d4e5f60801'])
def test_node_ids_accepted(node_id):
    assert ssm_sessions.check_node_id(node_id, 'instance_id') == node_id


@pytest.mark.parametrize('node_id', ['i-xyz', 'i-0A1B2C3D4E5F60701', 'mi-0a1b2c3d', 'web-1', 'i-0a1b2c3d4e5f607011', ''])
def test_node_ids_refused_naming_the_parameter(node_id):
    with pytest.raises(ValidationError) as caught:
        ssm_sessions.check_node_id(node_id, 'instance_id')
    assert 'instance_id' in str(caught.value) and ('17 hex digits' in str(caught.value) or 'no managed node id' in str(caught.value))


def test_filters_become_api_filters():
    assert ssm_nodes.api_filters({'PlatformTypes': 'Linux', 'PingStatus': ['Online', 'ConnectionLost']}) == [
        {'Key': 'PlatformTypes', 'Values': ['Linux']}, {'Key': 'PingStatus', 'Values': ['Online', 'ConnectionLost']}]
    assert ssm_nodes.api_filters({'tag:app': 'web', 'tag-key': ['env']}) == [
        {'Key': 'tag:app', 'Values': ['web']}, {'Key': 'tag-key', 'Values': ['env']}]
    assert ssm_nodes.api_filters({}) == []


@pytest.mark.parametrize(('filters', 'words'), [
    ({'Platform': 'Linux'}, "'Platform' is not a filter key"),
    ({'tag:': 'x'}, 'is not a filter key'),
    ({'tag:app': 'web', 'ResourceType': 'EC2Instance'}, 'cannot be combined'),
    ({'InstanceIds': []}, 'needs 1 to 100 values'),
    ({'InstanceIds': [f'i-{n:017x}' for n in range(101)]}, 'needs 1 to 100 values (it has 101)'),
])
def test_bad_filters(filters, words):
    with pytest.raises(ValidationError) as caught:
        ssm_nodes.api_filters(filters)
    assert 'filters' in str(caught.value) and words in str(caught.value)


def test_node_record_is_plain_json():
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    record = ssm_nodes.node_record({'InstanceId': 'mi-0a1b2c3d4e5f60801', 'PingStatus': 'Online', 'LastPingDateTime': when,
                                    'ResourceType': 'ManagedInstance', 'Name': 'onprem-1', 'RegistrationDate': when}, 'eu-west-1')
    assert record['last_ping'] == '2026-01-02T03:04:05+00:00' and record['registration_date'] == record['last_ping']
    assert (record['name'], record['region'], record['tags']) == ('onprem-1', 'eu-west-1', {})


def test_ec2_details_give_name_and_tags():
    record = ssm_nodes.node_record({'InstanceId': 'i-0a1b2c3d4e5f60701'}, 'us-east-1')
    ssm_nodes.add_ec2_details(record, {'Tags': [{'Key': 'Name', 'Value': 'web-1'}, {'Key': 'app', 'Value': 'web'}],
                                       'State': {'Name': 'running'}, 'VpcId': 'vpc-1', 'PrivateDnsName': ''})
    assert (record['name'], record['tags'], record['vpc_id']) == ('web-1', {'Name': 'web-1', 'app': 'web'}, 'vpc-1')
    assert record['private_dns_name'] is None and record['instance_state'] == 'running'


def test_hostname_fields_take_aws_ec2_spellings():
    fields = aws_ssm.hostname_fields({'instance_id': 'i-1', 'computer_name': 'host.example', 'ip_address': '10.0.0.1', 'tags': {}})
    assert (fields['instance-id'], fields['computer-name'], fields['private-ip-address']) == ('i-1', 'host.example', '10.0.0.1')
    assert 'tags' not in fields and fields['private-dns-name'] is None


# ---- checks ---------------------------------------------------------------------------------------------------------

NODE = {'instance_id': 'i-0a1b2c3d4e5f60701', 'region': 'us-east-1', 'resource_type': 'EC2Instance', 'platform_type': 'Linux',
        'ping_status': 'Online', 'agent_version': '3.3.1802.0', 'is_latest_version': True, 'vpc_id': 'vpc-1'}


@pytest.mark.parametrize(('status', 'verdict', 'words'), [
    ('Online', 'pass', 'Online'), ('ConnectionLost', 'fail', 'lost its connection'), ('Inactive', 'fail', 'is Inactive')])
def test_agent_online(status, verdict, words):
    check = ssm_checks.agent_online({**NODE, 'ping_status': status, 'last_ping': '2026-01-01T00:00:00+00:00'})
    assert check.status == verdict and words in check.detail
    assert (check.remedy is None) == (verdict == 'pass')


@pytest.mark.parametrize(('version', 'kms', 'run_as', 'platform', 'verdict'), [
    ('2.3.68.0', False, False, 'Linux', 'warn'),          # old enough, not the latest
    ('2.3.67.0', False, False, 'Linux', 'fail'),
    ('2.3.538.0', True, False, 'Linux', 'fail'),
    ('2.3.539.0', True, False, 'Linux', 'warn'),
    ('2.3.671.0', False, True, 'Linux', 'fail'),
    ('2.3.671.0', False, True, 'Windows', 'warn'),        # Run As is not for Windows: its floor does not apply
    ('2.3.672.0', True, True, 'Linux', 'warn'),
    ('unknown', False, False, 'Linux', 'unknown'),
])
def test_agent_version_floors(version, kms, run_as, platform, verdict):
    node = {**NODE, 'agent_version': version, 'is_latest_version': False, 'platform_type': platform}
    assert ssm_checks.agent_version(node, kms, run_as).status == verdict
    assert ssm_checks.agent_version({**NODE}, True, True).status == 'pass'


def test_document_inputs_and_verdicts():
    inputs = ssm_checks.document_inputs({'inputs': {'runAsEnabled': 'true', 'runAsDefaultUser': '', 'kmsKeyId': 'k'}})
    assert inputs == {'run_as_enabled': True, 'run_as_default_user': None, 'kms_key_id': 'k'}
    assert ssm_checks.document_inputs(None) == {'run_as_enabled': False, 'run_as_default_user': None, 'kms_key_id': None}
    assert ssm_checks.session_document('X', {'sessionType': 'Port'}).status == 'fail'
    assert ssm_checks.session_document('X', {'sessionType': 'InteractiveCommands'}).status == 'warn'


def test_run_as_choices():
    on = {'run_as_enabled': True, 'run_as_default_user': 'ec2-user', 'kms_key_id': None}
    assert 'deploy' in ssm_checks.run_as(NODE, on, 'deploy', True).detail            # the tag wins over the default
    assert 'ec2-user' in ssm_checks.run_as(NODE, on, None, True).detail
    assert ssm_checks.run_as(NODE, on, None, False).status == 'warn'
    no_default = {**on, 'run_as_default_user': None}
    assert ssm_checks.run_as(NODE, no_default, None, True).status == 'fail'
    assert ssm_checks.run_as(NODE, no_default, None, False).status == 'unknown'
    assert ssm_checks.run_as(NODE, {**on, 'run_as_enabled': False}, None, True).detail.endswith('ssm-user')


def test_permissions():
    assert ssm_checks.start_session_permission({'a': 'allowed', 'b': 'allowed'}).status == 'pass'
    assert 'b' in ssm_checks.start_session_permission({'a': 'allowed', 'b': 'implicitDeny'}).detail
    assert ssm_checks.start_session_permission({'a': 'allowed', 'b': None}).status == 'unknown'
    assert ssm_checks.kms_permission(None, None).status == 'pass'
    assert ssm_checks.kms_permission('k', 'explicitDeny').status == 'fail'
    assert ssm_checks.kms_permission('k', None).status == 'unknown'


def test_network_path():
    full = [f'com.amazonaws.us-east-1.{s}' for s in ('ssm', 'ssmmessages', 'ec2messages')]
    assert ssm_checks.network_path(NODE, full).status == 'pass'
    check = ssm_checks.network_path(NODE, full[:1])
    assert check.status == 'warn' and 'ssmmessages' in check.detail and 'ec2messages' in check.detail
    assert ssm_checks.network_path({**NODE, 'public_ip_address': '203.0.113.1'}, None).status == 'pass'
    assert ssm_checks.network_path(NODE, None).status == 'unknown'
    assert ssm_checks.network_path({**NODE, 'resource_type': 'ManagedInstance'}, full).status == 'unknown'


def test_missing_node():
    assert 'Start the instance' in ssm_checks.node_missing('i-1', 'us-east-1', 'stopped').remedy
    assert ssm_checks.node_missing('i-1', 'us-east-1', 'running').code == 'NotManaged'
    assert ssm_checks.node_missing('mi-1', 'us-east-1', None).code == 'InvalidInstanceId'
