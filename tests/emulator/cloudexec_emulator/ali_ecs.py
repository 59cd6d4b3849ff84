# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alibaba Cloud ECS, API version 2014-05-26 (RPC style): instances and Cloud Assistant.

Response shapes follow the ``alibabacloud_ecs20140526`` models (``DescribeInstancesResponseBody``...),
including the wrapper objects (``Instances.Instance``, ``Tags.Tag``) the RPC JSON uses for lists.
"""
from __future__ import annotations

import datetime
from typing import Any

from .aliparams import (iso_time, json_list, name_matches, number_page, int_param, repeat_list, tag_filters, tags_match,
                        token_page)
from .context import ActionTable, CallContext
from .errors import ApiError
from .world import EcsInstance

VERSION = '2014-05-26'
SERVICE = 'ali-ecs'

ACTIONS = ActionTable()


def _region(ctx: CallContext) -> str:
    return str(ctx.require('RegionId'))


def _uses_token_paging(ctx: CallContext) -> bool:
    return ctx.param('NextToken') is not None or ctx.param('MaxResults') is not None


def instance_view(instance: EcsInstance) -> dict[str, Any]:
    running = instance.status == 'Running'
    return {
        'InstanceId': instance.instance_id,
        'InstanceName': instance.name,
        'HostName': instance.hostname,
        'Description': '',
        'RegionId': instance.region,
        'ZoneId': instance.zone,
        'Status': instance.status,
        'InstanceType': instance.instance_type,
        'InstanceTypeFamily': instance.instance_type.rsplit('.', 1)[0],
        'Cpu': instance.cpu,
        'Memory': instance.memory,
        'OSType': instance.os_type,
        'OSName': instance.os_name,
        'OSNameEn': instance.os_name,
        'ImageId': instance.image_id,
        'InstanceNetworkType': 'vpc',
        'InstanceChargeType': 'PostPaid',
        'InternetChargeType': 'PayByTraffic',
        'InternetMaxBandwidthIn': 0,
        'InternetMaxBandwidthOut': 0,
        'IoOptimized': True,
        'DeletionProtection': False,
        'CreationTime': iso_time(instance.created_at, seconds=False),
        'StartTime': iso_time(instance.created_at, seconds=False) if running else '',
        'ExpiredTime': '2099-12-31T15:59Z',
        'StoppedMode': 'Not-applicable' if running else 'KeepCharging',
        'SerialNumber': instance.instance_id[2:],
        'VpcAttributes': {
            'VpcId': instance.vpc_id,
            'VSwitchId': instance.vswitch_id,
            'PrivateIpAddress': {'IpAddress': [instance.private_ip]},
            'NatIpAddress': '',
        },
        'NetworkInterfaces': {'NetworkInterface': [{
            'NetworkInterfaceId': 'eni-' + instance.instance_id[2:], 'Type': 'Primary', 'PrimaryIpAddress': instance.private_ip,
            'MacAddress': '00:16:3e:00:00:01',
            'PrivateIpSets': {'PrivateIpSet': [{'Primary': True, 'PrivateIpAddress': instance.private_ip}]},
        }]},
        'PublicIpAddress': {'IpAddress': []},
        'InnerIpAddress': {'IpAddress': []},
        'EipAddress': {'AllocationId': '', 'IpAddress': '', 'InternetChargeType': ''},
        'SecurityGroupIds': {'SecurityGroupId': [instance.security_group_id]},
        'OperationLocks': {'LockReason': []},
        'Tags': {'Tag': [{'TagKey': k, 'TagValue': v} for k, v in instance.tags.items()]},
        'MetadataOptions': {'HttpEndpoint': 'enabled', 'HttpTokens': 'optional'},
    }


@ACTIONS.register('DescribeInstances')
async def describe_instances(ctx: CallContext) -> dict[str, Any]:
    region = _region(ctx)
    ids = json_list(ctx.params, 'InstanceIds', 100, 'InvalidInstanceIds.Malformed')
    tags = tag_filters(ctx.params)
    filters = {name: ctx.param(name) for name in ('ZoneId', 'VpcId', 'VSwitchId', 'Status', 'InstanceType', 'SecurityGroupId')}
    attrs = {'ZoneId': 'zone', 'VpcId': 'vpc_id', 'VSwitchId': 'vswitch_id', 'Status': 'status', 'InstanceType': 'instance_type',
             'SecurityGroupId': 'security_group_id'}
    found = [i for i in ctx.world.alicloud.instances
             if i.region == region
             and (ids is None or i.instance_id in ids)
             and all(value is None or getattr(i, attrs[name]) == value for name, value in filters.items())
             and name_matches(i.name, ctx.param('InstanceName'))
             and tags_match(i.tags, tags)]
    result: dict[str, Any] = {'TotalCount': len(found)}
    if _uses_token_paging(ctx):
        size = int_param(ctx.params, 'MaxResults', 10, 1, 100)
        query = ['DescribeInstances', region, ids, tags, filters, ctx.param('InstanceName')]
        chunk, result['NextToken'] = token_page(found, ctx.param('NextToken'), size, query)
    else:
        number = int_param(ctx.params, 'PageNumber', 1, 1, 1_000_000)
        size = int_param(ctx.params, 'PageSize', 10, 1, 100)
        chunk = number_page(found, number, size)
        result.update({'PageNumber': number, 'PageSize': size})
    result['Instances'] = {'Instance': [instance_view(i) for i in chunk]}
    return result


def assistant_view(instance: EcsInstance, now: datetime.datetime) -> dict[str, Any]:
    agent = instance.cloud_assistant
    # The service reports "true" only for an agent that sent a heartbeat in the last couple of minutes,
    # which a stopped instance cannot do.
    online = agent.online and instance.status == 'Running'
    if online:
        heartbeat = now - datetime.timedelta(seconds=3)
    else:
        heartbeat = now - datetime.timedelta(seconds=max(agent.last_heartbeat_age, 3600))
    return {
        'InstanceId': instance.instance_id,
        'CloudAssistantStatus': 'true' if online else 'false',
        'CloudAssistantVersion': agent.version,
        'LastHeartbeatTime': iso_time(heartbeat),
        'OSType': instance.os_type.capitalize(),
        'SupportSessionManager': agent.session_manager,
        'ActiveTaskCount': agent.active_task_count,
        'InvocationCount': agent.invocation_count,
        'LastInvokedTime': '',
    }


@ACTIONS.register('DescribeCloudAssistantStatus')
async def describe_cloud_assistant_status(ctx: CallContext) -> dict[str, Any]:
    region = _region(ctx)
    ids = repeat_list(ctx.params, 'InstanceId')
    if len(ids) > 50:
        raise ApiError('InvalidParameter', 'The specified parameter InstanceId is not valid: at most 50 instances.', 400)
    os_type = ctx.param('OSType')
    if os_type is not None and str(os_type).lower() not in ('linux', 'windows', 'freebsd'):
        raise ApiError('InvalidOSType.ValueNotSupported', 'The specified parameter OSType is not supported.', 400)
    found = [i for i in ctx.world.alicloud.instances
             if i.region == region
             and (not ids or i.instance_id in ids)
             and (os_type is None or i.os_type == str(os_type).lower())]
    if ids:
        # Keep the caller's order, as the service does for an explicit list.
        found.sort(key=lambda i: ids.index(i.instance_id))
    now = datetime.datetime.now(datetime.timezone.utc)
    result: dict[str, Any] = {'TotalCount': len(found)}
    if ids:
        # With InstanceId.N the paging parameters do not take effect (API reference): every listed instance comes back.
        chunk = found
        result.update({'PageNumber': 1, 'PageSize': len(found)})
    elif _uses_token_paging(ctx):
        size = int_param(ctx.params, 'MaxResults', 10, 1, 50)
        chunk, result['NextToken'] = token_page(found, ctx.param('NextToken'), size, ['DescribeCloudAssistantStatus', region, ids, os_type])
    else:
        number = int_param(ctx.params, 'PageNumber', 1, 1, 1_000_000)
        size = int_param(ctx.params, 'PageSize', 10, 1, 50)
        chunk = number_page(found, number, size)
        result.update({'PageNumber': number, 'PageSize': size})
    result['InstanceCloudAssistantStatusSet'] = {'InstanceCloudAssistantStatus': [assistant_view(i, now) for i in chunk]}
    return result


# Cloud Assistant (RunCommand, InvokeCommand, DescribeInvocationResults, SendFile...) registers its actions
# into ACTIONS; imported last because it builds on this module.
from . import ali_assist  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import,cyclic-import
