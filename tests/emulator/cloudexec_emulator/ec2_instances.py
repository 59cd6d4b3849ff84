# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 DescribeInstances (query protocol, XML; served through :mod:`aws_query`): the world's EC2 managed nodes.

Every ``i-`` node of ``aws.managed_nodes`` is an instance, in a reservation of its own, with its tags (the Name tag
among them), state (code and name), private IP and DNS name, type, zone, VPC and subnet; ``mi-`` nodes are not EC2's.
From the EC2 API reference (DescribeInstances; botocore ec2 2016-11-15 model for the shapes):

- ``InstanceId.N``: each must be well formed (``i-`` and 8 or 17 hex digits) else ``InvalidInstanceID.Malformed``
  ('Invalid id: "<id>"'), and exist, else ``InvalidInstanceID.NotFound`` ("The instance ID '<id>' does not exist";
  several: "The instance IDs '<a>, <b>' do not exist"): "If you specify an instance ID that is not valid, an error is
  returned."
- ``Filter.N.Name`` / ``Filter.N.Value.M``: ``instance-id``, ``instance-state-name``, ``instance-state-code``,
  ``instance-type``, ``private-ip-address``, ``private-dns-name``, ``availability-zone``, ``vpc-id``, ``subnet-id``,
  ``image-id``, ``tag:<key>``, ``tag-key``, ``tag-value``; values OR, filters AND, ``*`` and ``?`` wildcards as EC2
  allows. Any other name: ``InvalidParameterValue`` ("The filter '<name>' is invalid"), the answer EC2 gives to names
  it does not know (the many real filters this emulator does not model are refused the same way: stricter).
- ``MaxResults`` 5..1000 (``InvalidParameterValue`` outside), not with ``InstanceId`` ("You cannot specify this
  parameter and the instance IDs parameter in the same request": ``InvalidParameterCombination``); ``NextToken``
  (``InvalidPaginationToken`` when it is not one of ours). Without MaxResults every match comes in one page.
- ``DryRun``: ``DryRunOperation`` (412) for a caller allowed the action, ``UnauthorizedOperation`` otherwise.
"""
from __future__ import annotations

import datetime
import fnmatch
import re
from typing import Any, Callable

from . import paging
from .context import EmulatorState
from .errors import ApiError
from .world import EC2_STATE_CODES, ManagedNode

# EC2 ids are the prefix and 8 or 17 hexadecimal digits.
_INSTANCE_ID = re.compile(r'^i-([0-9a-f]{8}|[0-9a-f]{17})$')
MAX_RESULTS_RANGE = (5, 1000)


def _query_list(params: dict[str, str], prefix: str) -> list[str]:
    """``Prefix.1``, ``Prefix.2``... in numeric order."""
    found = [(key, value) for key, value in params.items() if re.fullmatch(re.escape(prefix) + r'\.\d+', key)]
    return [value for _key, value in sorted(found, key=lambda kv: int(kv[0].rsplit('.', 1)[1]))]


def _filters(params: dict[str, str]) -> list[tuple[str, list[str]]]:
    numbers = sorted({int(m.group(1)) for key in params if (m := re.fullmatch(r'Filter\.(\d+)\.Name', key))})
    return [(params[f'Filter.{n}.Name'], _query_list(params, f'Filter.{n}.Value')) for n in numbers]


def _private_dns(node: ManagedNode) -> str:
    return node.computer_name if node.computer_name.startswith('ip-') else ''


def _field(name: str) -> Callable[[ManagedNode], list[str]] | None:
    """What a filter compares: the node's values for it (a node matches when any of them matches any filter value)."""
    fields: dict[str, Callable[[ManagedNode], list[str]]] = {
        'instance-id': lambda n: [n.node_id],
        'instance-state-name': lambda n: [n.state],
        'instance-state-code': lambda n: [str(EC2_STATE_CODES[n.state])],
        'instance-type': lambda n: [n.instance_type],
        'private-ip-address': lambda n: [n.ip_address],
        'private-dns-name': lambda n: [_private_dns(n)],
        'availability-zone': lambda n: [n.availability_zone],
        'vpc-id': lambda n: [n.vpc_id],
        'subnet-id': lambda n: [n.subnet_id],
        'image-id': lambda n: [n.image_id],
        'tag-key': lambda n: list(n.tags),
        'tag-value': lambda n: list(n.tags.values()),
    }
    if name.startswith('tag:') and len(name) > 4:
        key = name[4:]
        return lambda n: [n.tags[key]] if key in n.tags else []
    return fields.get(name)


def _instance(node: ManagedNode) -> dict[str, Any]:
    item: dict[str, Any] = {
        'instanceId': node.node_id,
        'imageId': node.image_id,
        'instanceState': {'code': EC2_STATE_CODES[node.state], 'name': node.state},
        'privateDnsName': _private_dns(node),
        'dnsName': '',
        'instanceType': node.instance_type,
        'launchTime': node.launch_time.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.000Z'),
        'placement': {'availabilityZone': node.availability_zone, 'tenancy': 'default'},
        'subnetId': node.subnet_id,
        'vpcId': node.vpc_id,
        'privateIpAddress': node.ip_address,
        'architecture': 'x86_64',
        'rootDeviceType': 'ebs',
        'platformDetails': 'Windows' if node.platform_type == 'Windows' else 'Linux/UNIX',
    }
    if node.platform_type == 'Windows':
        item['platform'] = 'windows'
    if node.tags:
        item['tagSet'] = [{'key': key, 'value': value} for key, value in node.tags.items()]
    return item


def describe_instances(state: EmulatorState, params: dict[str, str], region: str) -> dict[str, Any]:
    """The DescribeInstances answer (``reservationSet``, ``nextToken``) for the query-protocol layer to render."""
    aws = state.world.aws
    if params.get('DryRun', '').lower() == 'true':
        # "Checks whether you have the required permissions ... If you have the required permissions, the error response
        # is DryRunOperation" (DescribeInstances DryRun); the caller's permission was checked before this.
        raise ApiError('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', 412)
    wanted = _query_list(params, 'InstanceId')
    malformed = [i for i in wanted if not _INSTANCE_ID.match(i)]
    if malformed:
        raise ApiError('InvalidInstanceID.Malformed', f'Invalid id: "{malformed[0]}"', 400)
    limit: int | None = None
    if 'MaxResults' in params:
        if wanted:
            raise ApiError('InvalidParameterCombination', 'The parameter instancesSet cannot be used with the parameter maxResults',
                           400)
        try:
            limit = int(params['MaxResults'])
        except ValueError as exc:
            raise ApiError('InvalidParameterValue', f'Invalid value \'{params["MaxResults"]}\' for maxResults', 400) from exc
        low, high = MAX_RESULTS_RANGE
        if not low <= limit <= high:
            raise ApiError('InvalidParameterValue', f'Value ( {limit} ) for parameter maxResults is invalid. '
                           f'Expecting a value between {low} and {high}.', 400)
    instances = [n for n in aws.managed_nodes if n.is_ec2] if region == aws.region else []
    if wanted:
        known = {n.node_id for n in instances}
        missing = [i for i in wanted if i not in known]
        if len(missing) == 1:
            raise ApiError('InvalidInstanceID.NotFound', f"The instance ID '{missing[0]}' does not exist", 400)
        if missing:
            raise ApiError('InvalidInstanceID.NotFound', f"The instance IDs '{', '.join(missing)}' do not exist", 400)
        instances = [n for n in instances if n.node_id in wanted]
    filters = _filters(params)
    for name, values in filters:
        get = _field(name)
        if get is None:
            raise ApiError('InvalidParameterValue', f"The filter '{name}' is invalid", 400)
        instances = [n for n in instances if any(fnmatch.fnmatchcase(have, value) for have in get(n) for value in values)]
    token = params.get('NextToken') or None
    query = {'ids': wanted, 'filters': filters, 'region': region}
    try:
        chunk, next_token = paging.page(instances, token, limit or max(len(instances), 1), query)
    except paging.BadToken as exc:
        raise ApiError('InvalidPaginationToken', f'Invalid pagination token: {token}', 400) from exc
    reservations = [{'reservationId': 'r-' + node.node_id[2:], 'ownerId': aws.account_id, 'groupSet': [],
                     'instancesSet': [_instance(node)]} for node in chunk]
    answer: dict[str, Any] = {'reservationSet': reservations}
    if next_token:
        answer['nextToken'] = next_token
    return answer
