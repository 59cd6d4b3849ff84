#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: aws_ssm_command
short_description: Run a script on EC2 instances and hybrid managed nodes with SSM Run Command
version_added: 0.2.0
description:
  - Sends a script to SSM managed nodes (EC2 instances C(i-...) and on-premises servers of hybrid activations C(mi-...))
    with Run Command's C(SendCommand) and the C(AWS-RunShellScript) or C(AWS-RunPowerShellScript) document, without SSH
    and without any open port.
  - Targets are instance ids (at most 50) or tag targets, which the service resolves itself (any number of nodes),
    with O(max_concurrency) and O(max_errors) as the service applies them.
  - By default the module waits until every node has finished (or O(wait_timeout) passes) and returns each node's
    status, exit code, stdout and stderr. Waiting polls C(ListCommandInvocations) with details (one call per 50 nodes a
    round) and reads each node's output once, when it has ended, with C(GetCommandInvocation).
  - The results have the shape of M(cloudexec.core.ali_ecs_command)'s (RV(results), RV(counts), RV(failed_instances)), so a
    play can switch clouds; stdout and stderr also come apart, and with one instance RV(rc), RV(stdout) and RV(stderr)
    are at the top of the result as M(ansible.builtin.command) has them.
  - Runs on the controller (or wherever the task is delegated).
author:
  - cloudexec.core maintainers (@cloudexec)
options:
  instance_ids:
    description:
      - The managed nodes to run the script on, C(i-) or C(mi-) ids. At most 50 (the API's limit); repeated ids count once.
      - Exactly one of O(instance_ids) and O(targets) is required.
      - An id that is not a managed node of the account and region fails the whole task (C(InvalidInstanceId)) and nothing
        runs.
    type: list
    elements: str
  targets:
    description:
      - Tag targets, resolved by the service to the managed nodes that match all of them. At most 5.
      - Nodes that are stopped or not managed are not targets; a node of the wrong platform for O(document_name) is left out.
    type: list
    elements: dict
    suboptions:
      key:
        description:
          - V(tag:<name>) (nodes whose tag has one of O(targets[].values)), V(tag-key) (nodes that have one of these tag keys)
            or V(InstanceIds).
        type: str
        required: true
      values:
        description:
          - 1 to 50 values.
        type: list
        elements: str
        required: true
  document_name:
    description:
      - The Command document. V(AWS-RunShellScript) runs the commands with C(sh) on Linux and macOS;
        V(AWS-RunPowerShellScript) with PowerShell on Windows (or C(pwsh) on Linux).
    type: str
    choices: [AWS-RunShellScript, AWS-RunPowerShellScript]
    default: AWS-RunShellScript
  commands:
    description:
      - The script. A string is the whole script; a list is its lines. The agent writes them into one script file and runs
        it as root (C(sh -c _script.sh)), in O(working_directory).
    type: raw
    required: true
  working_directory:
    description:
      - The absolute directory on the node to run the script in. The agent's own directory (C(/usr/bin) on Linux) when unset.
      - A directory that does not exist fails the node's invocation.
    type: str
  execution_timeout:
    description:
      - Seconds the script may run on a node before the agent kills it, with its whole process group (status V(TimedOut),
        V(Execution Timed Out)). 5 to 172800.
      - The documents accept 1 to 4 too, but the agent then runs the script for 3600 seconds instead, so they are refused.
    type: int
    default: 3600
  delivery_timeout:
    description:
      - Seconds the service tries to deliver the command (C(TimeoutSeconds)). A node whose agent is not connected is
        V(Delayed) until this plus O(execution_timeout) has passed, then V(Delivery Timed Out). 30 to 2592000.
      - The service's default when unset (the API reference does not give it; the console fills in 600).
    type: int
  max_concurrency:
    description:
      - How many nodes run the script at once, a count (V(10)) or a percentage of the targets (V(25%)). The service's
        default (50) when unset.
    type: str
  max_errors:
    description:
      - How many failures (non-zero exit, execution timeout) are allowed before the service stops sending the command to
        more nodes, a count from V(0) or a percentage. Nodes not sent to then end as V(Cancelled) / V(Terminated).
      - The service's default (V(0)) when unset; deliveries that time out and undeliverable nodes do not count.
    type: str
  comment:
    description:
      - A comment shown with the command (at most 100 characters).
    type: str
  output_s3_bucket_name:
    description:
      - Also write each node's whole output to this S3 bucket. SSM returns only the first 24,000 characters of stdout (and
        8,000 of stderr) to the API; the bucket gets all of it (RV(results[].stdout_url)). The module does not read S3.
      - The nodes' instance profile needs write access to the bucket.
    type: str
  output_s3_key_prefix:
    description:
      - The key prefix in O(output_s3_bucket_name).
    type: str
  output_s3_region:
    description:
      - The bucket's region, when it is not the command's.
    type: str
  cloudwatch_output:
    description:
      - Also send the whole output to CloudWatch Logs (not truncated). The module does not read it.
    type: bool
    default: false
  cloudwatch_log_group_name:
    description:
      - The log group for O(cloudwatch_output); the service's default group (C(/aws/ssm/<document>)) when unset.
    type: str
  wait:
    description:
      - Wait for every node to finish and return the results. With V(false) the task returns RV(command_id) right after
        C(SendCommand); look at it later with M(cloudexec.core.aws_ssm_command_info).
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for all nodes. When they pass, the task sends C(CancelCommand), returns the results seen so far and
        fails saying which nodes did not finish.
    type: int
    default: 600
  fail_on:
    description:
      - When the task fails because of the results, as in M(cloudexec.core.ali_ecs_command).
      - V(any) fails when the script did not succeed on at least one node (non-zero exit, timeout, not delivered...).
      - V(all) fails only when it succeeded on none. V(none) never fails on results.
    type: str
    choices: [any, all, none]
    default: any
extends_documentation_fragment:
  - cloudexec.core.aws_auth.modules
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Checks the options, lists the managed nodes the command would go to (C(DescribeInstanceInformation)) and sends
      nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - SSM keeps the first 24,000 characters of stdout and (per the API reference) 8,000 of stderr; the agent ends a cut stream
    with C(--output truncated--). The module never hides it - it warns, sets RV(truncated_instances) and
    RV(results[].truncated). For the whole output use O(output_s3_bucket_name) or O(cloudwatch_output), which bypass the
    truncation, or write the output to a file and fetch it with the P(cloudexec.core.aws_ssm#connection) connection.
  - The IAM principal needs C(ssm:SendCommand) (on the document and the instances), C(ssm:ListCommandInvocations),
    C(ssm:GetCommandInvocation), C(ssm:ListCommands), C(ssm:CancelCommand), and C(ssm:DescribeInstanceInformation) for check
    mode.
  - The SSM endpoint is boto3's for SSM (E(AWS_ENDPOINT_URL_SSM) or the config file), not O(endpoint_url), which is ECS's.
  - Throttled calls are retried by botocore (O(retry_mode), O(max_attempts)), then by the module's poller.
seealso:
  - module: cloudexec.core.aws_ssm_command_info
  - module: cloudexec.core.ali_ecs_command
  - name: Run Command
    description: AWS Systems Manager Run Command.
    link: https://docs.aws.amazon.com/systems-manager/latest/userguide/run-command.html
'''

EXAMPLES = r'''
- name: Disk space on two instances
  cloudexec.core.aws_ssm_command:
    instance_ids: [i-0a1b2c3d4e5f60701, i-0a1b2c3d4e5f60702]
    commands: df -h /
  register: disk

- name: Reload nginx on the web fleet, two at a time, stopping after the first failure
  cloudexec.core.aws_ssm_command:
    targets:
      - {key: "tag:app", values: [web]}
    commands:
      - set -e
      - nginx -t
      - systemctl reload nginx
    max_concurrency: "2"
    max_errors: "0"
    execution_timeout: 120

- name: A report larger than SSM returns, kept whole in S3
  cloudexec.core.aws_ssm_command:
    instance_ids: [mi-0a1b2c3d4e5f60801]
    commands: journalctl -u app --since today
    output_s3_bucket_name: my-ssm-output
    output_s3_key_prefix: reports

- name: Start a long job and look at it later
  cloudexec.core.aws_ssm_command:
    instance_ids: [i-0a1b2c3d4e5f60701]
    commands: /opt/jobs/reindex.sh
    execution_timeout: 7200
    wait: false
  register: job

- name: Its results
  cloudexec.core.aws_ssm_command_info:
    command_id: "{{ job.command_id }}"
'''

RETURN = r'''
command_id:
  description: The command's id (for M(cloudexec.core.aws_ssm_command_info) and the console).
  returned: when the command was sent
  type: str
  sample: 0b6c1e5d-7f0e-4a5b-9c3d-2e1f0a9b8c7d
instance_ids:
  description: The instances given in O(instance_ids), repeats removed; with O(targets), the nodes that ran the command.
  returned: always
  type: list
  elements: str
status:
  description: The command's own status (C(ListCommands)), for example V(Success) (also when some nodes were not
    delivered, with C(Incomplete) details), V(Failed), V(TimedOut) or V(Cancelled).
  returned: when the module waited
  type: str
results:
  description: One entry per node, in O(instance_ids) order (with O(targets), by instance id).
  returned: when the module waited
  type: list
  elements: dict
  contains:
    instance_id:
      description: The node.
      type: str
    instance_name:
      description: The node's host name, as SSM knows it.
      type: str
    command_id:
      description: The command.
      type: str
    status:
      description: V(Success), V(Failed), V(TimedOut), V(Cancelled), or while running V(Pending), V(InProgress), V(Delayed),
        V(Cancelling).
      type: str
    status_details:
      description: The service's detail, for example V(Success), V(Failed), V(Execution Timed Out), V(Delivery Timed Out),
        V(Undeliverable), V(Terminated) (not sent because of O(max_errors)), V(Cancelled).
      type: str
    exit_code:
      description: The script's exit code (C(ResponseCode)); V(null) when it never ran or has not ended. 137 when the agent
        killed it (timeout, cancel).
      type: int
    rc:
      description: The same as RV(results[].exit_code).
      type: int
    stdout:
      description: The script's standard output as SSM keeps it (the first 24,000 characters).
      type: str
    stderr:
      description: The script's standard error as SSM keeps it (the first 8,000 characters per the API reference).
      type: str
    stdout_lines:
      description: RV(results[].stdout) split into lines.
      type: list
      elements: str
    stderr_lines:
      description: RV(results[].stderr) split into lines.
      type: list
      elements: str
    output:
      description: stdout followed by stderr, as one text (the field M(cloudexec.core.ali_ecs_command) has).
      type: str
    truncated:
      description: Whether SSM cut each stream (it then ends with C(--output truncated--)).
      type: dict
      contains:
        stdout:
          description: stdout was cut.
          type: bool
        stderr:
          description: stderr was cut.
          type: bool
    stdout_url:
      description: Where the whole stdout is in S3, with O(output_s3_bucket_name).
      type: str
    stderr_url:
      description: Where the whole stderr is in S3, with O(output_s3_bucket_name).
      type: str
    error_code:
      description: V(null) on success, else RV(results[].status_details).
      type: str
    error_info:
      description: What RV(results[].error_code) means.
      type: str
    start_time:
      description: When the script started.
      type: str
    finish_time:
      description: When the script ended.
      type: str
counts:
  description: How many nodes ended in each status.
  returned: when the module waited
  type: dict
  sample: {Success: 3, Failed: 1}
failed_instances:
  description: The nodes where the script did not succeed.
  returned: when the module waited
  type: list
  elements: str
truncated_instances:
  description: The nodes whose stdout or stderr SSM truncated.
  returned: when the module waited
  type: list
  elements: str
rc:
  description:
    - With exactly one node, its exit code.
    - Not with O(fail_on=none), since Ansible fails any task whose RV(rc) is not 0; RV(exit_code) has it then.
  returned: when the module waited on one node
  type: int
exit_code:
  description: With exactly one node, its exit code.
  returned: when the module waited on one node
  type: int
stdout:
  description: With exactly one node, its stdout.
  returned: when the module waited on one node
  type: str
stderr:
  description: With exactly one node, its stderr.
  returned: when the module waited on one node
  type: str
stdout_lines:
  description: With exactly one node, its stdout in lines.
  returned: when the module waited on one node
  type: list
  elements: str
stderr_lines:
  description: With exactly one node, its stderr in lines.
  returned: when the module waited on one node
  type: list
  elements: str
truncated:
  description: With exactly one node, whether SSM cut its stdout and stderr.
  returned: when the module waited on one node
  type: dict
targets:
  description: In check mode, the managed nodes the command would go to, with their PingStatus and platform.
  returned: in check mode
  type: list
  elements: dict
would_run:
  description: In check mode, what would be sent, in words.
  returned: in check mode
  type: str
api_calls:
  description: The API calls this task made, by action, and the poll rounds with their calls.
  returned: always
  type: dict
  sample: {calls: {SendCommand: 1, ListCommandInvocations: 4, GetCommandInvocation: 2}, poll_rounds: 4, calls_per_round: [1, 1, 2, 2]}
msg:
  description: What happened, or why the task failed.
  returned: always
  type: str
error:
  description: The provider error behind a failure (code, message, remedy, request id).
  returned: on API failure
  type: dict
'''

from ansible_collections.cloudexec.core.plugins.module_utils import ssm_command as sc
from ansible_collections.cloudexec.core.plugins.module_utils.cloud_assistant import ApiCounter
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.module import CloudExecModule, aws_argument_spec


def main() -> None:
    module = CloudExecModule(
        argument_spec=aws_argument_spec(
            instance_ids={'type': 'list', 'elements': 'str'},
            targets={'type': 'list', 'elements': 'dict', 'options': {
                'key': {'type': 'str', 'required': True, 'no_log': False},
                'values': {'type': 'list', 'elements': 'str', 'required': True},
            }},
            document_name={'type': 'str', 'default': sc.DEFAULT_DOCUMENT, 'choices': list(sc.DOCUMENTS)},
            commands={'type': 'raw', 'required': True},
            working_directory={'type': 'str'},
            execution_timeout={'type': 'int', 'default': sc.DEFAULT_EXECUTION_TIMEOUT},
            delivery_timeout={'type': 'int'},
            max_concurrency={'type': 'str'},
            max_errors={'type': 'str'},
            comment={'type': 'str'},
            output_s3_bucket_name={'type': 'str'},
            output_s3_key_prefix={'type': 'str', 'no_log': False},
            output_s3_region={'type': 'str'},
            cloudwatch_output={'type': 'bool', 'default': False},
            cloudwatch_log_group_name={'type': 'str'},
            wait={'type': 'bool', 'default': True},
            wait_timeout={'type': 'int', 'default': 600},
            fail_on={'type': 'str', 'default': 'any', 'choices': list(sc.FAIL_ON)},
        ),
        mutually_exclusive=[('instance_ids', 'targets')],
        required_one_of=[('instance_ids', 'targets')],
        supports_check_mode=True,
    )
    params = module.params
    counter = ApiCounter()
    result: dict = {'changed': False, 'instance_ids': list(dict.fromkeys(params['instance_ids'] or []))}
    auth = module.aws_auth()
    try:
        spec = sc.CommandSpec.from_params(params)
        if params['wait_timeout'] < 1:
            raise ValidationError('wait_timeout', f'{params["wait_timeout"]} is below the minimum of 1 second')
        client = sc.ssm_client(auth)
        if module.check_mode:
            targets = sc.preview_targets(client, spec, counter)
            result.update(changed=True, targets=targets, would_run=spec.describe(), api_calls=sc.api_calls(counter))
            module.exit_json(msg=f'Check mode: would send {spec.describe()} ({len(targets)} managed node(s) match now); '
                                 'nothing was sent', **result)
        command = sc.send(client, spec, counter)
    except CloudExecError as exc:
        module.fail_error(exc, api_calls=sc.api_calls(counter), **result)

    command_id = command['CommandId']
    result.update(changed=True, command_id=command_id)
    if not params['wait']:
        module.exit_json(msg=f'Command {command_id} sent ({spec.document_name}); look at it with aws_ssm_command_info',
                         api_calls=sc.api_calls(counter), **result)
    try:
        outcome = sc.wait_for(client, command_id, params['wait_timeout'], counter, expected=spec.instance_ids)
    except CloudExecError as exc:
        module.fail_error(exc, api_calls=sc.api_calls(counter), **result)
    if not spec.instance_ids:
        result['instance_ids'] = [r.instance_id for r in outcome.results]
    result.update(results=[r.to_dict() for r in outcome.results], counts=outcome.counts,
                  failed_instances=[r.instance_id for r in outcome.failed],
                  truncated_instances=[r.instance_id for r in outcome.truncated],
                  status=outcome.command_status,
                  api_calls=sc.api_calls(counter, outcome))
    result.update(sc.single_instance_fields(outcome, with_rc=params['fail_on'] != 'none'))
    warning = sc.truncation_warning(outcome)
    if warning:
        module.warn(warning)
    if outcome.timed_out:
        module.fail_json(msg=sc.deadline_message(outcome, params['wait_timeout']), **result)
    if not outcome.results:
        module.fail_json(msg=f'No managed node matched the targets of command {command_id}: check the tags and that the nodes '
                             'are online (DescribeInstanceInformation)', **result)
    if sc.should_fail(outcome, params['fail_on']):
        module.fail_json(msg=sc.failure_message(outcome), **result)
    succeeded = outcome.counts.get('Success', 0)
    module.exit_json(msg=f'The command succeeded on {succeeded} of {len(outcome.results)} instances', **result)


if __name__ == '__main__':
    main()
