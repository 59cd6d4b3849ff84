#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: aws_ssm_command_info
short_description: Look up an SSM Run Command command and its per-node results
version_added: 0.2.0
description:
  - Reads a command sent with SSM Run Command (for example by M(cloudexec.core.aws_ssm_command) with O(cloudexec.core.aws_ssm_command#module:wait=false))
    and each node's result, in the same shape as M(cloudexec.core.aws_ssm_command)'s RV(cloudexec.core.aws_ssm_command#module:results).
  - One C(ListCommands) call, the pages of C(ListCommandInvocations) with details (50 nodes a page), and one
    C(GetCommandInvocation) per node that has ended (the only call that returns the output).
  - Does not wait. Nodes still running show V(Pending), V(InProgress) or V(Delayed) and no output. Poll with C(until) on
    RV(finished).
author:
  - cloudexec.core maintainers (@cloudexec)
options:
  command_id:
    description:
      - The command (36 characters, as RV(cloudexec.core.aws_ssm_command#module:command_id) returned it).
      - A command that is not found in the region fails the task. SSM shows a new command after a moment, and keeps
        commands for 30 days.
    type: str
    required: true
  instance_id:
    description:
      - Only this node's result.
    type: str
  include_output:
    description:
      - Read the output of the nodes that have ended (C(GetCommandInvocation), one call per node). With V(false) only the
        statuses and exit codes are returned.
    type: bool
    default: true
extends_documentation_fragment:
  - cloudexec.core.aws_auth.modules
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads only, so it works the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The command's document parameters (its commands) are not returned.
  - SSM truncates each stream (stdout at 24,000 characters, stderr at 8,000 per the API reference); each entry of RV(results) says
    when (C(truncated)). See the notes of M(cloudexec.core.aws_ssm_command).
seealso:
  - module: cloudexec.core.aws_ssm_command
'''

EXAMPLES = r'''
- name: Start a job without waiting
  cloudexec.core.aws_ssm_command:
    instance_ids: [i-0a1b2c3d4e5f60701]
    commands: /opt/jobs/reindex.sh
    wait: false
  register: job

- name: Wait for it, one look every 10 seconds
  cloudexec.core.aws_ssm_command_info:
    command_id: "{{ job.command_id }}"
  register: info
  until: info.finished
  retries: 60
  delay: 10

- name: One node's result only
  cloudexec.core.aws_ssm_command_info:
    command_id: "{{ job.command_id }}"
    instance_id: i-0a1b2c3d4e5f60701
'''

RETURN = r'''
command:
  description: The command as C(ListCommands) shows it.
  returned: always
  type: dict
  contains:
    command_id:
      description: The command.
      type: str
    status:
      description: V(Pending), V(InProgress), V(Success), V(Cancelled), V(Failed), V(TimedOut) or V(Cancelling).
      type: str
    status_details:
      description: The service's detail (for example V(Incomplete), V(Delivery Timed Out)).
      type: str
    document_name:
      description: The document.
      type: str
    comment:
      description: The command's comment.
      type: str
    requested:
      description: When it was sent.
      type: str
    target_count:
      description: How many nodes it went to.
      type: int
    completed_count:
      description: How many of them have ended.
      type: int
    error_count:
      description: How many failed or timed out.
      type: int
    delivery_timed_out_count:
      description: How many were never delivered.
      type: int
    max_concurrency:
      description: The command's MaxConcurrency.
      type: str
    max_errors:
      description: The command's MaxErrors.
      type: str
    instance_ids:
      description: The instance ids it was sent to (empty for tag targets).
      type: list
      elements: str
    timeout_seconds:
      description: The delivery timeout.
      type: int
finished:
  description: Whether every node (or O(instance_id)) has ended.
  returned: always
  type: bool
results:
  description: One entry per node, the same fields as RV(cloudexec.core.aws_ssm_command#module:results).
  returned: always
  type: list
  elements: dict
counts:
  description: How many nodes are in each status.
  returned: always
  type: dict
failed_instances:
  description: The nodes that ended without success.
  returned: always
  type: list
  elements: str
truncated_instances:
  description: The nodes whose stdout or stderr SSM truncated.
  returned: always
  type: list
  elements: str
exit_code:
  description: With exactly one node, its exit code (there is no C(rc), as the lookup itself does not fail on the script's exit code).
  returned: with one node
  type: int
stdout:
  description: With exactly one node, its stdout.
  returned: with one node
  type: str
stderr:
  description: With exactly one node, its stderr.
  returned: with one node
  type: str
api_calls:
  description: The API calls this task made, by action.
  returned: always
  type: dict
msg:
  description: Why the task failed.
  returned: on failure
  type: str
error:
  description: The provider error behind a failure (code, message, remedy, request id).
  returned: on API failure
  type: dict
'''

import re

from ansible_collections.cloudexec.core.plugins.module_utils import ssm_command as sc
from ansible_collections.cloudexec.core.plugins.module_utils.cloud_assistant import ApiCounter
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.module import CloudExecModule, aws_argument_spec


def main() -> None:
    module = CloudExecModule(
        argument_spec=aws_argument_spec(
            command_id={'type': 'str', 'required': True},
            instance_id={'type': 'str'},
            include_output={'type': 'bool', 'default': True},
        ),
        supports_check_mode=True,
    )
    params = module.params
    counter = ApiCounter()
    auth = module.aws_auth()
    try:
        if not re.match(r'^[0-9a-fA-F-]{36}$', params['command_id']):
            raise ValidationError('command_id', f'{params["command_id"]!r} is not a command id (36 characters, a UUID)')
        client = sc.ssm_client(auth)
        command, results = sc.lookup(client, params['command_id'], counter, instance_id=params['instance_id'],
                                     read_output=params['include_output'])
    except CloudExecError as exc:
        module.fail_error(exc, api_calls=sc.api_calls(counter))
    outcome = sc.RunOutcome(command_id=params['command_id'], results=results)
    summary = sc.command_summary(command)
    finished = all(r.final for r in results) and (bool(results) if params['instance_id'] else
                                                  summary['status'] in sc.FINAL_COMMAND_STATUSES)
    result = {'changed': False, 'command': summary, 'finished': finished, 'results': [r.to_dict() for r in results],
              'counts': outcome.counts, 'failed_instances': [r.instance_id for r in outcome.failed if r.final],
              'truncated_instances': [r.instance_id for r in outcome.truncated], 'api_calls': sc.api_calls(counter)}
    result.update(sc.single_instance_fields(outcome, with_rc=False))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
