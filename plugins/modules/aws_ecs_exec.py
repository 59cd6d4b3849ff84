#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: aws_ecs_exec
short_description: Run a command in an ECS task's container through ECS Exec
version_added: 0.1.0
description:
  - Runs a command inside a container of a running Amazon ECS task through ECS C(ExecuteCommand), without SSH, without
    AWS's C(session-manager-plugin) binary and without an S3 bucket. The Session Manager data channel is spoken in
    pure Python by this collection.
  - Returns the command's stdout and stderr apart, and its real exit code. Like M(ansible.builtin.command), the task
    fails when the exit code is not zero.
  - Runs on the controller (or wherever the task is delegated); the container needs only C(/bin/sh).
author:
  - cloudexec.core maintainers (@cloudexec)
options:
  cluster:
    description:
      - The cluster name or ARN.
      - When not set, the cluster named in O(task) when that is a task ARN (C(arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID)),
        else the C(default) cluster.
    type: str
  task:
    description:
      - The task ARN or task id.
    type: str
    required: true
  container:
    description:
      - The container to run the command in. Required only when the task has more than one container.
    type: str
  command:
    description:
      - The command to run.
      - A string is a shell command line, run by O(shell) in the container (pipes, redirections and C(&&) work).
      - A list is an argv; each item is quoted, so it reaches the program as one argument whatever it holds.
    type: raw
    required: true
  chdir:
    description:
      - Change into this directory in the container before running the command.
    type: str
  creates:
    description:
      - A path in the container. When it already exists, the command is not run and the task reports no change.
    type: str
  removes:
    description:
      - A path in the container. When it does not exist, the command is not run and the task reports no change.
    type: str
  shell:
    description:
      - The POSIX shell in the container that runs the command.
    type: str
    default: /bin/sh
  timeout:
    description:
      - Seconds to wait for the command to finish. On expiry the session is closed, which ends the command,
        and the task fails saying so.
    type: int
    default: 600
extends_documentation_fragment:
  - cloudexec.core.aws_auth.modules
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Checks the target (task running, exec enabled, agent running, container chosen) and runs nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The session token and stream URL returned by C(ExecuteCommand) are never logged or returned.
  - ECS Exec gives the command a terminal; this module switches it to raw mode so output bytes come back unchanged.
  - The IAM principal needs C(ecs:DescribeTasks) and C(ecs:ExecuteCommand); the task role needs the
    C(ssmmessages) permissions (see the collection's docs for policies).
  - A connection lost while the command runs is resumed with SSM C(ResumeSession) (same credentials and region; the
    SSM endpoint, E(AWS_ENDPOINT_URL_SSM) to override) when the caller may call it (C(ssm:ResumeSession)). Whether AWS
    resumes ECS Exec sessions through SSM is not established; when it refuses, the task fails saying that the command
    may have run.
  - A container's agent takes 2 sessions at a time by default. When C(ExecuteCommand) keeps answering
    C(TargetNotConnectedException) although the agent is RUNNING, it is tried again for up to O(timeout) (60 seconds at
    most), then the error names the session brokers of this controller that hold the container's sessions.
seealso:
  - name: ECS Exec
    description: Using Amazon ECS Exec for debugging.
    link: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-exec.html
'''

EXAMPLES = r'''
- name: Show the processes of the web container
  cloudexec.core.aws_ecs_exec:
    cluster: production
    task: 1f0e1c2d3b4a59687766554433221100
    container: web
    command: ps aux
  register: ps

- name: Run a migration once, with an argv list that needs no quoting
  cloudexec.core.aws_ecs_exec:
    cluster: production
    task: "{{ task_arn }}"
    container: app
    command: [python, manage.py, migrate, --noinput]
    chdir: /srv/app
    creates: /srv/app/.migrated

- name: Credentials for every AWS task of a play, with module_defaults
  module_defaults:
    group/cloudexec.core.aws:
      region: eu-west-1
      profile: ops
  block:
    - name: Check free disk space
      cloudexec.core.aws_ecs_exec:
        task: "{{ task_arn }}"
        command: df -h /
'''

RETURN = r'''
stdout:
  description: The command's standard output, exactly as it wrote it.
  returned: when the command ran
  type: str
  sample: "hello\n"
stdout_lines:
  description: RV(stdout) split into lines.
  returned: when the command ran
  type: list
  elements: str
stderr:
  description: The command's standard error, kept apart from stdout.
  returned: when the command ran
  type: str
stderr_lines:
  description: RV(stderr) split into lines.
  returned: when the command ran
  type: list
  elements: str
rc:
  description: The command's exit code.
  returned: when the command ran
  type: int
  sample: 0
cmd:
  description: The command line that ran in the container (before our framing).
  returned: always
  type: str
session_id:
  description: The ECS Exec session id (for CloudTrail and session logs). Never the token.
  returned: when a session was started
  type: str
task_arn:
  description: The task's ARN.
  returned: always
  type: str
cluster_arn:
  description: The cluster's ARN.
  returned: always
  type: str
container_name:
  description: The container the command ran in.
  returned: always
  type: str
start:
  description: When the command started, in the controller's local time.
  returned: when the command ran
  type: str
end:
  description: When the command ended, in the controller's local time.
  returned: when the command ran
  type: str
delta:
  description: How long the command took.
  returned: when the command ran
  type: str
msg:
  description: Why nothing ran (creates/removes, check mode) or why the task failed.
  returned: sometimes
  type: str
error:
  description: The provider error behind a failure (code, message, remedy, request id).
  returned: on API failure
  type: dict
'''

import datetime

from ansible_collections.cloudexec.core.plugins.module_utils import aws, aws_ecs, remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.module_utils.module import COMMAND_OPTIONS, CloudExecModule, aws_argument_spec, validate_command


def main() -> None:
    module = CloudExecModule(
        argument_spec=aws_argument_spec(
            cluster={'type': 'str'},
            task={'type': 'str', 'required': True},
            container={'type': 'str'},
            **COMMAND_OPTIONS,
            shell={'type': 'str', 'default': '/bin/sh'},
        ),
        supports_check_mode=True,
    )
    params = module.params
    cmd = remote_shell.command_text(params['command']) if params['command'] else ''
    result: dict = {'changed': False, 'cmd': cmd}
    auth = module.aws_auth()
    try:
        validate_command(params)
        client = aws.aws_client(auth, 'ecs')
        target = aws_ecs.resolve_target(client, params['cluster'], params['task'], params['container'])
        result.update(task_arn=target.task_arn, cluster_arn=target.cluster_arn, container_name=target.container_name)
        if module.check_mode:
            result['changed'] = True
            module.exit_json(msg='Check mode: the target can exec; the command would run', **result)
        start = datetime.datetime.now()
        run = aws_ecs.run_script(client, target, params['command'], shell=params['shell'], chdir=params['chdir'],
                                 creates=params['creates'], removes=params['removes'], timeout=params['timeout'],
                                 generate_data_key=aws.kms_data_key_provider(auth), resume_session=aws.ssm_session_resumer(auth))
        end = datetime.datetime.now()
    except CloudExecError as exc:
        module.fail_error(exc, **result)

    result['session_id'] = run.session_id
    module.exit_command(run.result, result, start, end)


if __name__ == '__main__':
    main()
