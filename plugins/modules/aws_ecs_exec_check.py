#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: aws_ecs_exec_check
short_description: Check that ECS Exec can reach a task's container, and say how to fix what stops it
version_added: 0.1.0
description:
  - Runs the preflight checks of ECS Exec against one task and returns every check with its status and, for problems,
    the remedy in a sentence. It covers what AWS's C(check-ecs-exec.sh) script checks by hand, and runs nothing in
    the container.
  - The checks, in order. V(credentials) the credentials work (a C(DescribeClusters) call). V(cluster) the cluster
    exists. V(task) the task exists. V(task_running) it is C(RUNNING). V(exec_enabled) C(enableExecuteCommand) is true.
    V(container) the container exists, or is the only one. V(agent_running) its C(ExecuteCommandAgent) is C(RUNNING).
  - V(platform_version) the Fargate platform version is 1.4.0 or later; for the EC2 launch type, the ECS agent of the
    container instance is 1.50.2 or later (C(DescribeContainerInstances)).
  - V(task_role) the task definition has a task role. V(task_role_permissions) the role allows the four
    C(ssmmessages) actions, by C(iam:SimulatePrincipalPolicy).
  - V(exec_logging) and V(exec_kms) report the cluster's C(executeCommandConfiguration).
  - V(network_path) the task has a public IP (C(ec2:DescribeNetworkInterfaces)) or its VPC has an C(ssmmessages)
    interface endpoint (C(ec2:DescribeVpcEndpoints)).
  - V(caller_permission) the caller may call C(ecs:ExecuteCommand) on the task (C(sts:GetCallerIdentity), then
    C(iam:SimulatePrincipalPolicy)).
  - A check the caller is not allowed to make, or that an earlier failure makes pointless, is V(unknown) with the
    reason; the module carries on with the others.
  - The task does not fail because a check failed; RV(ready) says whether one did. Set O(fail_on_problems=true) to fail
    the task, with every failed check and its remedy in the message.
  - The connection plugin P(cloudexec.core.aws_ecs#connection) and the module M(cloudexec.core.aws_ecs_exec) name this module in
    their errors when a target cannot be reached.
author:
  - cloudexec.core maintainers (@cloudexec)
options:
  cluster:
    description:
      - The cluster name or ARN.
      - When not set, the cluster named in O(task) when that is a task ARN, else the C(default) cluster.
    type: str
  task:
    description:
      - The task ARN or task id.
    type: str
    required: true
  container:
    description:
      - The container to check. Required only when the task has more than one container.
    type: str
  fail_on_problems:
    description:
      - Fail the task when any check has status V(fail). The message lists each failed check and its remedy.
      - When V(false), the task succeeds and RV(ready) tells the result.
    type: bool
    default: false
extends_documentation_fragment:
  - cloudexec.core.aws_auth.modules
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads; check mode runs every check the same way.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The module only reads. It calls C(ecs:DescribeClusters), C(ecs:DescribeTasks), C(ecs:DescribeTaskDefinition),
    C(ecs:DescribeContainerInstances) (EC2 launch type), C(sts:GetCallerIdentity), C(iam:SimulatePrincipalPolicy),
    C(ec2:DescribeNetworkInterfaces) and C(ec2:DescribeVpcEndpoints). Without the IAM or EC2 permissions the checks
    that need them are V(unknown), not V(fail).
  - IAM's policy simulation evaluates identity policies; it does not see service control policies, permission
    boundaries of other accounts or VPC endpoint policies, so a V(pass) there is strong evidence, not proof.
  - V(network_path) cannot see route tables. A task without public IP and without an C(ssmmessages) endpoint may still
    reach the service through a NAT gateway, so that case is a V(warn).
  - With O(endpoint_url) every service (ECS, STS, IAM, EC2) is called at that URL; otherwise boto3's per-service
    settings apply (E(AWS_ENDPOINT_URL_ECS), E(AWS_ENDPOINT_URL_IAM), ...).
  - This collection's emulator answers the IAM simulation from a world field (C(task_role_permissions_ok) on the task,
    the C(deny) list of a credential) instead of evaluating policies; see C(tests/emulator/README.md).
seealso:
  - module: cloudexec.core.aws_ecs_exec
  - module: cloudexec.core.ali_exec_check
  - name: Troubleshooting ECS Exec
    description: AWS's guide to ECS Exec issues.
    link: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-exec-troubleshooting.html
  - name: amazon-ecs-exec-checker
    description: AWS's shell script that makes similar checks by hand.
    link: https://github.com/aws-containers/amazon-ecs-exec-checker
'''

EXAMPLES = r'''
- name: Check a task before running commands in it
  cloudexec.core.aws_ecs_exec_check:
    cluster: production
    task: 1f0e1c2d3b4a59687766554433221100
    container: web
  register: preflight

- name: Show what to fix
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.detail }} -> {{ item.remedy }}"
  loop: "{{ preflight.checks | selectattr('status', 'equalto', 'fail') }}"
  loop_control:
    label: "{{ item.name }}"

- name: Stop the play when the task cannot be reached
  cloudexec.core.aws_ecs_exec_check:
    task: "arn:aws:ecs:eu-west-1:123456789012:task/production/1f0e1c2d3b4a59687766554433221100"
    fail_on_problems: true
'''

RETURN = r'''
ready:
  description: Whether no check failed (warnings and unknowns do not count).
  returned: always
  type: bool
  sample: false
checks:
  description: Every check, in the order they ran.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's name, for example V(exec_enabled).
      type: str
    status:
      description: V(pass), V(fail), V(warn) (worth knowing, does not stop exec) or V(unknown) (could not be checked).
      type: str
    detail:
      description: What the check saw.
      type: str
    remedy:
      description: What to do about it, in a sentence; null when there is nothing to do.
      type: str
  sample:
    - {name: exec_enabled, status: fail, detail: enableExecuteCommand is false on this task,
       remedy: "ECS Exec is not enabled on this task: update the service (or run-task) with --enable-execute-command ..."}
problems:
  description: "The failed checks, one line each: C(name: detail -> remedy)."
  returned: always
  type: list
  elements: str
task_arn:
  description: The task's ARN.
  returned: when the task was found
  type: str
cluster_arn:
  description: The cluster's ARN.
  returned: when the cluster was found
  type: str
container_name:
  description: The container that was checked.
  returned: when the container was chosen
  type: str
msg:
  description: A one-line summary.
  returned: always
  type: str
'''

import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils import aws, aws_ecs, exec_checks
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.module_utils.module import CloudExecModule, aws_argument_spec

NAMES = ('credentials', 'cluster', 'task', 'task_running', 'exec_enabled', 'container', 'agent_running', 'platform_version',
         'task_role', 'task_role_permissions', 'exec_logging', 'exec_kms', 'network_path', 'caller_permission')
# Errors that mean the caller may not make a call (its credentials are fine).
ACCESS_DENIED = ('AccessDeniedException', 'AccessDenied', 'UnauthorizedOperation', 'UnauthorizedAccess')


class Stop(Exception):
    """An earlier check failed so that the later ones cannot run."""


def _why(error: CloudExecError) -> str:
    return f' ({error.code or "error"}: {error.message})'


class AwsPreflight:
    """Runs the checks in order and keeps what they found."""

    def __init__(self, auth: aws.AwsAuth, params: dict[str, t.Any]) -> None:
        self.auth = auth
        self.params = params
        self.session = aws.aws_session(auth)
        self.ecs = aws.aws_client(auth, 'ecs', self.session)
        self.checks: list[exec_checks.Check] = []
        self.result: dict[str, t.Any] = {}

    def add(self, *checks: exec_checks.Check) -> None:
        self.checks.extend(checks)

    def client(self, service: str) -> t.Any:
        return aws.aws_client(self.auth, service, self.session)

    def run(self) -> list[exec_checks.Check]:
        try:
            self._run()
        except Stop:
            pass
        done = {check.name for check in self.checks}
        blocker = next((check for check in self.checks if check.failed), None)
        for name in NAMES:
            if name not in done:
                reason = f'{blocker.name} failed' if blocker else 'an earlier check could not be made'
                self.add(exec_checks.unknown(name, f'not checked: {reason}'))
        self.checks.sort(key=lambda check: NAMES.index(check.name))
        return self.checks

    def _run(self) -> None:
        task_ref = self.params['task']
        cluster_ref = self.params['cluster'] or aws_ecs.cluster_from_task_arn(task_ref) or 'default'
        cluster = self._cluster(cluster_ref)
        try:
            task = aws_ecs.describe_task(self.ecs, cluster_ref, task_ref)
        except CloudExecError as error:
            self.add(exec_checks.failed('task', error.message, error.remedy or 'Check the task id and cluster', error.code))
            raise Stop() from None
        self.result.update(task_arn=task.get('taskArn'), cluster_arn=task.get('clusterArn'))
        self.add(exec_checks.passed('task', f'task {task.get("taskArn")} exists'))
        self.add(exec_checks.ecs_task_running(task), exec_checks.ecs_exec_enabled(task))
        chosen, check = exec_checks.choose_container(task.get('containers') or [], self.params['container'], f'task {task_ref}')
        self.add(check)
        if chosen is not None:
            self.result['container_name'] = chosen.get('name')
            self.add(exec_checks.ecs_agent_running(task, chosen))
        self.add(exec_checks.ecs_platform(task, self._agent_version(task)))
        self._task_role(task)
        if cluster is not None:
            self.add(*exec_checks.ecs_cluster_config(cluster))
        self.add(self._network(task))
        self.add(self._caller_permission(task))

    def _cluster(self, ref: str) -> dict[str, t.Any] | None:
        try:
            answer = aws.call(self.ecs, 'describe_clusters', clusters=[ref], include=['CONFIGURATIONS'])
        except CloudExecError as error:
            if error.code in ACCESS_DENIED:
                self.add(exec_checks.passed('credentials', 'the credentials are valid'),
                         exec_checks.unknown('cluster', f'may not describe clusters{_why(error)}',
                                             'Allow ecs:DescribeClusters to have the cluster checked'))
                return None
            self.add(exec_checks.failed('credentials', f'{error.code}: {error.message}',
                                        error.remedy or 'Check the credentials, region and endpoint', error.code))
            raise Stop() from None
        self.add(exec_checks.passed('credentials', 'the credentials are valid'))
        clusters = answer.get('clusters') or []
        if not clusters or clusters[0].get('status') not in (None, 'ACTIVE'):
            state = clusters[0].get('status') if clusters else 'missing'
            self.add(exec_checks.failed('cluster', f'cluster {ref} is {state} in {self.session.region_name}',
                                        'Check the cluster name or ARN and the region', 'ClusterNotFoundException'))
            raise Stop()
        self.result['cluster_arn'] = clusters[0].get('clusterArn')
        self.add(exec_checks.passed('cluster', f'cluster {clusters[0].get("clusterName")} is ACTIVE'))
        return clusters[0]

    def _agent_version(self, task: dict[str, t.Any]) -> str | None:
        if task.get('launchType') != 'EC2' or not task.get('containerInstanceArn'):
            return None
        try:
            answer = aws.call(self.ecs, 'describe_container_instances', cluster=task.get('clusterArn'),
                              containerInstances=[task['containerInstanceArn']])
        except CloudExecError:
            return None
        instances = answer.get('containerInstances') or [{}]
        return (instances[0].get('versionInfo') or {}).get('agentVersion')

    def _task_role(self, task: dict[str, t.Any]) -> str | None:
        try:
            definition = aws.call(self.ecs, 'describe_task_definition', taskDefinition=task.get('taskDefinitionArn'))['taskDefinition']
        except CloudExecError as error:
            self.add(exec_checks.unknown('task_role', f'could not read the task definition{_why(error)}',
                                         'Allow ecs:DescribeTaskDefinition to have the task role checked'),
                     exec_checks.unknown('task_role_permissions', 'not checked: the task role is not known'))
            return None
        role = definition.get('taskRoleArn')
        self.add(exec_checks.ecs_task_role(role, task.get('launchType')))
        decisions, why = None, ''
        if role:
            try:
                decisions = self._simulate(role, list(exec_checks.SSMMESSAGES_ACTIONS))
            except CloudExecError as error:
                why = _why(error)
        self.add(exec_checks.ecs_task_role_permissions(role, decisions, why))
        return role

    def _simulate(self, source: str, actions: list[str], resource: str | None = None) -> dict[str, str]:
        kwargs: dict[str, t.Any] = {'PolicySourceArn': source, 'ActionNames': actions}
        if resource:
            kwargs['ResourceArns'] = [resource]
        answer = aws.call(self.client('iam'), 'simulate_principal_policy', **kwargs)
        return {r.get('EvalActionName'): r.get('EvalDecision') for r in answer.get('EvaluationResults') or []}

    def _network(self, task: dict[str, t.Any]) -> exec_checks.Check:
        region = str(self.session.region_name)
        details = {d.get('name'): d.get('value') for a in task.get('attachments') or [] if a.get('type') == 'ElasticNetworkInterface'
                   for d in a.get('details') or []}
        eni = details.get('networkInterfaceId')
        if not eni:
            return exec_checks.ecs_network(region, None, None, ' (the task has no awsvpc network interface)')
        try:
            ec2 = self.client('ec2')
            interfaces = aws.call(ec2, 'describe_network_interfaces', NetworkInterfaceIds=[eni]).get('NetworkInterfaces') or [{}]
            public_ip = (interfaces[0].get('Association') or {}).get('PublicIp')
            if public_ip:
                return exec_checks.ecs_network(region, public_ip, [])
            vpc = interfaces[0].get('VpcId')
            endpoints = aws.call(ec2, 'describe_vpc_endpoints', Filters=[{'Name': 'vpc-id', 'Values': [vpc]}]).get('VpcEndpoints') or []
        except CloudExecError as error:
            return exec_checks.ecs_network(region, None, None, _why(error))
        return exec_checks.ecs_network(region, None, [e.get('ServiceName') for e in endpoints if e.get('State', 'available') == 'available'])

    def _caller_permission(self, task: dict[str, t.Any]) -> exec_checks.Check:
        try:
            caller = aws.call(self.client('sts'), 'get_caller_identity')['Arn']
            decisions = self._simulate(exec_checks.caller_role_arn(caller), ['ecs:ExecuteCommand'], task.get('taskArn'))
        except CloudExecError as error:
            return exec_checks.ecs_caller_permission(None, _why(error))
        return exec_checks.ecs_caller_permission(decisions.get('ecs:ExecuteCommand'))


def main() -> None:
    module = CloudExecModule(
        argument_spec=aws_argument_spec(
            cluster={'type': 'str'},
            task={'type': 'str', 'required': True},
            container={'type': 'str'},
            fail_on_problems={'type': 'bool', 'default': False},
        ),
        supports_check_mode=True,
    )
    auth = module.aws_auth()
    try:
        preflight = AwsPreflight(auth, module.params)
        checks = preflight.run()
    except CloudExecError as exc:
        module.fail_error(exc)
    ready = exec_checks.ready(checks)
    problems = [f'{c.name}: {c.detail} -> {c.remedy}' for c in checks if c.failed]
    result = dict(changed=False, ready=ready, checks=[c.to_dict() for c in checks], problems=problems, **preflight.result)
    msg = exec_checks.summary(checks)
    if not ready and module.params['fail_on_problems']:
        module.fail_json(msg=f'ECS Exec cannot reach the target: {msg}', **result)
    module.exit_json(msg=msg if not ready else f'Ready for ECS Exec. {msg}', **result)


if __name__ == '__main__':
    main()
