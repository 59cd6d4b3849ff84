# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Preflight checks as data: each says what was checked, whether it passed, and what to do if not.

The functions here take what the cloud APIs returned (plain dicts and strings) and judge it; they
make no calls of their own. The exec paths (aws_ecs.resolve_target, eci.resolve_target,
cloud_assistant.target_problems) and the preflight modules (aws_ecs_exec_check, ali_exec_check) use
the same functions, so a target refused by a transport is refused with the words its check uses.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

PASS = 'pass'
FAIL = 'fail'
WARN = 'warn'
UNKNOWN = 'unknown'
STATUSES = (PASS, FAIL, WARN, UNKNOWN)

EXEC_AGENT = 'ExecuteCommandAgent'
# ECS Exec needs Fargate platform version 1.4.0 or later, and ECS agent 1.50.2 or later on EC2 (AWS docs).
MIN_FARGATE_PLATFORM = '1.4.0'
MIN_ECS_AGENT = '1.50.2'
# The permissions the task role needs for the agent's channels to the Session Manager service.
SSMMESSAGES_ACTIONS = ('ssmmessages:CreateControlChannel', 'ssmmessages:CreateDataChannel',
                       'ssmmessages:OpenControlChannel', 'ssmmessages:OpenDataChannel')
# A conservative floor for the Cloud Assistant agent; Alibaba documents per-feature minimums.
MIN_CLOUD_ASSISTANT = '2.0.0'
ALI_EXEC_CHECK = 'cloudexec.core.ali_exec_check'
AWS_EXEC_CHECK = 'cloudexec.core.aws_ecs_exec_check'


@dataclass
class Check:
    """One preflight check: name, status (pass, fail, warn, unknown), what was seen, and the remedy."""

    name: str
    status: str
    detail: str
    remedy: str | None = None
    code: str | None = None

    @property
    def failed(self) -> bool:
        """True when the check found a problem that stops exec."""
        return self.status == FAIL

    def to_dict(self) -> dict[str, t.Any]:
        """The module's result entry (code is an internal error code and stays out)."""
        return {'name': self.name, 'status': self.status, 'detail': self.detail, 'remedy': self.remedy}


def passed(name: str, detail: str) -> Check:
    """A check that found nothing wrong."""
    return Check(name, PASS, detail)


def failed(name: str, detail: str, remedy: str, code: str | None = None) -> Check:
    """A check that found a problem."""
    return Check(name, FAIL, detail, remedy, code)


def warned(name: str, detail: str, remedy: str | None = None) -> Check:
    """A check that found something worth knowing that does not stop exec by itself."""
    return Check(name, WARN, detail, remedy)


def unknown(name: str, detail: str, remedy: str | None = None) -> Check:
    """A check that could not be made (not allowed, not reachable, or skipped because an earlier one failed)."""
    return Check(name, UNKNOWN, detail, remedy)


def ready(checks: t.Iterable[Check]) -> bool:
    """True when no check failed (warnings and unknowns do not count against readiness)."""
    return not any(check.failed for check in checks)


def summary(checks: t.Sequence[Check]) -> str:
    """One line for messages: the failed checks with their remedies, or that all passed."""
    bad = [check for check in checks if check.failed]
    if not bad:
        return f'All {len(checks)} checks passed or could not fail exec'
    return '; '.join(f'{check.name}: {check.detail} -> {check.remedy}' for check in bad)


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    """'1.50.2' -> (1, 50, 2); None when it holds no number."""
    numbers = re.findall(r'\d+', str(version or ''))
    return tuple(int(number) for number in numbers) if numbers else None


def version_at_least(current: str | None, minimum: str) -> bool | None:
    """Whether current >= minimum (None when current is not a version)."""
    have, need = version_tuple(current), version_tuple(minimum)
    if have is None or need is None:
        return None
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def caller_role_arn(arn: str) -> str:
    """The ARN IAM simulates for a caller: an assumed-role session becomes its role."""
    if ':assumed-role/' in arn:
        head, rest = arn.split(':assumed-role/', 1)
        return head.replace(':sts:', ':iam:') + ':role/' + rest.split('/', 1)[0]
    return arn


# --------------------------------------------------------------------------- choosing a container (both clouds)


def choose_container(containers: t.Sequence[dict[str, t.Any]], wanted: str | None, owner: str,
                     key: str = 'name') -> tuple[dict[str, t.Any] | None, Check]:
    """The container exec would reach: the named one, or the only one. The check's detail says why not."""
    names = [str(c.get(key)) for c in containers]
    if wanted:
        chosen = next((c for c in containers if c.get(key) == wanted), None)
        if chosen is None:
            return None, failed('container', f'{owner} has no container named {wanted!r} (it has: {", ".join(names)})',
                                'Set the container name to one of the containers listed', 'InvalidParameter')
        return chosen, passed('container', f'container {wanted} exists')
    if len(containers) == 1:
        return containers[0], passed('container', f'container {names[0]} is the only one')
    return None, failed('container', f'{owner} has {len(containers)} containers, name one of: {", ".join(names)}',
                        'Name the container to use', 'InvalidParameter')


# --------------------------------------------------------------------------- ECS Exec (AWS)


def ecs_task_running(task: dict[str, t.Any]) -> Check:
    """The task must be RUNNING."""
    status = task.get('lastStatus')
    if status == 'RUNNING':
        return passed('task_running', 'the task is RUNNING')
    return failed('task_running', f'the task is {status or "not running"}',
                  f'The task is {task.get("lastStatus", "not running")}: exec needs a RUNNING task', 'TaskNotRunning')


def ecs_exec_enabled(task: dict[str, t.Any]) -> Check:
    """enableExecuteCommand must have been set when the task started."""
    if task.get('enableExecuteCommand'):
        return passed('exec_enabled', 'enableExecuteCommand is true')
    return failed('exec_enabled', 'enableExecuteCommand is false on this task',
                  'ECS Exec is not enabled on this task: update the service (or run-task) with '
                  '--enable-execute-command and start a new task; the setting applies only to tasks started after it',
                  'ExecuteCommandNotEnabled')


def ecs_agent_running(task: dict[str, t.Any], container: dict[str, t.Any]) -> Check:
    """The container's ExecuteCommandAgent must be RUNNING (only meaningful where exec is enabled)."""
    if not task.get('enableExecuteCommand'):
        return unknown('agent_running', 'not checked: ECS Exec is not enabled, so the task has no exec agent')
    agents = {a.get('name'): a for a in container.get('managedAgents', [])}
    agent = agents.get(EXEC_AGENT)
    if agent is not None and agent.get('lastStatus') == 'RUNNING':
        return passed('agent_running', f'the ECS Exec agent in container {container.get("name")} is RUNNING')
    status = agent.get('lastStatus', 'missing') if agent else 'missing'
    reason = f' ({agent["reason"]})' if agent and agent.get('reason') else ''
    return failed('agent_running', f'the ECS Exec agent in container {container.get("name")} is {status}{reason}',
                  f'The ECS Exec agent in container {container.get("name")} is {status}: check the task role allows '
                  'ssmmessages:CreateControlChannel/CreateDataChannel/OpenControlChannel/OpenDataChannel and that '
                  f'the task can reach ssmmessages (NAT or VPC endpoint); run {AWS_EXEC_CHECK}', 'AgentNotRunning')


def ecs_exec_problems(task: dict[str, t.Any], container: dict[str, t.Any]) -> list[Check]:
    """The checks ExecuteCommand itself would refuse on, failed ones only (what the exec paths raise)."""
    return [check for check in (ecs_task_running(task), ecs_exec_enabled(task), ecs_agent_running(task, container)) if check.failed]


def ecs_platform(task: dict[str, t.Any], agent_version: str | None = None) -> Check:
    """Fargate platform version >= 1.4.0, or ECS agent >= 1.50.2 on an EC2 container instance."""
    launch_type = task.get('launchType') or 'unknown'
    if launch_type == 'FARGATE':
        version = task.get('platformVersion')
        good = True if version == 'LATEST' else version_at_least(version, MIN_FARGATE_PLATFORM)
        if good:
            return passed('platform_version', f'Fargate platform version {version}')
        if good is None:
            return unknown('platform_version', f'Fargate platform version {version!r} is not a version number')
        return failed('platform_version', f'Fargate platform version {version} is older than {MIN_FARGATE_PLATFORM}',
                      f'Run the task on platform version {MIN_FARGATE_PLATFORM} or LATEST (update the service with '
                      '--platform-version LATEST and start a new task)', 'PlatformTooOld')
    if launch_type == 'EC2':
        if agent_version is None:
            return unknown('platform_version', 'EC2 launch type: the ECS agent version could not be read',
                           'Allow ecs:DescribeContainerInstances to check the agent version')
        good = version_at_least(agent_version, MIN_ECS_AGENT)
        if good:
            return passed('platform_version', f'EC2 launch type, ECS agent {agent_version}')
        return failed('platform_version', f'the ECS agent on the container instance is {agent_version}, older than {MIN_ECS_AGENT}',
                      'Update the ECS agent on the container instance (or use a current ECS-optimized AMI), then start a new task',
                      'AgentTooOld')
    return unknown('platform_version', f'launch type {launch_type}: no version requirement is known')


def ecs_task_role(role_arn: str | None, launch_type: str | None) -> Check:
    """The task definition must name a task role (the exec agent uses it to reach ssmmessages)."""
    if role_arn:
        return passed('task_role', f'task role {role_arn}')
    if launch_type == 'EC2':
        return warned('task_role', 'the task definition has no task role; the agent falls back to the container instance role',
                      'Give the task definition a taskRoleArn whose policy allows the ssmmessages actions')
    return failed('task_role', 'the task definition has no task role',
                  'Give the task definition a taskRoleArn whose policy allows ssmmessages:CreateControlChannel, '
                  'CreateDataChannel, OpenControlChannel and OpenDataChannel, then start a new task', 'NoTaskRole')


def ecs_task_role_permissions(role_arn: str | None, decisions: dict[str, str] | None, why_unknown: str = '') -> Check:
    """What iam:SimulatePrincipalPolicy said about the task role and the ssmmessages actions."""
    if not role_arn:
        return unknown('task_role_permissions', 'not checked: no task role')
    if decisions is None:
        return unknown('task_role_permissions', f'could not simulate the task role\'s policies{why_unknown}',
                       'Allow the caller iam:SimulatePrincipalPolicy to have this checked, or check the role\'s policy by hand '
                       'for the four ssmmessages actions')
    denied = [action for action in SSMMESSAGES_ACTIONS if decisions.get(action) != 'allowed']
    if not denied:
        return passed('task_role_permissions', 'the task role allows the four ssmmessages actions')
    return failed('task_role_permissions', f'the task role does not allow {", ".join(denied)}',
                  f'Add an IAM policy to {role_arn} allowing ssmmessages:CreateControlChannel, CreateDataChannel, '
                  'OpenControlChannel and OpenDataChannel (Resource "*"), then start a new task', 'TaskRoleDenied')


def ecs_cluster_config(cluster: dict[str, t.Any]) -> list[Check]:
    """The cluster's executeCommandConfiguration: audit logging and the KMS key of the sessions."""
    config = (cluster.get('configuration') or {}).get('executeCommandConfiguration') or {}
    logging = config.get('logging') or 'DEFAULT'
    checks = []
    if logging == 'NONE':
        checks.append(passed('exec_logging', 'session logging is off (logging NONE)'))
    elif logging == 'OVERRIDE':
        log_config = config.get('logConfiguration') or {}
        where = ', '.join(f'{k}={v}' for k, v in sorted(log_config.items())) or 'no destination given'
        checks.append(warned('exec_logging', f'session output is logged to the configured destination ({where})',
                             'The task role needs write access to that destination (logs:PutLogEvents or s3:PutObject); '
                             'sessions fail without it'))
    else:
        checks.append(passed('exec_logging', 'session logging follows the task definition\'s log configuration (DEFAULT)'))
    key = config.get('kmsKeyId')
    if key:
        checks.append(warned('exec_kms', f'sessions are encrypted with KMS key {key}',
                             'The caller needs kms:GenerateDataKey on this key and the task role kms:Decrypt'))
    else:
        checks.append(passed('exec_kms', 'no KMS key: sessions use TLS only'))
    return checks


def ecs_network(region: str, public_ip: str | None, endpoints: list[str] | None, why_unknown: str = '') -> Check:
    """Whether the task can reach ssmmessages: a public IP, or an ssmmessages VPC endpoint in its VPC."""
    service = f'com.amazonaws.{region}.ssmmessages'
    if public_ip:
        return passed('network_path', f'the task has public IP {public_ip}')
    if endpoints is None:
        return unknown('network_path', f'could not look at the task\'s network{why_unknown}',
                       f'Make sure the task reaches ssmmessages.{region}.amazonaws.com: a public IP, a NAT gateway, or a '
                       f'{service} VPC endpoint (allow ec2:DescribeNetworkInterfaces and ec2:DescribeVpcEndpoints to have this checked)')
    if service in endpoints:
        return passed('network_path', f'the task\'s VPC has a {service} endpoint')
    return warned('network_path', f'the task has no public IP and its VPC has no {service} endpoint',
                  f'Unless its subnet routes to a NAT gateway, add a {service} VPC endpoint (or give the task a public IP)')


def ecs_caller_permission(decision: str | None, why_unknown: str = '') -> Check:
    """Whether the caller may call ecs:ExecuteCommand on the task (iam:SimulatePrincipalPolicy)."""
    if decision is None:
        return unknown('caller_permission', f'could not simulate the caller\'s policies{why_unknown}',
                       'Allow the caller iam:SimulatePrincipalPolicy to have this checked; exec needs ecs:ExecuteCommand')
    if decision == 'allowed':
        return passed('caller_permission', 'the caller may call ecs:ExecuteCommand on the task')
    return failed('caller_permission', f'ecs:ExecuteCommand is {decision} for the caller',
                  'Grant the caller ecs:ExecuteCommand on the task (and ecs:DescribeTasks) in an IAM policy', 'AccessDenied')


# --------------------------------------------------------------------------- ECI (Alibaba)


def eci_group_running(group: dict[str, t.Any]) -> Check:
    """The container group must be Running."""
    gid = group.get('ContainerGroupId')
    status = group.get('Status')
    if status == 'Running':
        return passed('group_running', f'container group {gid} is Running')
    return failed('group_running', f'Container group {gid} is {status}: exec needs a Running group',
                  'Wait until the group is Running (DescribeContainerGroups), or restart it; '
                  'Succeeded and Failed groups do not run again', 'IncorrectStatus')


def eci_container_running(group: dict[str, t.Any], container: dict[str, t.Any]) -> Check:
    """The chosen container must be Running (when the service reports a state)."""
    state = (container.get('CurrentState') or {}).get('State')
    name = container.get('Name')
    if state and state != 'Running':
        return failed('container_running',
                      f'Container {name} of group {group.get("ContainerGroupId")} is {state}: exec needs a Running container',
                      'Check the container with DescribeContainerGroups and its logs (DescribeContainerLog)', 'IncorrectStatus')
    return passed('container_running', f'container {name} is {state or "reported without a state"}')


def eci_container_ready(container: dict[str, t.Any]) -> Check:
    """Readiness: a running container that is not Ready still takes exec, but is probably unhealthy."""
    if container.get('Ready', True):
        return passed('container_ready', f'container {container.get("Name")} is Ready')
    return warned('container_ready', f'container {container.get("Name")} is not Ready (restarts: {container.get("RestartCount", 0)})',
                  'Exec may work, but the container fails its readiness probe: look at its logs (DescribeContainerLog)')


# --------------------------------------------------------------------------- Cloud Assistant (Alibaba ECS)


def instance_exists(status: str | None) -> Check:
    """DescribeInstances must know the instance."""
    if status is None:
        return failed('instance_exists', 'not found in this region', 'Check the instance id and alicloud_region', 'InstanceNotFound')
    return passed('instance_exists', 'the instance exists')


def instance_running(status: str | None) -> Check:
    """The instance must be Running."""
    if status == 'Running':
        return passed('instance_running', 'the instance is Running')
    return failed('instance_running', f'instance is {status}, not Running', 'Start the instance (StartInstance) and wait until it is Running',
                  'InstanceNotRunning')


def assistant_online(online: bool | None, last_heartbeat: str | None = None) -> Check:
    """DescribeCloudAssistantStatus must say "true" (a heartbeat in the last minutes)."""
    if online:
        return passed('assistant_online', 'the Cloud Assistant agent is online')
    heartbeat = f', last heartbeat {last_heartbeat}' if last_heartbeat else ''
    return failed('assistant_online', f'Cloud Assistant agent is offline{heartbeat}',
                  'Start the agent on the instance (systemctl start aliyun.service on Linux) or reinstall it; it must '
                  'reach the Cloud Assistant server over the VPC', 'ClientNotRunning')


def assistant_version(version: str | None, minimum: str = MIN_CLOUD_ASSISTANT) -> Check:
    """The agent version must be at least the minimum."""
    good = version_at_least(version, minimum)
    if good is None:
        return unknown('assistant_version', f'agent version {version!r} could not be read')
    if good:
        return passed('assistant_version', f'agent version {version} (>= {minimum})')
    return failed('assistant_version', f'agent version {version} is older than {minimum}',
                  'Upgrade the Cloud Assistant agent (InstallCloudAssistant, or the update_aliyun_assist script on the instance)',
                  'ClientNeedUpgrade')


def script_type_fits(os_type: str | None, command_type: str) -> Check:
    """Linux runs RunShellScript; Windows runs RunBatScript or RunPowerShellScript."""
    if not os_type:
        return unknown('os_type', 'the instance reported no OS type')
    windows = os_type.lower() == 'windows'
    if windows == (command_type != 'RunShellScript'):
        return passed('os_type', f'{command_type} runs on a {os_type.lower()} instance')
    if windows:
        remedy = ('This is a Windows instance: run a PowerShell or Bat script on it (script type RunPowerShellScript or '
                  'RunBatScript), apart from the Linux instances')
    else:
        remedy = f'This is a {os_type.lower()} instance: run a shell script on it (script type RunShellScript), apart from the Windows instances'
    return failed('os_type', f'{command_type} does not run on a {os_type.lower()} instance', remedy, 'CommandNotApplicable')


def session_manager(supported: bool | None) -> Check:
    """Whether the agent supports Cloud Assistant's session manager (not needed by this collection's transports)."""
    if supported:
        return passed('session_manager', 'the agent supports the session manager')
    return warned('session_manager', 'the agent does not support the session manager',
                  'Not needed by cloudexec.core; upgrade the agent if you want Session Manager terminals')
