# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible.errors import AnsibleError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.inventory import BaseInventoryPlugin

from ansible_collections.cloudexec.core.plugins.inventory import aws_ecs
from ansible_collections.cloudexec.core.plugins.module_utils.aws import AwsAuth
from ansible_collections.cloudexec.core.plugins.plugin_utils import inventory as inv

CLUSTER = 'arn:aws:ecs:us-east-1:123456789012:cluster/demo'


def described(task_id='1f0e', containers=None, **extra):
    """A DescribeTasks task as boto3 returns it."""
    task = {
        'taskArn': f'arn:aws:ecs:us-east-1:123456789012:task/demo/{task_id}',
        'clusterArn': CLUSTER,
        'taskDefinitionArn': 'arn:aws:ecs:us-east-1:123456789012:task-definition/web:7',
        'group': 'service:web',
        'launchType': 'FARGATE',
        'platformVersion': '1.4.0',
        'lastStatus': 'RUNNING',
        'desiredStatus': 'RUNNING',
        'availabilityZone': 'us-east-1a',
        'enableExecuteCommand': True,
        'tags': [{'key': 'app', 'value': 'web'}],
        'containers': containers if containers is not None else [
            {'name': 'web', 'runtimeId': f'{task_id}-1', 'lastStatus': 'RUNNING', 'image': 'nginx',
             'managedAgents': [{'name': 'ExecuteCommandAgent', 'lastStatus': 'RUNNING'}]},
        ],
    }
    task.update(extra)
    return task


def container(name, agent='RUNNING', status='RUNNING'):
    agents = [{'name': 'ExecuteCommandAgent', 'lastStatus': agent}] if agent else []
    return {'name': name, 'runtimeId': f'rt-{name}', 'lastStatus': status, 'managedAgents': agents}


# ------------------------------------------------------------------------------------------ records

def test_task_record_extracts_fields():
    record = aws_ecs.task_record(described(), 'us-east-1')
    assert record['cluster_name'] == 'demo' and record['task_id'] == '1f0e'
    assert (record['service'], record['family'], record['revision']) == ('web', 'web', 7)
    assert record['tags'] == {'app': 'web'}
    assert record['containers'] == [{'name': 'web', 'runtime_id': '1f0e-1', 'image': 'nginx', 'last_status': 'RUNNING',
                                     'agent_status': 'RUNNING'}]


def test_task_record_without_service_or_tags():
    record = aws_ecs.task_record(described(group='family:batch', tags=[], enableExecuteCommand=False,
                                           containers=[{'name': 'w', 'lastStatus': 'RUNNING'}]), 'us-east-1')
    assert record['service'] is None and record['tags'] == {} and record['exec_enabled'] is False
    assert record['containers'][0]['agent_status'] is None


@pytest.mark.parametrize(('tags', 'wanted', 'expected'), [
    ({'app': 'web'}, {}, True),
    ({'app': 'web'}, {'app': 'web'}, True),
    ({'app': 'web'}, {'app': 'api'}, False),
    ({'app': 'web'}, {'app': ['api', 'web']}, True),
    ({'app': 'web'}, {'app': None}, True),
    ({}, {'app': None}, False),
    ({'app': 'web', 'env': 'x'}, {'app': 'web', 'env': 'y'}, False),
])
def test_tags_match(tags, wanted, expected):
    assert aws_ecs.tags_match(tags, wanted) is expected


def names(containers):
    return [c['name'] for c in containers]


def test_pick_containers_by_mode_and_exec_readiness():
    task = aws_ecs.task_record(described(containers=[container('init', agent='STOPPED'), container('app'),
                                                     container('side')]), 'us-east-1')
    assert names(aws_ecs.pick_containers(task, 'container', True)) == ['app', 'side']
    assert names(aws_ecs.pick_containers(task, 'container', False)) == ['init', 'app', 'side']
    assert names(aws_ecs.pick_containers(task, 'task', True)) == ['app']      # first reachable one
    assert names(aws_ecs.pick_containers(task, 'task', False)) == ['app']
    stopped = dict(task, last_status='STOPPED')
    assert aws_ecs.pick_containers(stopped, 'container', True) == []
    assert names(aws_ecs.pick_containers(stopped, 'task', False)) == ['init']
    disabled = dict(task, exec_enabled=False)
    assert aws_ecs.pick_containers(disabled, 'task', True) == []


# ------------------------------------------------------------------------------------------ host names

FIELDS = {'cluster_name': 'demo', 'task_id': '1f0e', 'container_name': 'web', 'service': None, 'family': 'web'}


@pytest.mark.parametrize(('pattern', 'expected'), [
    ('task_id', '1f0e'),
    ('{cluster_name}_{task_id}_{container_name}', 'demo_1f0e_web'),
    ('tag:Name', 'www-1'),
    ('{tag:Name}.{cluster_name}', 'www-1.demo'),
    ('tag:missing', None),
    ('{service}-{task_id}', None),          # no service: the pattern is skipped
    ('tag:evil', None),                     # a value with braces never becomes a host name
])
def test_render_hostname(pattern, expected):
    tags = {'Name': 'www-1', 'evil': '{{ x }}'}
    assert inv.render_hostname(pattern, FIELDS, tags) == expected


def test_render_hostname_unknown_field():
    with pytest.raises(AnsibleError, match="Unknown field 'nope'"):
        inv.render_hostname('{nope}', FIELDS, {})


def test_choose_hostname_falls_through_taken_names():
    default = aws_ecs.DEFAULT_CONTAINER_HOSTNAME
    assert inv.choose_hostname([], default, FIELDS, {}, set()) == 'demo_1f0e_web'
    assert inv.choose_hostname(['tag:Name', 'task_id'], default, FIELDS, {}, set()) == '1f0e'
    assert inv.choose_hostname(['task_id'], default, FIELDS, {}, {'1f0e'}) == 'demo_1f0e_web'


def test_safe_group_name():
    assert inv.safe_group_name('cluster', 'my-cluster.prod') == 'cluster_my_cluster_prod'
    assert inv.safe_group_name('launch_type', 'fargate') == 'launch_type_fargate'


# ------------------------------------------------------------------------------------------ unsafe

class Marked(str):
    """Stands in for wrap_var's result so the test sees what was marked, on any ansible-core."""


def test_make_unsafe_marks_every_string(monkeypatch):
    monkeypatch.setattr(inv, 'wrap_var', Marked)
    value = inv.make_unsafe({'a': ['x', {'b': 'y'}], 'n': 3, 'f': True, 'none': None})
    assert isinstance(value['a'][0], Marked) and isinstance(value['a'][1]['b'], Marked)
    assert all(isinstance(k, Marked) for k in value)
    assert value['n'] == 3 and value['f'] is True and value['none'] is None


def make_plugin(monkeypatch, **options):
    plugin = aws_ecs.InventoryModule()
    BaseInventoryPlugin.parse(plugin, InventoryData(), DataLoader(), 'test.aws_ecs.yml')
    defaults = {'container_mode': 'container', 'exec_enabled_only': True, 'tags': {}, 'hostnames': [], 'strict': False,
                'compose': {}, 'groups': {}, 'keyed_groups': [], 'leading_separator': True, 'use_extra_vars': False}
    defaults.update(options)
    monkeypatch.setattr(plugin, 'get_option', lambda name, hostvars=None: defaults[name])
    return plugin


def test_populate_marks_api_values_and_wires_the_connection(monkeypatch):
    monkeypatch.setattr(inv, 'wrap_var', Marked)
    plugin = make_plugin(monkeypatch)
    plugin._populate([aws_ecs.task_record(described(containers=[container('app'), container('side', agent='STOPPED')]),
                                          'us-east-1')], AwsAuth())
    host = plugin.inventory.get_host('demo_1f0e_app')
    assert host is not None and plugin.inventory.get_host('demo_1f0e_side') is None
    hostvars = host.get_vars()
    assert hostvars['ansible_connection'] == 'cloudexec.core.aws_ecs'
    for name in ('ansible_aws_ecs_cluster', 'ansible_aws_ecs_task', 'ansible_aws_ecs_container', 'ansible_aws_region'):
        assert isinstance(hostvars[name], Marked), name
    assert hostvars['ansible_aws_ecs_container'] == 'app'
    assert all(isinstance(v, Marked) for v in hostvars['aws_ecs']['tags'].values())
    assert isinstance(hostvars['aws_ecs']['task_arn'], Marked)
    groups = {g.name for g in host.get_groups()}
    assert {'aws_ecs', 'cluster_demo', 'service_web', 'launch_type_fargate'} <= groups


@pytest.mark.parametrize('auth, expected', [
    (AwsAuth(profile='ops', endpoint_url='https://vpce-1.ecs.eu-west-1.vpce.amazonaws.com'),
     {'ansible_aws_profile': 'ops', 'ansible_aws_endpoint_url': 'https://vpce-1.ecs.eu-west-1.vpce.amazonaws.com'}),
    (AwsAuth(access_key='AKIAINVENTORYONLY', secret_key='inventory-secret', session_token='inventory-token'), {}),
])
def test_populate_passes_endpoint_and_profile_never_keys(monkeypatch, auth, expected):
    plugin = make_plugin(monkeypatch)
    plugin._populate([aws_ecs.task_record(described(containers=[container('app')]), 'us-east-1')], auth)
    hostvars = plugin.inventory.get_host('demo_1f0e_app').get_vars()
    assert {k: v for k, v in hostvars.items() if k in ('ansible_aws_profile', 'ansible_aws_endpoint_url')} == expected
    assert not [k for k in hostvars if 'key' in k or 'token' in k or 'secret' in k]
    assert 'inventory-secret' not in repr(hostvars) and 'AKIAINVENTORYONLY' not in repr(hostvars)


def test_verify_file(tmp_path):
    plugin = aws_ecs.InventoryModule()
    for name, expected in [('x.aws_ecs.yml', True), ('aws_ecs.yaml', True), ('x.yml', False), ('x.aws_ec2.yml', False)]:
        path = tmp_path / name
        path.write_text('plugin: cloudexec.core.aws_ecs\n')
        assert plugin.verify_file(str(path)) is expected, name
