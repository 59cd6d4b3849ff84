#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: ali_exec_check
short_description: Check that an ECI container or an ECS instance can run commands, and say how to fix what stops it
version_added: 0.1.0
description:
  - Runs the preflight checks of this collection's Alibaba Cloud transports against one target and returns every check
    with its status and, for problems, the remedy in a sentence. Nothing runs on the target.
  - O(service=eci) checks an Elastic Container Instance container, the target of M(cloudexec.core.ali_eci_exec) and
    the C(cloudexec.core.ali_eci) connection. V(credentials) the credentials work (C(DescribeContainerGroups)).
    V(group_exists) the group exists. V(group_running) it is V(Running). V(container) the container exists, or is the
    only one. V(container_running) it is V(Running). V(container_ready) it passes its readiness probe (only a V(warn),
    exec still works).
  - O(service=ecs) checks an ECS instance for Cloud Assistant, the target of M(cloudexec.core.ali_ecs_command) and the
    C(cloudexec.core.ali_assist) connection. V(credentials) the credentials work (C(DescribeInstances)).
    V(instance_exists) the instance exists in the region. V(instance_running) it is V(Running). V(assistant_online)
    C(DescribeCloudAssistantStatus) says the agent is online. V(assistant_version) the agent is at least
    O(min_agent_version). V(os_type) O(command_type) runs on the instance's OS. V(session_manager) whether the agent
    supports Cloud Assistant's session manager (V(pass) or V(warn); this collection does not need it).
  - A check that an earlier failure makes pointless is V(unknown) with the reason.
  - The task does not fail because a check failed; RV(ready) says whether one did. Set O(fail_on_problems=true) to fail
    the task, with every failed check and its remedy in the message.
  - One module serves both services so that a play has one Alibaba preflight with one set of credentials;
    O(service) picks the checks.
author:
  - cloudexec.core maintainers (@cloudexec)
options:
  service:
    description:
      - What to check. V(eci) for a container of an ECI container group, V(ecs) for an ECS instance (Cloud Assistant).
    type: str
    choices: [eci, ecs]
    required: true
  container_group_id:
    description:
      - The container group to check (O(service=eci)). One of O(container_group_id) and O(container_group_name) is required.
    type: str
  container_group_name:
    description:
      - The name of the container group to check (O(service=eci)); it must name exactly one group in the region.
    type: str
  container_name:
    description:
      - The container to check (O(service=eci)). Required only when the group has more than one container.
    type: str
  instance_id:
    description:
      - The ECS instance to check (O(service=ecs)).
    type: str
  command_type:
    description:
      - The Cloud Assistant script type that will run (O(service=ecs)); checked against the instance's OS.
    type: str
    choices: [RunShellScript, RunBatScript, RunPowerShellScript]
    default: RunShellScript
  min_agent_version:
    description:
      - The oldest Cloud Assistant agent version accepted (O(service=ecs)).
      - The default is a conservative floor chosen by this collection, not an Alibaba requirement; Alibaba documents
        minimum versions per feature.
    type: str
    default: 2.0.0
  fail_on_problems:
    description:
      - Fail the task when any check has status V(fail). The message lists each failed check and its remedy.
    type: bool
    default: false
extends_documentation_fragment:
  - cloudexec.core.alicloud_auth.modules
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads; check mode runs every check the same way.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The module only reads. It calls C(eci:DescribeContainerGroups), or C(ecs:DescribeInstances) and
    C(ecs:DescribeCloudAssistantStatus).
seealso:
  - module: cloudexec.core.aws_ecs_exec_check
  - module: cloudexec.core.ali_eci_exec
  - module: cloudexec.core.ali_ecs_command
'''

EXAMPLES = r'''
- name: Check an ECI container
  cloudexec.core.ali_exec_check:
    service: eci
    container_group_id: eci-bp1demo00000000002
    container_name: app
  register: preflight

- name: Check an instance for Cloud Assistant, and stop here when it cannot run commands
  cloudexec.core.ali_exec_check:
    service: ecs
    instance_id: i-bp1demo000000000001
    fail_on_problems: true
'''

RETURN = r'''
ready:
  description: Whether no check failed (warnings and unknowns do not count).
  returned: always
  type: bool
  sample: true
checks:
  description: Every check, in the order they ran.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's name, for example V(assistant_online).
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
problems:
  description: "The failed checks, one line each: C(name: detail -> remedy)."
  returned: always
  type: list
  elements: str
container_group_id:
  description: The container group's ID (O(service=eci)).
  returned: when the group was found
  type: str
container_name:
  description: The container that was checked (O(service=eci)).
  returned: when the container was chosen
  type: str
instance_id:
  description: The instance that was checked (O(service=ecs)).
  returned: when O(service=ecs)
  type: str
msg:
  description: A one-line summary.
  returned: always
  type: str
'''

import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud, cloud_assistant, eci, exec_checks
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.module import CloudExecModule, alicloud_argument_spec

ECI_NAMES = ('credentials', 'group_exists', 'group_running', 'container', 'container_running', 'container_ready')
ECS_NAMES = ('credentials', 'instance_exists', 'instance_running', 'assistant_online', 'assistant_version', 'os_type', 'session_manager')


def _credentials_failed(error: CloudExecError) -> exec_checks.Check:
    return exec_checks.failed('credentials', f'{error.code}: {error.message}',
                              error.remedy or 'Check the credentials, alicloud_region and the endpoint options', error.code)


def _fill(checks: list[exec_checks.Check], names: t.Sequence[str]) -> list[exec_checks.Check]:
    """Every check named, in order: those not made are unknown, naming the failure that stopped them."""
    made = {check.name: check for check in checks}
    blocker = next((check for check in checks if check.failed), None)
    reason = f'not checked: {blocker.name} failed' if blocker else 'not checked'
    return [made.get(name) or exec_checks.unknown(name, reason) for name in names]


def check_eci(auth: alicloud.AlicloudAuth, params: dict[str, t.Any], result: dict[str, t.Any]) -> list[exec_checks.Check]:
    """The ECI checks (eci.describe_groups, then the same judgements eci.resolve_target makes)."""
    group_id, group_name = params['container_group_id'], params['container_group_name']
    if bool(group_id) == bool(group_name):
        raise ValidationError('container_group_id', 'give exactly one of container_group_id and container_group_name')
    checks: list[exec_checks.Check] = []
    try:
        groups = eci.describe_groups(alicloud.eci_client(auth), auth, group_id=group_id, group_name=group_name)
    except CloudExecError as error:
        return _fill([_credentials_failed(error)], ECI_NAMES)
    checks.append(exec_checks.passed('credentials', 'the credentials are valid'))
    groups = [g for g in groups if (g.get('ContainerGroupId') == group_id if group_id else g.get('ContainerGroupName') == group_name)]
    if len(groups) != 1:
        detail = (f'no container group {group_id or group_name} in region {auth.alicloud_region}' if not groups else
                  f'{len(groups)} container groups are named {group_name!r}')
        remedy = ('Check the id or name and alicloud_region; deleted groups disappear from ECI' if not groups else
                  'Use container_group_id to pick one')
        checks.append(exec_checks.failed('group_exists', detail, remedy, 'ContainerGroupNotFound'))
        return _fill(checks, ECI_NAMES)
    group = groups[0]
    result['container_group_id'] = group.get('ContainerGroupId')
    checks.append(exec_checks.passed('group_exists', f'container group {group.get("ContainerGroupId")} exists'))
    checks.append(exec_checks.eci_group_running(group))
    chosen, check = exec_checks.choose_container(group.get('Containers') or [], params['container_name'],
                                                 f'container group {group.get("ContainerGroupId")}', key='Name')
    checks.append(check)
    if chosen is not None:
        result['container_name'] = chosen.get('Name')
        checks.append(exec_checks.eci_container_running(group, chosen))
        checks.append(exec_checks.eci_container_ready(chosen))
    return _fill(checks, ECI_NAMES)


def check_ecs(auth: alicloud.AlicloudAuth, params: dict[str, t.Any], result: dict[str, t.Any]) -> list[exec_checks.Check]:
    """The Cloud Assistant checks (cloud_assistant.check_targets, then the judgements its preflight makes and more)."""
    instance_id = params['instance_id']
    if not instance_id:
        raise ValidationError('instance_id', 'service ecs needs instance_id')
    result['instance_id'] = instance_id
    try:
        target = cloud_assistant.check_targets(alicloud.ecs_client(auth), auth, [instance_id])[0]
    except CloudExecError as error:
        return _fill([_credentials_failed(error)], ECS_NAMES)
    checks = [exec_checks.passed('credentials', 'the credentials are valid'), exec_checks.instance_exists(target.status)]
    if target.status is None:
        return _fill(checks, ECS_NAMES)
    checks.append(exec_checks.instance_running(target.status))
    checks.append(exec_checks.script_type_fits(target.os_type, params['command_type']))
    if target.status == 'Running':
        checks.append(exec_checks.assistant_online(target.agent_online, target.last_heartbeat))
        checks.append(exec_checks.assistant_version(target.agent_version, params['min_agent_version']))
        checks.append(exec_checks.session_manager(target.session_manager))
    return _fill(checks, ECS_NAMES)


def main() -> None:
    module = CloudExecModule(
        argument_spec=alicloud_argument_spec(
            service={'type': 'str', 'required': True, 'choices': ['eci', 'ecs']},
            container_group_id={'type': 'str'},
            container_group_name={'type': 'str'},
            container_name={'type': 'str'},
            instance_id={'type': 'str'},
            command_type={'type': 'str', 'default': 'RunShellScript', 'choices': list(cloud_assistant.COMMAND_TYPES)},
            min_agent_version={'type': 'str', 'default': exec_checks.MIN_CLOUD_ASSISTANT},
            fail_on_problems={'type': 'bool', 'default': False},
        ),
        mutually_exclusive=[('container_group_id', 'container_group_name')],
        required_if=[('service', 'ecs', ('instance_id',)), ('service', 'eci', ('container_group_id', 'container_group_name'), True)],
        supports_check_mode=True,
    )
    auth = module.alicloud_auth()
    result: dict[str, t.Any] = {'changed': False}
    try:
        if module.params['service'] == 'eci':
            checks = check_eci(auth, module.params, result)
        else:
            checks = check_ecs(auth, module.params, result)
    except CloudExecError as exc:
        module.fail_error(exc, **result)
    ready = exec_checks.ready(checks)
    result.update(ready=ready, checks=[c.to_dict() for c in checks], problems=[f'{c.name}: {c.detail} -> {c.remedy}' for c in checks if c.failed])
    msg = exec_checks.summary(checks)
    what = 'ECI exec' if module.params['service'] == 'eci' else 'Cloud Assistant'
    if not ready and module.params['fail_on_problems']:
        module.fail_json(msg=f'{what} cannot reach the target: {msg}', **result)
    module.exit_json(msg=msg if not ready else f'Ready for {what}. {msg}', **result)


if __name__ == '__main__':
    main()
