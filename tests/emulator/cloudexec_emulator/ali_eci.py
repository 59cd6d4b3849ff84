# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alibaba Cloud Elastic Container Instance, API version 2018-08-08 (RPC style).

Response shapes follow the ``alibabacloud_eci20180808`` models: unlike ECS, ECI lists are plain
JSON arrays (``ContainerGroups``, ``Containers``, ``Tags``) without wrapper objects.
"""
from __future__ import annotations

from typing import Any

from .aliparams import int_param, iso_time, json_list, tag_filters, tags_match, token_page
from .context import ActionTable, CallContext
from .world import ContainerGroup

VERSION = '2018-08-08'
SERVICE = 'ali-eci'
# DescribeContainerGroups returns at most 20 groups per call.
MAX_LIMIT = 20

ACTIONS = ActionTable()


def group_view(group: ContainerGroup) -> dict[str, Any]:
    started = iso_time(group.created_at)
    containers = []
    for container in group.containers:
        state: dict[str, Any] = {'State': container.state, 'DetailStatus': '', 'StartTime': started}
        if container.state == 'Terminated':
            state.update({'ExitCode': 0 if group.status == 'Succeeded' else 1, 'FinishTime': started,
                          'Reason': 'Completed' if group.status == 'Succeeded' else 'Error'})
        containers.append({
            'Name': container.name, 'Image': container.image, 'ImagePullPolicy': 'IfNotPresent',
            'Cpu': container.cpu, 'Memory': container.memory, 'Gpu': 0, 'Ready': container.ready,
            'RestartCount': container.restart_count, 'Commands': container.commands, 'Args': container.args,
            'CurrentState': state, 'PreviousState': {}, 'EnvironmentVars': [], 'Ports': [], 'VolumeMounts': [],
            'WorkingDir': '', 'Stdin': False, 'StdinOnce': False, 'Tty': False,
        })
    view: dict[str, Any] = {
        'ContainerGroupId': group.group_id, 'ContainerGroupName': group.name, 'RegionId': group.region, 'ZoneId': group.zone,
        'Status': group.status, 'Cpu': group.cpu, 'Memory': group.memory, 'InstanceType': group.instance_type,
        'CreationTime': started, 'ExpiredTime': '', 'IntranetIp': group.intranet_ip, 'InternetIp': '',
        'VpcId': group.vpc_id, 'VSwitchId': group.vswitch_id, 'SecurityGroupId': group.security_group_id,
        'EniInstanceId': 'eni-' + group.group_id[4:], 'RestartPolicy': group.restart_policy, 'ComputeCategory': 'economy',
        'Containers': containers, 'InitContainers': [], 'Volumes': [], 'Events': [], 'HostAliases': [],
        'Tags': [{'Key': k, 'Value': v} for k, v in group.tags.items()],
    }
    if group.status == 'Succeeded':
        view['SucceededTime'] = started
    if group.status == 'Failed':
        view['FailedTime'] = started
    return view


@ACTIONS.register('DescribeContainerGroups')
async def describe_container_groups(ctx: CallContext) -> dict[str, Any]:
    region = str(ctx.require('RegionId'))
    ids = json_list(ctx.params, 'ContainerGroupIds', MAX_LIMIT, 'InvalidParameter.ContainerGroupIds')
    limit = int_param(ctx.params, 'Limit', MAX_LIMIT, 1, MAX_LIMIT)
    tags = tag_filters(ctx.params)
    filters = {'ContainerGroupName': ('name', ctx.param('ContainerGroupName')), 'Status': ('status', ctx.param('Status')),
               'ZoneId': ('zone', ctx.param('ZoneId')), 'VSwitchId': ('vswitch_id', ctx.param('VSwitchId')),
               'SecurityGroupId': ('security_group_id', ctx.param('SecurityGroupId'))}
    found = [g for g in ctx.world.alicloud.container_groups
             if g.region == region
             and (ids is None or g.group_id in ids)
             and all(value is None or getattr(g, attr) == value for attr, value in filters.values())
             and tags_match(g.tags, tags)]
    query = ['DescribeContainerGroups', region, ids, tags, {k: v for k, (_key, v) in filters.items()}]
    chunk, next_token = token_page(found, ctx.param('NextToken'), limit, query)
    return {'TotalCount': len(found), 'NextToken': next_token, 'ContainerGroups': [group_view(g) for g in chunk]}
