# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Session Manager on SSM managed nodes (EC2 instances and hybrid `mi-` servers): StartSession, TerminateSession,
and what DescribeInstanceInformation says of a node.

Shared by the aws_ssm connection (plugin_utils/aws_ssm_shell.py) and the aws_ssm_exec_check preflight, so both
refuse a bad node id or document name before any call, and both explain a node that cannot be reached with the
same words. The data channel itself is module_utils/ssm/ (the one ECS Exec uses).

Facts and their sources: /work/research/ssm-resume-and-shell.md, Part 3 (AWS's API reference, botocore's model,
amazon-ssm-agent's shell plugin).
"""

from __future__ import annotations

import datetime
import re
import typing as t
from dataclasses import dataclass, field

from ansible_collections.cloudexec.core.plugins.module_utils import aws
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.ssm_nodes import NODE_ID

# Managed node ids: an EC2 instance ("i-" and 8 or 17 hex digits) or a hybrid activation's server ("mi-" and 17).
# StartSession's DocumentName (botocore ssm model: DocumentARN, ^[a-zA-Z0-9_\-.:/]{3,128}$): a name or an ARN.
DOCUMENT_NAME = re.compile(r'^[a-zA-Z0-9_\-.:/]{3,128}$')
# The document StartSession runs when none is named: the account's preferences, a Standard_Stream shell.
SHELL_DOCUMENT = 'SSM-SessionManagerRunShell'
# The user the agent runs a session as when Run As is off (amazon-ssm-agent constants.go DefaultRunAsUserName).
DEFAULT_RUN_AS_USER = 'ssm-user'
# What StartSession answers for a node it cannot reach (botocore: TargetNotConnected; "<target> is not connected.").
NOT_CONNECTED = 'TargetNotConnected'
# The agent pings Systems Manager every few minutes; PingStatus is the service's view of that (API reference,
# InstanceInformation): Online, ConnectionLost, Inactive.
ONLINE = 'Online'
AGENT_REMEDY = ('Check the SSM agent on the node (sudo systemctl status amazon-ssm-agent; on a hybrid node, that its '
                'activation is still registered), that its instance profile or activation role allows '
                'AmazonSSMManagedInstanceCore, and that it reaches the ssm, ssmmessages and ec2messages endpoints (a NAT '
                'gateway or VPC endpoints); run cloudexec.core.aws_ssm_exec_check for each cause')


@dataclass
class NodeSession:
    """What StartSession returned. The token and the stream URL are secrets: never logged, never returned."""

    session_id: str
    target: str
    stream_url: str = field(repr=False)
    token: str = field(repr=False)
    document: str | None = None


def check_node_id(node_id: str | None, parameter: str = 'instance_id') -> str:
    """The node id, refused before any call unless it is an EC2 instance id or a hybrid node id."""
    if not node_id:
        raise ValidationError(parameter, 'no managed node id is set',
                              remedy='Set ansible_aws_ssm_instance_id (or ansible_host) to the i- or mi- id of the node')
    if not NODE_ID.match(node_id):
        raise ValidationError(parameter, f'{node_id!r} is not a managed node id (i- and 8 or 17 hex digits for an EC2 instance, '
                                         'mi- and 17 for a hybrid node)',
                              remedy='Set ansible_aws_ssm_instance_id to the node id; the inventory host name is used only '
                                     'when neither it nor ansible_host is set')
    return node_id


def check_document(name: str | None, parameter: str = 'ssm_document') -> str | None:
    """A session document name or ARN as StartSession's model accepts it (3 to 128 of [a-zA-Z0-9_.:/-]); None stays None."""
    if name in (None, ''):
        return None
    if not DOCUMENT_NAME.match(name):
        raise ValidationError(parameter, f'{name!r} is not a document name or ARN (3 to 128 characters of letters, digits and _ - . : /)')
    return name


def start_session(client: t.Any, node_id: str, document: str | None = None) -> NodeSession:
    """StartSession on a managed node, with the named document (else the account's shell document).

    TargetNotConnected is told for what DescribeInstanceInformation says of the node (not_connected_error); it is not
    tried again: unlike ECS Exec's agent starting up, a managed node the service cannot reach stays so for minutes.
    """
    kwargs: dict[str, t.Any] = {'Target': node_id}
    if document:
        kwargs['DocumentName'] = document
    try:
        answer = aws.call(client, 'start_session', **kwargs)
    except CloudExecError as error:
        if error.code == NOT_CONNECTED:
            raise not_connected_error(client, node_id, error) from None
        if error.code == 'InvalidDocument' and document:
            error.remedy = (f'No session document {document} in this account and region: name an existing Session document '
                            '(Standard_Stream), or unset ssm_document for the account\'s shell')
        raise
    if not answer.get('StreamUrl') or not answer.get('TokenValue'):
        raise CloudExecError('StartSession returned no stream URL or token', code='NoSession', provider='aws', retryable=True,
                             remedy='Retry; if it persists, check the Systems Manager service health')
    return NodeSession(session_id=answer.get('SessionId') or '', target=node_id, stream_url=answer['StreamUrl'],
                       token=answer['TokenValue'], document=document)


def terminate_session(client: t.Any, session_id: str) -> None:
    """TerminateSession: a session whose client went away stays on the agent until the idle timeout otherwise."""
    aws.call(client, 'terminate_session', SessionId=session_id)


def describe_node(client: t.Any, node_id: str) -> dict[str, t.Any] | None:
    """The node's DescribeInstanceInformation entry; None when the service does not list it.

    The service answers InvalidInstanceId for an id it does not know ("a node ID that isn't valid or a node that you
    don't own") and simply leaves out stopped and terminated EC2 instances: both mean "not a managed node here".
    """
    try:
        answer = aws.call(client, 'describe_instance_information', Filters=[{'Key': 'InstanceIds', 'Values': [node_id]}])
    except CloudExecError as error:
        if error.code == 'InvalidInstanceId':
            return None
        raise
    return next((info for info in answer.get('InstanceInformationList') or [] if info.get('InstanceId') == node_id), None)


def _when(value: t.Any) -> str:
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')
    return str(value) if value else 'never'


def node_state_problem(node_id: str, info: dict[str, t.Any] | None, region: str | None) -> str | None:
    """Why Session Manager cannot reach the node, from its DescribeInstanceInformation entry; None when it is Online."""
    where = f' in {region}' if region else ''
    if info is None:
        return (f'{node_id} is not a managed node{where}: DescribeInstanceInformation does not list it (an unknown id, another '
                'account or region, an EC2 instance that is stopped or terminated, or one whose agent never registered)')
    status = info.get('PingStatus') or 'unknown'
    if status == ONLINE:
        return None
    return (f'managed node {node_id} is not connected: DescribeInstanceInformation reports PingStatus {status} '
            f'(last ping {_when(info.get("LastPingDateTime"))}, agent {info.get("AgentVersion") or "unknown"})')


def not_connected_error(client: t.Any, node_id: str, error: CloudExecError) -> CloudExecError:
    """StartSession's TargetNotConnected, explained by the node's PingStatus (one DescribeInstanceInformation call)."""
    region = getattr(getattr(client, 'meta', None), 'region_name', None)
    try:
        info = describe_node(client, node_id)
    except CloudExecError as describe_error:
        message = (f'StartSession answered {NOT_CONNECTED} for {node_id}; DescribeInstanceInformation could not say why '
                   f'({describe_error.code}: {describe_error.message})')
        return CloudExecError(message, code=NOT_CONNECTED, provider='aws', status=error.status, request_id=error.request_id,
                              remedy=AGENT_REMEDY + '; allow ssm:DescribeInstanceInformation to have the reason named',
                              retryable=False)
    problem = node_state_problem(node_id, info, region)
    if problem is None:
        problem = (f'StartSession answered {NOT_CONNECTED} for {node_id} although DescribeInstanceInformation reports PingStatus '
                   'Online: the agent may have just lost its connection, or it cannot take another session')
    elif info is None:
        return CloudExecError(problem, code=NOT_CONNECTED, provider='aws', status=error.status, request_id=error.request_id,
                              remedy='Check the node id and region (ansible_aws_ssm_instance_id, ansible_aws_ssm_region); an EC2 '
                                     'instance must be running with the SSM agent and an instance profile allowing '
                                     'AmazonSSMManagedInstanceCore', retryable=False)
    return CloudExecError(problem, code=NOT_CONNECTED, provider='aws', status=error.status, request_id=error.request_id,
                          remedy=AGENT_REMEDY, retryable=False)
