#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: ali_ecs_invocation_info
short_description: Look up Cloud Assistant invocations and their per-instance results
version_added: 0.1.0
description:
  - Lists Cloud Assistant invocations (runs of a command, for example by M(cloudexec.core.ali_ecs_command)) with
    C(DescribeInvocations), and for each one every instance's result with C(DescribeInvocationResults), output decoded.
  - Pages through the API to the end (50 per call), or to O(max_invocations).
  - Filters combine; with none, the region's recent invocations are listed.
  - Scheduled invocations that are still active are listed too (the service gives them only to C(DescribeInvocations)
    with C(Timed=true), the others only without it, so the module asks both ways).
author:
  - cloudexec.core maintainers (@cloudexec)
options:
  invoke_id:
    description:
      - Only this invocation.
      - An invocation that does not exist in the region fails the task (C(InvalidInvokeId.NotFound)); one that exists but
        does not match the other filters gives an empty RV(invocations) list.
    type: str
  command_id:
    description:
      - Only invocations of this command.
    type: str
  instance_id:
    description:
      - Only invocations that ran on this instance, and only this instance's result in each.
    type: str
  status:
    description:
      - Only invocations in this overall state (the C(InvokeStatus) filter of C(DescribeInvocations)).
      - V(Finished) matches invocations whose instances are all done, whatever their result.
    type: str
    choices: [Running, Finished, Success, Failed, PartialFailed, Stopped, Stopping, Pending, Scheduled]
  include_output:
    description:
      - Read each instance's result (status, exit code, decoded output). With V(false) only the invocations' own fields
        and per-instance statuses are returned, which costs one call per 50 invocations.
    type: bool
    default: true
  max_invocations:
    description:
      - Stop after this many invocations (newest first). All of them when unset.
    type: int
extends_documentation_fragment:
  - cloudexec.core.alicloud_auth.modules
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads only, so it works the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The values of custom parameters the service keeps with an invocation are never returned by this module.
  - When an execution's C(dropped) is not 0 the service kept only the start of its output (what the agent sent while the
    script ran, up to about 8 KB) and its end, up to its quota, and dropped the middle; C(output_cut) says how much. To get
    a large output whole, see the notes of M(cloudexec.core.ali_ecs_command).
seealso:
  - module: cloudexec.core.ali_ecs_command
'''

EXAMPLES = r'''
- name: Start a job without waiting
  cloudexec.core.ali_ecs_command:
    instance_ids: [i-bp1demo000000000001]
    content: /opt/jobs/reindex.sh
    wait: false
  register: job

- name: Look at it later
  cloudexec.core.ali_ecs_invocation_info:
    invoke_id: "{{ job.invoke_id }}"
  register: info
  until: info.invocations[0].invocation_status in ['Success', 'Failed', 'PartialFailed', 'Stopped']
  retries: 60
  delay: 10

- name: Everything that failed on one instance
  cloudexec.core.ali_ecs_invocation_info:
    instance_id: i-bp1demo000000000002
    status: Failed
'''

RETURN = r'''
invocations:
  description: The invocations found, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    invoke_id:
      description: The invocation id.
      type: str
    command_id:
      description: The command that ran.
      type: str
    command_name:
      description: The command's name.
      type: str
    command_type:
      description: V(RunShellScript), V(RunBatScript) or V(RunPowerShellScript).
      type: str
    command_content:
      description: The script, decoded.
      type: str
    invocation_status:
      description: The overall status (V(Pending), V(Scheduled), V(Running), V(Success), V(Failed), V(PartialFailed), V(Stopped)...).
      type: str
    repeat_mode:
      description: V(Once), V(Period), V(NextRebootOnly) or V(EveryReboot).
      type: str
    frequency:
      description: The schedule of a V(Period) invocation.
      type: str
    creation_time:
      description: When the invocation was made.
      type: str
    timeout:
      description: The per-instance timeout in seconds.
      type: int
    username:
      description: The user the script runs as.
      type: str
    working_dir:
      description: The directory the script runs in.
      type: str
    container_id:
      description: The container the script runs in.
      type: str
    container_name:
      description: The container the script runs in.
      type: str
    instance_statuses:
      description: Instance id to its status.
      type: dict
    counts:
      description: How many instances are in each status.
      type: dict
    results:
      description:
        - Every instance's result, with the same fields as the results of M(cloudexec.core.ali_ecs_command), C(output_cut)
          included.
      returned: when O(include_output=true)
      type: list
      elements: dict
api_calls:
  description: The API calls this task made, by action.
  returned: always
  type: dict
'''

import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud
from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant as ca
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.module import CloudExecModule, alicloud_argument_spec


def _invocation(item: t.Any) -> dict:
    instances = (item.invoke_instances.invoke_instance if item.invoke_instances else None) or []
    statuses = {i.instance_id: i.invocation_status for i in instances}
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    # Parameters are left out on purpose: they may hold values the user marked secret.
    return {
        'invoke_id': item.invoke_id, 'command_id': item.command_id, 'command_name': item.command_name,
        'command_type': item.command_type, 'command_content': ca.decode_output(item.command_content),
        'invocation_status': item.invocation_status, 'repeat_mode': item.repeat_mode, 'frequency': item.frequency or None,
        'creation_time': item.creation_time, 'timeout': item.timeout, 'username': item.username or None,
        'working_dir': item.working_dir or None, 'container_id': item.container_id or None,
        'container_name': item.container_name or None, 'instance_statuses': statuses, 'counts': counts,
    }


def main() -> None:
    module = CloudExecModule(
        argument_spec=alicloud_argument_spec(
            invoke_id={'type': 'str'},
            command_id={'type': 'str'},
            instance_id={'type': 'str'},
            status={'type': 'str', 'choices': list(ca.INVOKE_STATUS_FILTERS)},
            include_output={'type': 'bool', 'default': True},
            max_invocations={'type': 'int'},
        ),
        supports_check_mode=True,
    )
    params = module.params
    auth = module.alicloud_auth()
    counter = ca.ApiCounter()
    invocations: list[dict] = []
    try:
        if params['max_invocations'] is not None and params['max_invocations'] < 1:
            raise ValidationError('max_invocations', 'it must be at least 1')
        client = alicloud.ecs_client(auth)
        filters = {'invoke_id': params['invoke_id'], 'command_id': params['command_id'], 'instance_id': params['instance_id'],
                   'invoke_status': params['status']}
        items = ca.lookup_invocations(client, auth, filters, counter, limit=params['max_invocations'])
        for item in items:
            entry = _invocation(item)
            if params['include_output']:
                results = ca.fetch_results(client, auth, invoke_id=item.invoke_id, instance_id=params['instance_id'], counter=counter)
                entry['results'] = [r.to_dict() for r in results]
            invocations.append(entry)
    except CloudExecError as exc:
        module.fail_error(exc, invocations=invocations, api_calls={'calls': dict(counter.calls)})
    module.exit_json(changed=False, invocations=invocations, api_calls={'calls': dict(counter.calls)})


if __name__ == '__main__':
    main()
