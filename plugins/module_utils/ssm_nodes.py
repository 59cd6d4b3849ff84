# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Systems Manager managed nodes as plain data: what DescribeInstanceInformation, EC2 DescribeInstances and
ListTagsForResource say about them.

Used by the aws_ssm inventory (every node of a region) and the aws_ssm_exec_check module (one node). The records
are plain JSON (dates as ISO strings) so an inventory cache can hold them.

API facts (API reference pages, botocore's ssm 2014-11-06 and ec2 2016-11-15 models):
- DescribeInstanceInformation ``Filters``: keys InstanceIds, AgentVersion, PingStatus, PlatformTypes, ActivationIds,
  IamRole, ResourceType, AssociationStatus, SourceIds, SourceTypes, tag-key and tag:<key>; "Tag filters can't be
  combined with other filter types"; 1 to 100 values a key. It lists no stopped or terminated instance.
- It sends no Name for EC2 instances: "To retrieve the Name tag of an EC2 instance, use the Amazon EC2
  DescribeInstances operation". An instance's tags are EC2's; ListTagsForResource with ResourceType ManagedInstance is
  "only for on-premises managed nodes" (mi- ids).
"""

from __future__ import annotations

import datetime
import re
import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils import aws
from ansible_collections.cloudexec.core.plugins.module_utils.errors import ValidationError

# Node ids: EC2 "i-" and 8 or 17 hex digits; hybrid activations' servers "mi-" and 17 (SSM's InstanceId pattern).
NODE_ID = re.compile(r'^(i-[0-9a-f]{8}([0-9a-f]{9})?|mi-[0-9a-f]{17})$')
FILTER_KEYS = ('InstanceIds', 'AgentVersion', 'PingStatus', 'PlatformTypes', 'ActivationIds', 'IamRole', 'ResourceType',
               'AssociationStatus', 'SourceIds', 'SourceTypes', 'tag-key')
MAX_FILTER_VALUES = 100
# DescribeInstanceInformation pages: at most 50 nodes a call.
PAGE_SIZE = 50
# EC2 DescribeInstances: ids go as an instance-id filter (a missing id is then no error), at most 200 values a filter.
EC2_BATCH = 200
ONLINE = 'Online'


def is_ec2(node_id: str) -> bool:
    return node_id.startswith('i-')


def api_filters(filters: t.Mapping[str, t.Any] | None, parameter: str = 'filters') -> list[dict[str, t.Any]]:
    """DescribeInstanceInformation ``Filters`` from a dictionary {key: value or list of values}, checked first."""
    result: list[dict[str, t.Any]] = []
    for key, raw in (filters or {}).items():
        key = str(key)
        if key not in FILTER_KEYS and not (key.startswith('tag:') and len(key) > 4):
            raise ValidationError(parameter, f'{key!r} is not a filter key of DescribeInstanceInformation; use one of '
                                             f'{", ".join(FILTER_KEYS)} or tag:KEY')
        values = raw if isinstance(raw, (list, tuple)) else [raw]
        values = [str(v) for v in values if v is not None and str(v) != '']
        if not values or len(values) > MAX_FILTER_VALUES:
            raise ValidationError(parameter, f'{key} needs 1 to {MAX_FILTER_VALUES} values (it has {len(values)})')
        result.append({'Key': key, 'Values': values})
    tags = [f['Key'] for f in result if f['Key'] == 'tag-key' or f['Key'].startswith('tag:')]
    if tags and len(tags) != len(result):
        raise ValidationError(parameter, 'tag filters (tag:KEY, tag-key) cannot be combined with other filter keys: '
                                         'DescribeInstanceInformation refuses the mix; use keyed_groups or groups for the rest')
    return result


def _iso(value: t.Any) -> str | None:
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).isoformat()
    return None if value is None else str(value)


def node_record(info: t.Mapping[str, t.Any], region: str) -> dict[str, t.Any]:
    """The parts of an InstanceInformation entry the collection uses, as plain JSON data."""
    node_id = info.get('InstanceId') or ''
    return {
        'instance_id': node_id,
        'region': region,
        'resource_type': info.get('ResourceType'),
        'ping_status': info.get('PingStatus'),
        'last_ping': _iso(info.get('LastPingDateTime')),
        'agent_version': info.get('AgentVersion'),
        'is_latest_version': info.get('IsLatestVersion'),
        'platform_type': info.get('PlatformType'),
        'platform_name': info.get('PlatformName'),
        'platform_version': info.get('PlatformVersion'),
        'ip_address': info.get('IPAddress'),
        'computer_name': info.get('ComputerName'),
        # Hybrid nodes: the activation's name; EC2 instances: their Name tag, filled in from EC2 (add_ec2_details).
        'name': info.get('Name'),
        'activation_id': info.get('ActivationId'),
        'iam_role': info.get('IamRole'),
        'registration_date': _iso(info.get('RegistrationDate')),
        'source_type': info.get('SourceType'),
        'tags': {},
    }


def describe_nodes(ssm: t.Any, filters: list[dict[str, t.Any]], region: str) -> list[dict[str, t.Any]]:
    """Every node DescribeInstanceInformation lists with these Filters, through botocore's paginator."""
    kwargs: dict[str, t.Any] = {'PaginationConfig': {'PageSize': PAGE_SIZE}}
    if filters:
        kwargs['Filters'] = filters
    return [node_record(info, region) for info in aws.paginate(ssm, 'describe_instance_information', 'InstanceInformationList', **kwargs)]


def ec2_instances(ec2: t.Any, instance_ids: t.Sequence[str]) -> dict[str, dict[str, t.Any]]:
    """EC2 DescribeInstances for these ids, as {instance id: instance}; ids EC2 does not know are left out."""
    found: dict[str, dict[str, t.Any]] = {}
    ids = list(dict.fromkeys(instance_ids))
    for start in range(0, len(ids), EC2_BATCH):
        batch = ids[start:start + EC2_BATCH]
        for reservation in aws.paginate(ec2, 'describe_instances', 'Reservations',
                                        Filters=[{'Name': 'instance-id', 'Values': batch}]):
            for instance in reservation.get('Instances') or []:
                found[instance.get('InstanceId')] = instance
    return found


def add_ec2_details(record: dict[str, t.Any], instance: t.Mapping[str, t.Any]) -> None:
    """Name, tags and placement of an EC2 node, from its DescribeInstances entry."""
    tags = {tag.get('Key'): tag.get('Value') for tag in instance.get('Tags') or []}
    record['tags'] = tags
    record['name'] = tags.get('Name') or None
    record.update({
        'instance_state': (instance.get('State') or {}).get('Name'),
        'instance_type': instance.get('InstanceType'),
        'availability_zone': (instance.get('Placement') or {}).get('AvailabilityZone'),
        'vpc_id': instance.get('VpcId'),
        'subnet_id': instance.get('SubnetId'),
        'private_dns_name': instance.get('PrivateDnsName') or None,
        'public_ip_address': instance.get('PublicIpAddress'),
    })


def managed_instance_tags(ssm: t.Any, node_id: str) -> dict[str, str]:
    """The SSM tags of a hybrid (mi-) node."""
    answer = aws.call(ssm, 'list_tags_for_resource', ResourceType='ManagedInstance', ResourceId=node_id)
    return {tag.get('Key'): tag.get('Value') for tag in answer.get('TagList') or []}
