#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: ali_ecs_command
short_description: Run a script on Alibaba Cloud ECS instances through Cloud Assistant
version_added: 0.1.0
description:
  - Runs a shell, Bat or PowerShell script on one or many ECS instances with Cloud Assistant (C(RunCommand), or
    C(InvokeCommand) for an existing command), without SSH and without any open port.
  - Any number of instances may be given; they are sent in batches of 100 (the API's limit), one invocation per batch.
  - Before anything runs, every target is checked. It must exist in the region, be V(Running), and have its Cloud
    Assistant agent online (C(DescribeCloudAssistantStatus)). If any target fails the check, nothing runs and the task
    fails naming the instances and why.
  - By default the module waits until every instance has finished (or O(wait_timeout) passes) and returns each
    instance's status, exit code and decoded output. Waiting polls adaptively (the first checks come after half a
    second, then back off to 5 seconds) and one poll round costs one C(DescribeInvocations) call per batch,
    however many instances the batch holds.
  - Runs on the controller (or wherever the task is delegated).
author:
  - cloudexec.core maintainers (@cloudexec)
options:
  instance_ids:
    description:
      - The instances to run the script on. Any number; repeated ids count once.
      - At least one of O(instance_ids) and O(tags) is required; with both, the instances of both are targets.
    type: list
    elements: str
  tags:
    description:
      - Target the V(Running) instances of the region that carry all these tags (C(DescribeInstances) with tag filters).
      - A tag whose value is V(null) matches the key with any value.
      - Instances in other states are left out here (unlike O(instance_ids), where a stopped instance is an error).
    type: dict
  type:
    description:
      - The script type. V(RunShellScript) for Linux; V(RunBatScript) or V(RunPowerShellScript) for Windows.
      - Ignored with O(command_id), whose command has its own type.
    type: str
    choices: [RunShellScript, RunBatScript, RunPowerShellScript]
    default: RunShellScript
  content:
    description:
      - The script, as plain text. The module encodes it (Base64), so any characters travel unchanged.
      - At most 24 KB after Base64 encoding (about 18 KB of text), or 18 KB (about 13.5 KB of text) with O(keep_command),
        the service's limits. With O(parameters) the limit counts the script with their values filled in. The task fails
        before any call when the script is larger, naming the limit.
      - Mutually exclusive with O(command_id); one of them is required.
      - With O(parameters), C({{name}}) placeholders in the script are filled in by the service. A script defines at
        most 20 of them; names are letters, digits, C(_) and C(-), at most 64 bytes, case-insensitive; the C(acs::)
        prefix is kept for the built-in ones such as C({{ACS::InstanceId}}).
      - In a container (O(container_id), O(container_name)) the script runs with C(/bin/sh -c), so a C(#!) line does
        not choose its interpreter there.
    type: str
  command_id:
    description:
      - Invoke this existing Cloud Assistant command (C(InvokeCommand)) instead of running O(content).
    type: str
  working_dir:
    description:
      - The absolute directory on the instance to run the script in. The agent's default (C(/root) on Linux) when unset.
      - Cloud Assistant ignores it in a container, so it cannot be set with O(container_id) or O(container_name); change
        directory in the script instead.
    type: str
  timeout:
    description:
      - Seconds the script may run on an instance before the agent kills it (status V(Timeout)). 1 to 86400, at least
        10 with O(command_id).
      - The agent kills only the script's main process (SIGKILL); processes the script started may go on running.
    type: int
    default: 60
  username:
    description:
      - The user to run the script as on the instance. V(root) (Linux) or V(System) (Windows) when unset.
      - Cloud Assistant ignores it in a container, so it cannot be set with O(container_id) or O(container_name).
    type: str
  parameters:
    description:
      - Values of the custom parameters (C({{name}}) in the script). Giving any turns the service's custom parameters on
        (C(EnableParameter)).
      - At most 10 values, each for a C({{name}}) the script uses, and every C({{name}}) the script uses needs one.
        Names are at most 64 characters and case-insensitive.
      - The values are never logged and are masked in the task result (C(no_log)). The service does keep them with the
        invocation, and C(DescribeInvocations) shows them to anyone allowed to call it, so put real secrets in a secret
        store and fetch them in the script instead where that matters.
    type: dict
  container_id:
    description:
      - Run the script in this container on the instance instead of on the host (C(/bin/sh -c) in the container).
      - The container's 64 hexadecimal characters, optionally after C(docker://), C(containerd://) or C(cri-o://).
    type: str
  container_name:
    description:
      - Run the script in the container with this name on the instance.
    type: str
  name:
    description:
      - The command's name (shown in the console and by M(cloudexec.core.ali_ecs_invocation_info)).
    type: str
  description:
    description:
      - The command's description.
    type: str
  keep_command:
    description:
      - Keep the command created for this run, so it can be invoked again with O(command_id).
      - With more than 100 instances each batch creates its own command; RV(command_ids) lists them.
    type: bool
    default: false
  client_token:
    description:
      - A token that makes the run idempotent. Calling again with the same token and the same request returns the first
        run's invocation instead of running the script again, so a retried task does not run it twice.
      - With more than one batch, each batch uses the token with C(-bNNN) appended.
      - A new token is made for every task run when unset (each call of a run is still idempotent).
      - The same token with a changed script or target list is refused (C(IdempotentParameterMismatch)).
      - Up to 64 ASCII characters.
    type: str
  repeat_mode:
    description:
      - V(Once) runs now. V(Period) runs on the schedule in O(frequency); V(NextRebootOnly) and V(EveryReboot) run when the
        instance starts. V(DryRun) checks the parameters, the instances and their agent, and runs nothing.
      - Scheduled runs are not waited for; the task returns the invocation ids (look at them later with
        M(cloudexec.core.ali_ecs_invocation_info)).
    type: str
    choices: [Once, Period, NextRebootOnly, EveryReboot, DryRun]
    default: Once
  frequency:
    description:
      - The schedule of a V(Period) run, for example V(rate(5m\)), V(at(2026-01-01 10:00:00 GMT+8:00\)) or a cron
        expression such as V(0 */20 * * * *).
      - A V(rate(\)) is between 60 seconds and 7 days and longer than O(timeout); the runs of a cron expression are at least
        10 seconds and O(timeout) apart. The task fails before any call otherwise.
      - Only with O(repeat_mode=Period) (the service would make any run with a frequency periodic).
    type: str
  wait:
    description:
      - Wait for every instance to finish and return the results. With V(false) the task returns the invocation ids
        right after starting the script.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for all instances. When they pass, the task sends C(StopInvocation) for the invocations that
        have not finished, returns the results seen so far, and fails saying which instances did not finish.
      - C(StopInvocation) cancels runs that have not started. Alibaba's API reference says it does not interrupt a run
        that has started; the agent kills such a run's main process only. Either way what the script started may still
        be running, and the task says so rather than that it stopped the script.
    type: int
    default: 600
  fail_on:
    description:
      - When the task fails because of the results.
      - V(any) fails when the script did not succeed on at least one instance (non-zero exit, timeout, not delivered...).
      - V(all) fails only when it succeeded on none.
      - V(none) never fails on results; look at RV(results) and RV(counts) yourself.
      - The failure message names the failed instances and why.
    type: str
    choices: [any, all, none]
    default: any
extends_documentation_fragment:
  - cloudexec.core.alicloud_auth.modules
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Checks the targets (they exist, are Running and their Cloud Assistant agent is online) and runs nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - Cloud Assistant keeps only part of a long output (stdout and stderr together). The agent sends the start while the
    script runs (up to about 6-8 KB, nothing for a script that ends within a second, a scheduled run or a container), then
    the end, up to a quota the service sets (24 KB in the documentation, 12000 bytes at least on the agent); the middle
    is dropped and its size reported as RV(results[].dropped). The module never hides it - it warns, sets
    RV(dropped_instances) and says what is missing in RV(results[].output_cut).
  - To get large output whole, write it to a file in the script (for example C(cmd > /var/tmp/out.log 2>&1)) and fetch
    the file with the M(ansible.builtin.fetch) module through the P(cloudexec.core.ali_assist#connection) connection,
    which reads it back in pages and checks it; or read it in parts of under 8 KB with further tasks; or let Cloud
    Assistant deliver the whole output to an OSS bucket (C(OssOutputDelivery), outside this module).
  - stdout and stderr arrive as one text (the agent captures them together).
  - The RAM principal needs C(ecs:RunCommand) (or C(ecs:InvokeCommand)), C(ecs:DescribeInvocations),
    C(ecs:DescribeInvocationResults), C(ecs:StopInvocation), C(ecs:DescribeInstances) and
    C(ecs:DescribeCloudAssistantStatus).
seealso:
  - module: cloudexec.core.ali_ecs_invocation_info
  - name: Cloud Assistant
    description: Alibaba Cloud Assistant overview.
    link: https://www.alibabacloud.com/help/en/ecs/user-guide/overview-10
'''

EXAMPLES = r'''
- name: Check disk space on two instances
  cloudexec.core.ali_ecs_command:
    instance_ids: [i-bp1demo000000000001, i-bp1demo000000000002]
    content: df -h /
  register: disk

- name: Roll out a config change to the whole web fleet, tolerating some failures
  cloudexec.core.ali_ecs_command:
    tags: {app: web}
    content: |
      set -e
      systemctl reload nginx
    timeout: 120
    wait_timeout: 900
    fail_on: all
    client_token: "nginx-reload-{{ release_id }}"

- name: Pass a secret as a custom parameter (masked in logs and results)
  cloudexec.core.ali_ecs_command:
    instance_ids: "{{ db_instances }}"
    # !unsafe keeps Ansible from templating the service's {{db_password}} placeholder itself.
    content: !unsafe 'mysql -p"{{db_password}}" -e "FLUSH LOGS"'
    parameters:
      db_password: "{{ vault_db_password }}"

- name: Start a long job and look at it later
  cloudexec.core.ali_ecs_command:
    instance_ids: [i-bp1demo000000000001]
    content: /opt/jobs/reindex.sh
    timeout: 7200
    wait: false
  register: job

- name: Run a cleanup every hour
  cloudexec.core.ali_ecs_command:
    tags: {role: cache}
    content: find /var/cache/app -mtime +1 -delete
    repeat_mode: Period
    frequency: rate(1h)
    keep_command: true
'''

RETURN = r'''
invoke_ids:
  description: The invocation ids, one per batch of 100 instances.
  returned: when something was started
  type: list
  elements: str
  sample: [t-hz0jdfwd9f0001]
invoke_id:
  description: The first (often the only) invocation id.
  returned: when something was started
  type: str
command_id:
  description: The command that ran (the first batch's when there are several).
  returned: when something was started
  type: str
command_ids:
  description: The command id of every batch.
  returned: when something was started
  type: list
  elements: str
instance_ids:
  description: The target instances, after resolving O(tags) and removing repeats.
  returned: always
  type: list
  elements: str
results:
  description: One entry per instance, in target order.
  returned: when the module waited
  type: list
  elements: dict
  contains:
    instance_id:
      description: The instance.
      type: str
    invoke_id:
      description: The invocation the instance belongs to.
      type: str
    status:
      description:
        - The instance's C(InvocationStatus), for example V(Success), V(Failed) (non-zero exit), V(Timeout),
          V(Aborted) (not delivered), V(Invalid), V(Terminated) or V(Cancelled) (stopped).
        - When O(wait_timeout) passed, the state the instance was in then, for example V(Running) or V(Stopping).
      type: str
    exit_code:
      description:
        - The script's exit code.
        - V(null) when the script has not ended by itself (V(Running), V(Stopping), V(Pending)), never started (V(Cancelled),
          V(Invalid), V(Aborted)), or was ended for another reason without a code of its own (for example stopped, or the
          agent was not running). The service reports 0 in those cases.
        - V(null) on V(Timeout) too, where the agent reports 1 of its own; V(-1) when the script's main process died of a
          signal (the agent reports that, never 128 plus the signal).
      type: int
    output:
      description:
        - The output (stdout and stderr together), decoded as UTF-8.
        - When RV(results[].dropped) is not 0, only its start and its end, joined where the middle was cut (see
          RV(results[].output_cut)).
      type: str
    dropped:
      description: How many bytes of output the service cut from the middle.
      type: int
    output_cut:
      description:
        - V(null) when the output is whole; else which part is missing.
      type: dict
      contains:
        kept_bytes:
          description: The bytes of output kept (in RV(results[].output)).
          type: int
        dropped_bytes:
          description: The bytes dropped.
          type: int
        missing:
          description: Always V(middle).
          type: str
        kept:
          description: What was kept, in words.
          type: str
    error_code:
      description: The service's reason for a failure, for example V(ExitCodeNonzero), V(ExecutionTimeout), V(ClientNotRunning).
      type: str
    error_info:
      description: The service's text for RV(results[].error_code).
      type: str
    start_time:
      description: When the script started (UTC, ISO 8601).
      type: str
    finish_time:
      description: When the script ended.
      type: str
    stop_time:
      description: When the run was stopped, if it was.
      type: str
    repeats:
      description: How many times the script ran (scheduled runs).
      type: int
    username:
      description: The user the script ran as.
      type: str
    container_id:
      description: The container the script ran in.
      type: str
    container_name:
      description: The container the script ran in.
      type: str
counts:
  description: How many instances ended in each status.
  returned: when the module waited
  type: dict
  sample: {Success: 148, Failed: 2}
failed_instances:
  description: The instances where the script did not succeed.
  returned: when the module waited
  type: list
  elements: str
dropped_instances:
  description: The instances whose output the service cut (see RV(results[].dropped)).
  returned: when the module waited
  type: list
  elements: str
targets:
  description: In check mode, every target with its status, OS type and whether its agent is online.
  returned: in check mode
  type: list
  elements: dict
api_calls:
  description: The API calls this task made, by action, and the poll rounds with their calls.
  returned: always
  type: dict
  sample: {calls: {RunCommand: 2, DescribeInvocations: 9, DescribeInvocationResults: 4}, poll_rounds: 5, calls_per_round: [2, 2, 2, 2, 1]}
msg:
  description: What happened, or why the task failed.
  returned: always
  type: str
error:
  description: The provider error behind a failure (code, message, remedy, request id).
  returned: on API failure
  type: dict
'''

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud
from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant as ca
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.module import CloudExecModule, alicloud_argument_spec


def _spec(params: dict) -> ca.RunSpec:
    spec = ca.RunSpec(content=params['content'], command_type=params['type'], command_id=params['command_id'],
                      working_dir=params['working_dir'], timeout=params['timeout'], username=params['username'],
                      parameters=params['parameters'], container_id=params['container_id'], container_name=params['container_name'],
                      name=params['name'], description=params['description'], keep_command=params['keep_command'],
                      client_token=params['client_token'], repeat_mode=params['repeat_mode'], frequency=params['frequency'])
    spec.validate()
    if params['wait_timeout'] < 1:
        raise ValidationError('wait_timeout', f'{params["wait_timeout"]} is below the minimum of 1 second')
    return spec


def _api_calls(counter: ca.ApiCounter, outcome: ca.RunOutcome | None = None) -> dict:
    calls = {'calls': dict(counter.calls)}
    if outcome is not None:
        calls.update(poll_rounds=outcome.rounds, calls_per_round=outcome.calls_per_round)
    return calls


def main() -> None:
    module = CloudExecModule(
        argument_spec=alicloud_argument_spec(
            instance_ids={'type': 'list', 'elements': 'str'},
            tags={'type': 'dict'},
            type={'type': 'str', 'default': 'RunShellScript', 'choices': list(ca.COMMAND_TYPES)},
            content={'type': 'str'},
            command_id={'type': 'str'},
            working_dir={'type': 'str'},
            timeout={'type': 'int', 'default': 60},
            username={'type': 'str'},
            parameters={'type': 'dict', 'no_log': True},
            container_id={'type': 'str'},
            container_name={'type': 'str'},
            name={'type': 'str'},
            description={'type': 'str'},
            keep_command={'type': 'bool', 'default': False},
            client_token={'type': 'str', 'no_log': False},
            repeat_mode={'type': 'str', 'default': 'Once', 'choices': list(ca.REPEAT_MODES)},
            frequency={'type': 'str'},
            wait={'type': 'bool', 'default': True},
            wait_timeout={'type': 'int', 'default': 600},
            fail_on={'type': 'str', 'default': 'any', 'choices': list(ca.FAIL_ON)},
        ),
        mutually_exclusive=[('content', 'command_id'), ('container_id', 'container_name')],
        required_one_of=[('content', 'command_id'), ('instance_ids', 'tags')],
        required_if=[('repeat_mode', 'Period', ('frequency',))],
        supports_check_mode=True,
    )
    params = module.params
    auth = module.alicloud_auth()
    counter = ca.ApiCounter()
    result: dict = {'changed': False, 'instance_ids': []}
    try:
        spec = _spec(params)
        client = alicloud.ecs_client(auth)
        targets = ca.unique(params['instance_ids'] or [])
        if params['tags']:
            targets = ca.unique(targets + ca.instances_by_tags(client, auth, params['tags'], counter))
        result['instance_ids'] = targets
        if not targets:
            raise ValidationError('tags', f'no Running instance in {auth.alicloud_region} carries the tags {params["tags"]}')
        checked = ca.check_targets(client, auth, targets, counter)
        command_type = None if spec.command_id else spec.command_type
        problems = ca.target_failures(checked, command_type)
        if problems:
            raise ca.targets_error(problems, len(targets), command_type)
        if module.check_mode:
            result.update(changed=True, api_calls=_api_calls(counter),
                          targets=[{'instance_id': c.instance_id, 'status': c.status, 'os_type': c.os_type, 'agent_online': c.agent_online}
                                   for c in checked])
            module.exit_json(msg=f'Check mode: all {len(targets)} instances can run the command; nothing was run', **result)
        started = ca.start(client, auth, spec, targets, counter)
    except CloudExecError as exc:
        module.fail_error(exc, api_calls=_api_calls(counter), **result)

    result.update(changed=True, invoke_ids=[s.invoke_id for s in started], invoke_id=started[0].invoke_id,
                  command_ids=[s.command_id for s in started], command_id=started[0].command_id)
    if spec.scheduled or not params['wait']:
        why = 'scheduled' if spec.scheduled else 'started'
        module.exit_json(msg=f'Command {why} on {len(targets)} instances in {len(started)} invocation(s)',
                         api_calls=_api_calls(counter), **result)

    try:
        outcome = ca.wait_for(client, auth, started, params['wait_timeout'], counter)
    except CloudExecError as exc:
        module.fail_error(exc, api_calls=_api_calls(counter), **result)
    result.update(results=[r.to_dict() for r in outcome.results], counts=outcome.counts,
                  failed_instances=[r.instance_id for r in outcome.failed], dropped_instances=[r.instance_id for r in outcome.dropped],
                  api_calls=_api_calls(counter, outcome))
    warning = ca.dropped_warning(outcome)
    if warning:
        module.warn(warning)
    if outcome.timed_out:
        module.fail_json(msg=ca.deadline_message(outcome, params['wait_timeout']), **result)
    if ca.should_fail(outcome, params['fail_on']):
        module.fail_json(msg=ca.failure_message(outcome), **result)
    succeeded = outcome.counts.get('Success', 0)
    module.exit_json(msg=f'The command succeeded on {succeeded} of {len(outcome.results)} instances', **result)


if __name__ == '__main__':
    main()
