# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSM managed nodes: DescribeInstanceInformation and ListTagsForResource, from the world's ``aws.managed_nodes``.

Shapes, limits and error codes from the API reference (API_DescribeInstanceInformation, API_ListTagsForResource)
as botocore's model carries them (botocore/data/ssm/2014-11-06/service-2.json):

- **DescribeInstanceInformation**: ``Filters`` (keys ``InstanceIds``, ``AgentVersion``, ``PingStatus``, ``PlatformTypes``,
  ``ResourceType``, ``ActivationIds``, ``IamRole``, ``AssociationStatus``, ``SourceIds``, ``SourceTypes``, ``tag-key``,
  ``tag:<key>``) or the legacy ``InstanceInformationFilterList`` (lower-case ``key``/``valueSet``, the first eight keys),
  never both; values OR within a filter, filters AND; ``MaxResults`` 5..50, default 10; ``NextToken``. "This operation
  does not return information for nodes that are either Stopped or Terminated"; "If you specify a node ID that isn't
  valid or a node that you don't own, you receive an error" (InvalidInstanceId). Errors: InvalidInstanceId,
  InvalidNextToken, InvalidInstanceInformationFilterValue, InvalidFilterKey (and ValidationException for MaxResults).
- **ListTagsForResource** ``{ResourceType, ResourceId}``: ``ManagedInstance`` is "only for on-premises managed nodes"
  (``mi-`` ids; AddTagsToResource's ResourceType text); an EC2 instance's tags come from EC2. ``Document`` answers the
  tags of a session document. Errors: InvalidResourceType, InvalidResourceId.
"""
from __future__ import annotations

import datetime
from typing import Any, Callable

from .aws_ssm import ACTIONS, max_results, next_token_page
from .context import CallContext
from .errors import ApiError
from .world import EC2_ID_PATTERN, HYBRID_ID_PATTERN, SSM_PING_STATUSES, SSM_PLATFORM_TYPES, SSM_RESOURCE_TYPES, ManagedNode

# Filter keys of the two request forms (botocore: InstanceInformationFilterKey; InstanceInformationStringFilter docs).
LEGACY_FILTER_KEYS = ('InstanceIds', 'AgentVersion', 'PingStatus', 'PlatformTypes', 'ActivationIds', 'IamRole', 'ResourceType',
                      'AssociationStatus')
FILTER_KEYS = LEGACY_FILTER_KEYS + ('SourceIds', 'SourceTypes', 'tag-key')
# Values a filter key accepts, where the API names them (InstanceInformationStringFilter Key docs).
_ALLOWED_VALUES = {'PingStatus': SSM_PING_STATUSES, 'PlatformTypes': SSM_PLATFORM_TYPES, 'ResourceType': SSM_RESOURCE_TYPES,
                   'AssociationStatus': ('Success', 'Pending', 'Failed'),
                   'SourceTypes': ('AWS::EC2::Instance', 'AWS::SSM::ManagedInstance', 'AWS::IoT::Thing',
                                   'Microsoft.Compute/virtualMachines', 'compute.googleapis.com/Instance')}
# InstanceInformationFilterValueSet: 1 to 100 values.
MAX_FILTER_VALUES = 100
# ListTagsForResource's ResourceType enum (botocore ResourceTypeForTagging).
TAGGABLE_TYPES = ('Document', 'ManagedInstance', 'MaintenanceWindow', 'Parameter', 'PatchBaseline', 'OpsItem', 'OpsMetadata',
                  'Automation', 'Association', 'CloudConnector')


def valid_node_id(node_id: str) -> bool:
    """The InstanceId pattern of the model: ``i-`` and 8 or 17 word characters, or ``mi-`` and 17."""
    return bool(EC2_ID_PATTERN.match(node_id) or HYBRID_ID_PATTERN.match(node_id)
                or (node_id.startswith('i-') and len(node_id) == 10 and node_id[2:].isalnum()))


def node_for_target(ctx: CallContext, target: str) -> ManagedNode | None:
    """The managed node a session or command target names, if the world has it (in the call's Region)."""
    if ctx.region not in (None, ctx.world.aws.region):
        return None
    return ctx.world.aws.managed_node(target)


def _epoch(when: datetime.datetime) -> float:
    return when.timestamp()


def _source_type(node: ManagedNode) -> str:
    return 'AWS::EC2::Instance' if node.is_ec2 else 'AWS::SSM::ManagedInstance'


def instance_information(ctx: CallContext, node: ManagedNode) -> dict[str, Any]:
    """One InstanceInformation entry. ``Name`` only for hybrid nodes: the API sends EC2 instances' names to EC2
    DescribeInstances ("To retrieve the Name tag of an EC2 instance, use the Amazon EC2 DescribeInstances operation")."""
    now = datetime.datetime.now(datetime.timezone.utc)
    # An Online agent pings every few minutes; one that is not was last heard last_ping_age before the emulator started.
    last_ping = now if node.ping_status == 'Online' else ctx.world.started_at - datetime.timedelta(seconds=node.last_ping_age)
    info: dict[str, Any] = {
        'InstanceId': node.node_id,
        'PingStatus': node.ping_status,
        'LastPingDateTime': _epoch(last_ping),
        'AgentVersion': node.agent_version,
        'IsLatestVersion': node.agent_version == ctx.world.aws.ssm.latest_agent_version,
        'PlatformType': node.platform_type,
        'PlatformName': node.platform_name,
        'PlatformVersion': node.platform_version,
        'ResourceType': node.resource_type,
        'IPAddress': node.ip_address,
        'ComputerName': node.computer_name,
        'SourceId': node.node_id,
        'SourceType': _source_type(node),
    }
    if not node.is_ec2:
        info['ActivationId'] = node.activation_id
        info['RegistrationDate'] = _epoch(node.launch_time)
        if node.name:
            info['Name'] = node.name
    if node.iam_role:
        info['IamRole'] = node.iam_role
    return info


def _values(raw: Any, where: str) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise ApiError('InvalidInstanceInformationFilterValue', f'{where}: at least one value is required.', 400)
    if len(raw) > MAX_FILTER_VALUES:
        raise ApiError('InvalidInstanceInformationFilterValue', f'{where}: at most {MAX_FILTER_VALUES} values are allowed.', 400)
    if not all(isinstance(v, str) and v for v in raw):
        raise ApiError('InvalidInstanceInformationFilterValue', f'{where}: values must be non-empty strings.', 400)
    return raw


def _filters(ctx: CallContext) -> list[tuple[str, list[str]]]:
    """(key, values) pairs from ``Filters`` or the legacy ``InstanceInformationFilterList``, checked."""
    modern, legacy = ctx.params.get('Filters'), ctx.params.get('InstanceInformationFilterList')
    if modern and legacy:
        # "Attempting to use InstanceInformationFilterList and Filters leads to an exception error." Which exception the
        # reference does not say: ValidationException, the generic one.
        raise ApiError('ValidationException', 'InstanceInformationFilterList and Filters cannot be used together.', 400)
    pairs: list[tuple[str, list[str]]] = []
    for item in legacy or []:
        key = item.get('key') if isinstance(item, dict) else None
        if key not in LEGACY_FILTER_KEYS:
            raise ApiError('InvalidFilterKey', f'The filter key {key} is not valid.', 400)
        pairs.append((key, _values(item.get('valueSet'), key)))
    for item in modern or []:
        key = item.get('Key') if isinstance(item, dict) else None
        if not isinstance(key, str) or not (key in FILTER_KEYS or (key.startswith('tag:') and len(key) > 4)):
            raise ApiError('InvalidFilterKey', f'The filter key {key} is not valid.', 400)
        pairs.append((key, _values(item.get('Values'), key)))
    tag_filters = [k for k, _v in pairs if k == 'tag-key' or k.startswith('tag:')]
    if tag_filters and len(tag_filters) != len(pairs):
        # "Tag filters can't be combined with other filter types." (DescribeInstanceInformation Filters)
        raise ApiError('InvalidFilterKey', 'Tag filters cannot be combined with other filter types.', 400)
    for key, values in pairs:
        allowed = _ALLOWED_VALUES.get(key)
        bad = [v for v in values if allowed is not None and v not in allowed]
        if key == 'InstanceIds':
            bad = [v for v in values if not valid_node_id(v)]
            if bad:
                raise ApiError('InvalidInstanceId', f'Instance Id {bad[0]} is not valid.', 400)
        elif bad:
            raise ApiError('InvalidInstanceInformationFilterValue',
                           f'The filter value {bad[0]} is not valid for {key}. Valid values: {", ".join(allowed or ())}.', 400)
    return pairs


def _matcher(key: str, values: list[str]) -> Callable[[ManagedNode], bool]:
    if key.startswith('tag:'):
        name = key[4:]
        return lambda n: name in n.tags and n.tags[name] in values
    fields: dict[str, Callable[[ManagedNode], Any]] = {
        'InstanceIds': lambda n: n.node_id, 'AgentVersion': lambda n: n.agent_version, 'PingStatus': lambda n: n.ping_status,
        'PlatformTypes': lambda n: n.platform_type, 'ResourceType': lambda n: n.resource_type,
        'ActivationIds': lambda n: n.activation_id, 'IamRole': lambda n: n.iam_role, 'SourceIds': lambda n: n.node_id,
        'SourceTypes': _source_type,
        # No associations are emulated: a node has no association status, so this filter matches none.
        'AssociationStatus': lambda n: None,
    }
    if key == 'tag-key':
        return lambda n: any(k in n.tags for k in values)
    get = fields[key]
    return lambda n: get(n) in values


@ACTIONS.register('DescribeInstanceInformation')
async def describe_instance_information(ctx: CallContext) -> dict[str, Any]:
    size = max_results(ctx, 5, 50, 10)
    pairs = _filters(ctx)
    aws = ctx.world.aws
    nodes = [n for n in aws.managed_nodes if n.managed] if ctx.region == aws.region else []
    for key, values in pairs:
        if key == 'InstanceIds':
            # A node id that is not one of ours is an error, not an empty answer; a stopped instance is ours but not listed.
            unknown = [v for v in values if aws.managed_node(v) is None or ctx.region != aws.region]
            if unknown:
                raise ApiError('InvalidInstanceId', f'Instance Id {unknown[0]} is not valid or the instance does not belong to '
                               'this account.', 400)
        match = _matcher(key, values)
        nodes = [n for n in nodes if match(n)]
    chunk, token = next_token_page(ctx, nodes, size, {'filters': pairs, 'region': ctx.region})
    answer: dict[str, Any] = {'InstanceInformationList': [instance_information(ctx, n) for n in chunk]}
    if token:
        answer['NextToken'] = token
    return answer


@ACTIONS.register('ListTagsForResource')
async def list_tags_for_resource(ctx: CallContext) -> dict[str, Any]:
    resource_type, resource_id = ctx.params.get('ResourceType'), ctx.params.get('ResourceId')
    if resource_type is None or resource_id is None:
        raise ApiError('ValidationException', 'ResourceType and ResourceId are required.', 400)
    if resource_type not in TAGGABLE_TYPES:
        raise ApiError('InvalidResourceType', f'{resource_type} is not a valid resource type.', 400)
    tags: dict[str, str] | None = None
    aws = ctx.world.aws
    if ctx.region == aws.region:
        if resource_type == 'ManagedInstance' and isinstance(resource_id, str) and resource_id.startswith('mi-'):
            # "The ManagedInstance type for this API operation is only for on-premises managed nodes" (AddTagsToResource):
            # an i- id is not one, its tags are EC2's.
            node = aws.managed_node(resource_id)
            tags = node.tags if node is not None else None
        elif resource_type == 'Document':
            document = next((d for d in aws.session_documents if d.name == resource_id), None)
            tags = document.tags if document is not None else None
    if tags is None:
        raise ApiError('InvalidResourceId', f'The resource ID {resource_id} isn\u2019t valid. Verify that you entered the correct '
                       'ID and try again.', 400)
    return {'TagList': [{'Key': key, 'Value': value} for key, value in tags.items()]}
