# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.cloudexec.core.plugins.inventory import ali_eci


def described(**extra):
    """A DescribeContainerGroups group as the ECI SDK's to_map() gives it."""
    group = {
        'ContainerGroupId': 'eci-1', 'ContainerGroupName': 'web-1', 'RegionId': 'cn-hangzhou', 'ZoneId': 'cn-hangzhou-h',
        'Status': 'Running', 'VpcId': 'vpc-1', 'VSwitchId': '', 'Cpu': 1.0, 'Memory': 2.0,
        'Tags': [{'Key': 'app', 'Value': 'web'}, {'Key': 'empty', 'Value': ''}],
        'Containers': [
            {'Name': 'sidecar', 'Image': 'busybox', 'Ready': False, 'RestartCount': 3, 'CurrentState': {'State': 'Waiting'}},
            {'Name': 'web', 'Image': 'nginx', 'Ready': True, 'RestartCount': 0, 'CurrentState': {'State': 'Running'}},
        ],
    }
    group.update(extra)
    return group


def test_group_record_extracts_fields():
    record = ali_eci.group_record(described(), 'cn-hangzhou')
    assert (record['container_group_id'], record['zone_id'], record['status']) == ('eci-1', 'cn-hangzhou-h', 'Running')
    assert record['vpc_id'] == 'vpc-1' and record['vswitch_id'] is None
    assert record['tags'] == {'app': 'web', 'empty': ''}
    assert record['containers'][1] == {'name': 'web', 'image': 'nginx', 'state': 'Running', 'ready': True, 'restart_count': 0}


def test_group_record_falls_back_to_the_queried_region():
    assert ali_eci.group_record(described(RegionId=None), 'cn-shanghai')['region_id'] == 'cn-shanghai'


def test_group_selected_filters():
    record = ali_eci.group_record(described(), 'cn-hangzhou')
    assert ali_eci.group_selected(record, [], [], [], {})
    assert ali_eci.group_selected(record, ['Running'], ['cn-hangzhou-h'], ['web-*'], {'app': ['web', 'api']})
    assert not ali_eci.group_selected(record, ['Pending'], [], [], {})
    assert not ali_eci.group_selected(record, [], ['cn-hangzhou-i'], [], {})
    assert not ali_eci.group_selected(record, [], [], ['WEB-*'], {})          # patterns are case-sensitive
    assert ali_eci.group_selected(record, [], [], [], {'empty': None})
    assert not ali_eci.group_selected(record, [], [], [], {'missing': None})


def test_pick_containers_and_host_fields():
    record = ali_eci.group_record(described(), 'cn-hangzhou')
    assert [c['name'] for c in ali_eci.pick_containers(record, 'container')] == ['sidecar', 'web']
    assert [c['name'] for c in ali_eci.pick_containers(record, 'group')] == ['web']    # the first Running one
    fields = ali_eci.host_fields(record, record['containers'][0])
    assert fields['container_name'] == 'sidecar' and fields['containers'] == ['sidecar', 'web']
    assert fields['ready'] is False and fields['restart_count'] == 3 and fields['container_state'] == 'Waiting'
    assert 'containers' in fields and isinstance(fields['containers'][0], str)
    fields['tags']['app'] = 'changed'
    assert record['tags']['app'] == 'web'        # a copy per host
