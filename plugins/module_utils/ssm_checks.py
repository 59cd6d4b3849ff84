# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Session Manager preflight checks for managed nodes, as data (see exec_checks for the Check type).

The functions judge what the APIs returned (node records of ssm_nodes, session document inputs, IAM simulation
decisions, VPC endpoint names); they make no calls. aws_ssm_exec_check runs them; a transport that refuses a node can
use the same words.

Agent versions (amazon-ssm-agent release notes and the Session Manager prerequisites page of the SSM user guide):
- Session Manager needs SSM Agent 2.3.68.0 or later (session-manager-prerequisites.html; release 2.3.50.0 of
  2018-09-12 first "enables the Session Manager capability", so 2.3.68.0 is the stricter floor).
- KMS encryption of session data: 2.3.539.0 (release 2019-04-04, "Add support for further encryption of session data
  using AWS KMS").
- Run As on Linux: 2.3.672.0 (release 2019-07-09, "Add support for Session Manager RunAs functionality on Linux
  platform"). Run As is for Linux and macOS nodes only (user guide, "Turn on run as support for Linux and macOS managed
  nodes"); Windows sessions run as ssm-user.
"""

from __future__ import annotations

import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils.exec_checks import (
    Check,
    failed,
    passed,
    unknown,
    version_at_least,
    warned,
)

MIN_SESSION_AGENT = '2.3.68.0'
MIN_KMS_AGENT = '2.3.539.0'
MIN_RUN_AS_AGENT = '2.3.672.0'
DEFAULT_DOCUMENT = 'SSM-SessionManagerRunShell'
RUN_AS_TAG = 'SSMSessionRunAs'
DEFAULT_USER = 'ssm-user'
# The interface endpoints a node in a private subnet needs (SSM user guide, "Use VPC endpoints for Systems Manager":
# ssm, ssmmessages for Session Manager's channels, ec2messages for the agent's messages).
ENDPOINT_SERVICES = ('ssm', 'ssmmessages', 'ec2messages')
SSM_CHECK = 'cloudexec.core.aws_ssm_exec_check'
AGENT_REMEDY = ('check that amazon-ssm-agent runs on the node (systemctl status amazon-ssm-agent; on Windows '
                'Get-Service AmazonSSMAgent), that its instance profile (EC2) or activation role (hybrid) has the '
                'AmazonSSMManagedInstanceCore policy, and that it reaches the ssm, ssmmessages and ec2messages endpoints '
                '(HTTPS, port 443)')


def _where(node: t.Mapping[str, t.Any]) -> str:
    return f'{node.get("instance_id")} in {node.get("region")}'


# --------------------------------------------------------------------------- the node


def node_missing(node_id: str, region: str, ec2_state: str | None) -> Check:
    """A node DescribeInstanceInformation does not list: stopped, not registered, or unknown."""
    if ec2_state in ('stopped', 'stopping', 'pending', 'shutting-down', 'terminated'):
        remedy = ('Start the instance; its agent registers again within minutes' if ec2_state in ('stopped', 'stopping')
                  else 'Wait until the instance is running' if ec2_state == 'pending'
                  else 'The instance is gone: use another one')
        return failed('managed_node', f'EC2 instance {node_id} is {ec2_state}: Systems Manager lists no stopped or terminated '
                                      'instance', remedy, 'InstanceNotRunning')
    if ec2_state:
        return failed('managed_node', f'EC2 instance {node_id} is {ec2_state} but not a managed node of Systems Manager in {region}',
                      f'Make it a managed node: {AGENT_REMEDY}; or turn on Default Host Management Configuration',
                      'NotManaged')
    return failed('managed_node', f'{node_id} is not a managed node of this account in {region}',
                  'Check the node id and the region (hybrid nodes live in the region of their activation)', 'InvalidInstanceId')


def node_found(node: t.Mapping[str, t.Any]) -> Check:
    kind = 'EC2 instance' if node.get('resource_type') == 'EC2Instance' else 'hybrid managed node'
    name = f' ({node["name"]})' if node.get('name') else ''
    return passed('managed_node', f'{kind} {node.get("instance_id")}{name} is a managed node, {node.get("platform_name") or node.get("platform_type")}')


def agent_online(node: t.Mapping[str, t.Any]) -> Check:
    """PingStatus must be Online: StartSession answers TargetNotConnected otherwise."""
    status = node.get('ping_status')
    if status == 'Online':
        return passed('agent_online', 'the agent is Online')
    since = f' (last ping {node["last_ping"]})' if node.get('last_ping') else ''
    if status == 'ConnectionLost':
        return failed('agent_online', f'the agent of {_where(node)} lost its connection{since}: sessions get TargetNotConnected',
                      f'The agent stopped reporting: {AGENT_REMEDY}; restart the agent (or the node) once fixed', 'ConnectionLost')
    return failed('agent_online', f'the node {_where(node)} is {status}{since}: sessions get TargetNotConnected',
                  'The node is no longer registered (terminated, deregistered or its registration expired): register it again '
                  '(hybrid: a new activation and amazon-ssm-agent -register) or use another node', str(status or 'NotOnline'))


def agent_version(node: t.Mapping[str, t.Any], kms: bool, run_as: bool) -> Check:
    """The agent must be new enough for Session Manager, and for KMS encryption and Run As when the session uses them."""
    version = node.get('agent_version')
    needs = [(MIN_SESSION_AGENT, 'Session Manager')]
    if kms:
        needs.append((MIN_KMS_AGENT, 'KMS encryption of sessions'))
    if run_as and node.get('platform_type') != 'Windows':
        needs.append((MIN_RUN_AS_AGENT, 'Run As'))
    missing = [(minimum, what) for minimum, what in needs if version_at_least(version, minimum) is False]
    if version_at_least(version, MIN_SESSION_AGENT) is None:
        return unknown('agent_version', f'the agent reports version {version!r}, which is not a version number')
    if missing:
        wants = ', '.join(f'{what} needs {minimum}' for minimum, what in missing)
        return failed('agent_version', f'SSM Agent {version} is too old: {wants}',
                      'Update the agent: run the AWS-UpdateSSMAgent document on the node (Run Command), or install the '
                      'current amazon-ssm-agent package', 'AgentTooOld')
    if node.get('is_latest_version') is False:
        return warned('agent_version', f'SSM Agent {version} works for these sessions but is not the latest version',
                      'Keep the agent current with AWS-UpdateSSMAgent (or a State Manager association that runs it)')
    return passed('agent_version', f'SSM Agent {version}')


# --------------------------------------------------------------------------- the session document


def session_document(name: str, content: t.Mapping[str, t.Any] | None, error: t.Any = None) -> Check:
    """The document StartSession will use: it must exist and open a shell (Standard_Stream) or run a command."""
    if content is None:
        if name == DEFAULT_DOCUMENT and getattr(error, 'code', None) == 'InvalidDocument':
            return passed('session_document', f'the account has no Session Manager preferences ({DEFAULT_DOCUMENT} does not '
                                              'exist): sessions use the defaults (no KMS key, no Run As)')
        if getattr(error, 'code', None) == 'InvalidDocument':
            return failed('session_document', f'session document {name} does not exist in this region',
                          'Name an existing Session document (ansible_aws_ssm_document), or leave it unset for the shell',
                          'InvalidDocument')
        why = f' ({error.code}: {error.message})' if error is not None else ''
        return unknown('session_document', f'could not read session document {name}{why}',
                       'Allow ssm:GetDocument to have the session preferences checked')
    session_type = content.get('sessionType')
    if session_type == 'Standard_Stream':
        return passed('session_document', f'{name} opens a shell (Standard_Stream)')
    if session_type == 'InteractiveCommands':
        return warned('session_document', f'{name} runs a fixed command (InteractiveCommands), not a shell',
                      'The aws_ssm connection needs a shell: use a Standard_Stream document (or none)')
    return failed('session_document', f'{name} is a {session_type} document, which opens no shell',
                  'Use a Standard_Stream session document (or none, for SSM-SessionManagerRunShell)', 'WrongSessionType')


def document_inputs(content: t.Mapping[str, t.Any] | None) -> dict[str, t.Any]:
    """Run As and KMS settings of a Standard_Stream document's inputs (the account's preferences), normalized."""
    inputs = dict((content or {}).get('inputs') or {})
    enabled = inputs.get('runAsEnabled')
    return {
        'run_as_enabled': enabled is True or str(enabled).lower() == 'true',
        'run_as_default_user': str(inputs.get('runAsDefaultUser') or '') or None,
        'kms_key_id': str(inputs.get('kmsKeyId') or '') or None,
    }


# --------------------------------------------------------------------------- IAM


def start_session_permission(decisions: t.Mapping[str, str | None], why_unknown: str = '') -> Check:
    """ssm:StartSession on the node and on the document (iam:SimulatePrincipalPolicy, per resource)."""
    if any(decision is None for decision in decisions.values()) or not decisions:
        return unknown('start_session_permission', f'could not simulate the caller\'s policies{why_unknown}',
                       'Allow the caller iam:SimulatePrincipalPolicy (and sts:GetCallerIdentity) to have this checked; '
                       'sessions need ssm:StartSession on the node and on the session document')
    denied = [resource for resource, decision in decisions.items() if decision != 'allowed']
    if not denied:
        return passed('start_session_permission', 'the caller may call ssm:StartSession on the node and the document')
    return failed('start_session_permission', f'ssm:StartSession is not allowed on {", ".join(denied)}',
                  'Grant the caller ssm:StartSession on the node (arn:...:instance/ID or managed-instance/ID) and on the session '
                  'document (arn:...:document/NAME) in an IAM policy, with ssm:TerminateSession and ssm:ResumeSession on its '
                  'own sessions', 'AccessDenied')


def kms_permission(key_id: str | None, decision: str | None, why_unknown: str = '') -> Check:
    """kms:GenerateDataKey on the preferences' key, when sessions are encrypted."""
    if not key_id:
        return passed('kms_permission', 'no KMS key in the session preferences: sessions are encrypted with TLS only')
    if decision is None:
        return unknown('kms_permission', f'sessions are encrypted with KMS key {key_id}; could not simulate the caller\'s '
                                         f'policies{why_unknown}',
                       'Allow the caller iam:SimulatePrincipalPolicy to have this checked; the caller needs kms:GenerateDataKey '
                       'on the key and the node\'s role kms:Decrypt')
    if decision == 'allowed':
        return passed('kms_permission', f'the caller may call kms:GenerateDataKey on {key_id} (the node\'s role also needs '
                                        'kms:Decrypt on it, which is not checked)')
    return failed('kms_permission', f'sessions are encrypted with KMS key {key_id} and kms:GenerateDataKey is {decision} for '
                                    'the caller',
                  f'Grant the caller kms:GenerateDataKey on {key_id} (IAM policy and key policy), and the node\'s instance '
                  'profile or activation role kms:Decrypt on it', 'AccessDenied')


# --------------------------------------------------------------------------- Run As


def run_as(node: t.Mapping[str, t.Any], inputs: t.Mapping[str, t.Any], tag_user: str | None, tags_read: bool,
           why_unknown: str = '') -> Check:
    """The OS user of the sessions: ssm-user without Run As; with it, the caller's SSMSessionRunAs tag, else runAsDefaultUser."""
    if not inputs.get('run_as_enabled'):
        return passed('run_as', f'Run As is off: sessions run as {DEFAULT_USER}')
    default = inputs.get('run_as_default_user')
    if node.get('platform_type') == 'Windows':
        return passed('run_as', f'Run As applies to Linux and macOS only: sessions on this Windows node run as {DEFAULT_USER}')
    caveat = '; whether the node has this user the API cannot tell (the session fails with "RunAs user ... does not exist" if not)'
    if tag_user:
        return passed('run_as', f'sessions run as {tag_user}, the caller\'s {RUN_AS_TAG} tag{caveat}')
    if not tags_read:
        if default:
            return warned('run_as', f'sessions run as {default} (runAsDefaultUser) unless the caller has an {RUN_AS_TAG} tag, '
                                    f'which could not be read{why_unknown}',
                          'Allow iam:ListUserTags / iam:ListRoleTags to have the caller\'s Run As user checked')
        return unknown('run_as', f'Run As is on without runAsDefaultUser, and the caller\'s {RUN_AS_TAG} tag could not be '
                                 f'read{why_unknown}',
                       f'Make sure the caller\'s IAM user or role has an {RUN_AS_TAG} tag, or set runAsDefaultUser')
    if default:
        return passed('run_as', f'sessions run as {default} (runAsDefaultUser; the caller has no {RUN_AS_TAG} tag){caveat}')
    return failed('run_as', f'Run As is on, but the preferences name no runAsDefaultUser and the caller has no {RUN_AS_TAG} tag: '
                            'sessions fail with "please set the RunAs default user"',
                  f'Set runAsDefaultUser in the Session Manager preferences (or the document\'s inputs), or tag the caller\'s IAM '
                  f'user or role with {RUN_AS_TAG}=<an OS user of the node>', 'RunAsUserMissing')


# --------------------------------------------------------------------------- network


def network_path(node: t.Mapping[str, t.Any], endpoints: list[str] | None, why_unknown: str = '') -> Check:
    """Whether the node reaches the Systems Manager endpoints: a public IP, or interface endpoints in its VPC."""
    region = node.get('region')
    wanted = [f'com.amazonaws.{region}.{service}' for service in ENDPOINT_SERVICES]
    hosts = ', '.join(f'{service}.{region}.amazonaws.com' for service in ENDPOINT_SERVICES)
    if node.get('resource_type') != 'EC2Instance':
        return unknown('network_path', 'an on-premises node reaches the endpoints over its own network, which the AWS APIs '
                                       'cannot see', f'Make sure it reaches {hosts} on port 443 (directly, through a proxy, '
                                                     'or a VPN and interface endpoints)')
    if node.get('public_ip_address'):
        return passed('network_path', f'the instance has public IP {node["public_ip_address"]}')
    if endpoints is None:
        return unknown('network_path', f'could not look at the instance\'s VPC{why_unknown}',
                       f'Make sure the instance reaches {hosts}: a public IP, a NAT gateway or interface endpoints (allow '
                       'ec2:DescribeInstances and ec2:DescribeVpcEndpoints to have this checked)')
    missing = [name for name in wanted if name not in endpoints]
    if not missing:
        return passed('network_path', f'VPC {node.get("vpc_id")} has the ssm, ssmmessages and ec2messages endpoints')
    return warned('network_path', f'the instance has no public IP and VPC {node.get("vpc_id")} has no {", ".join(missing)} endpoint',
                  f'Unless its subnet routes to a NAT gateway, add interface endpoints for {", ".join(missing)} (private DNS on)')
