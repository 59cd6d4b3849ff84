#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: ali_eci_exec
short_description: Run a command in an Alibaba Cloud ECI container
version_added: 0.1.0
description:
  - Runs a command inside a container of a Running Alibaba Cloud Elastic Container Instance (ECI) container group
    through ECI C(ExecContainerCommand), without SSH and without anything installed in the container but C(/bin/sh).
  - Returns the command's stdout and stderr apart, and its real exit code. Like M(ansible.builtin.command), the task
    fails when the exit code is not zero.
  - C(ExecContainerCommand) has two ways to run a command, see O(mode). Its C(Sync) answer merges stdout and stderr and
    has no exit code, so this module always runs the command inside a small C(sh) wrapper that reports both apart.
  - Runs on the controller (or wherever the task is delegated).
author:
  - cloudexec.core maintainers (@cloudexec)
options:
  container_group_id:
    description:
      - The ID of the container group, for example V(eci-bp1demo00000000001).
      - Exactly one of O(container_group_id) and O(container_group_name) is required.
    type: str
  container_group_name:
    description:
      - The name of the container group, resolved to its ID with C(DescribeContainerGroups).
      - Names are not unique in ECI; when several groups share the name the task fails and lists their IDs.
    type: str
  container_name:
    description:
      - The container to run the command in. Required only when the group has more than one container.
    type: str
  command:
    description:
      - The command to run.
      - A string is a shell command line, run by C(/bin/sh) in the container (pipes, redirections and C(&&) work).
      - A list is an argv; each item reaches the program as one argument whatever it holds (no shell involved in
        O(mode=sync); quoted for the shell in O(mode=stream)).
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
  stdin:
    description:
      - Data to feed to the command's standard input, exactly as given (no newline is added).
      - Needs the stream; O(mode=auto) picks it when O(stdin) is set, and O(mode=sync) refuses it.
    type: str
  mode:
    description:
      - How the command travels.
      - V(sync) uses C(ExecContainerCommand) with C(Sync=true), one HTTP call that returns when the command ends.
        The command, O(chdir), O(creates) and O(removes) must fit the API's argv limits (20 items of 256 characters,
        counted here as UTF-8 bytes; 8 items are taken by the wrapper, so at most 12 arguments, or a command string of
        at most 256 bytes); the task fails before any call when they do not. Output comes back as text (the answer
        is a JSON string), so bytes that are not UTF-8 are not kept exactly; no O(stdin).
      - V(stream) asks C(ExecContainerCommand) for a websocket running C(/bin/sh) and sends the command over its stdin,
        so there are no argv limits, bytes come back exactly and O(stdin) works. It costs a websocket connection.
      - V(auto) picks V(sync) only when it gives the same answer as the stream, that is with O(stdin) not set, every argument
        within the limits (sizes counted as UTF-8 bytes, the strictest reading of the API's "characters", so a call
        is never refused for a length) and O(timeout) of 60 seconds or more (Sync sees a deadline only through its
        HTTP read timeout, which has a margin; the stream keeps a short deadline to the second). V(stream) otherwise.
        Whether the output is text cannot be known before the command runs; when a V(sync) answer lost bytes that
        were not UTF-8, the task warns; use V(stream) for binary output.
    type: str
    choices: [auto, sync, stream]
    default: auto
  timeout:
    description:
      - Seconds to wait for the command to finish.
      - Closing an exec stream or giving up on a C(Sync) answer does not end a command on ECI (its stdin reaches end of
        file and it runs on). So when the deadline passes, the task opens a second exec stream that ends the command's
        processes in the container (SIGTERM, then SIGKILL), finding them by the random marker in their arguments,
        and fails saying what it found and did, or that the command may still be running when it could not tell.
      - In O(mode=stream) the deadline is kept to the second. In O(mode=sync) the HTTP call is given this long plus a
        margin (a quarter of it, 2 to 15 seconds) to answer.
    type: int
    default: 600
extends_documentation_fragment:
  - cloudexec.core.alicloud_auth.modules
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Checks the target (the group exists and is Running, the container exists) and runs nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The C(WebSocketUri) returned by C(ExecContainerCommand) carries a token; it is never logged or returned.
  - The exec websocket uses the Kubernetes channel framing (a first byte naming the stream) without a subprotocol, as a
    kubelet serves it. Its status message may be JSON, plain text or absent, on channel 3 or 4; the exit code always
    comes from this module's own wrapper, and a status message only explains a stream that ended early (its text, such as
    C(OCI runtime exec failed ...), is in the error).
  - The RAM identity needs C(eci:DescribeContainerGroups) and C(eci:ExecContainerCommand).
seealso:
  - name: ExecContainerCommand
    description: The ECI API this module calls.
    link: https://www.alibabacloud.com/help/en/eci/developer-reference/api-eci-2018-08-08-execcontainercommand
'''

EXAMPLES = r'''
- name: Show the processes of the web container
  cloudexec.core.ali_eci_exec:
    container_group_id: eci-bp1demo00000000001
    command: ps aux
  register: ps

- name: Run a migration once, by group name, with an argv list that needs no quoting
  cloudexec.core.ali_eci_exec:
    container_group_name: api-1
    container_name: app
    command: [python, manage.py, migrate, --noinput]
    chdir: /srv/app
    creates: /srv/app/.migrated

- name: Feed a script on stdin (this always uses the websocket stream)
  cloudexec.core.ali_eci_exec:
    container_group_id: eci-bp1demo00000000001
    command: sh -s
    stdin: |
      set -e
      apk add --no-cache curl
    timeout: 300

- name: Credentials and region for every Alibaba task of a play, with module_defaults
  module_defaults:
    group/cloudexec.core.alicloud:
      alicloud_region: cn-hangzhou
  block:
    - name: Check free disk space
      cloudexec.core.ali_eci_exec:
        container_group_id: eci-bp1demo00000000001
        command: df -h /
'''

RETURN = r'''
stdout:
  description: The command's standard output.
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
  description: The command that ran in the container (before the framing wrapper).
  returned: always
  type: str
mode:
  description: How the command travelled, V(sync) or V(stream) (what O(mode=auto) chose).
  returned: when the command ran or was skipped
  type: str
  sample: stream
container_group_id:
  description: The ID of the container group.
  returned: when the target was found
  type: str
container_name:
  description: The container the command ran in.
  returned: when the target was found
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

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud, eci, remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.module import COMMAND_OPTIONS, CloudExecModule, alicloud_argument_spec, validate_command


def _validate(params: dict) -> None:
    validate_command(params)
    command = params['command']
    if params['mode'] == eci.MODE_SYNC:
        if params['stdin'] is not None:
            raise ValidationError('stdin', 'mode=sync cannot carry stdin', remedy='Use mode=stream or mode=auto')
        eci.check_sync_limits(command, chdir=params['chdir'], creates=params['creates'], removes=params['removes'])


def main() -> None:
    module = CloudExecModule(
        argument_spec=alicloud_argument_spec(
            container_group_id={'type': 'str'},
            container_group_name={'type': 'str'},
            container_name={'type': 'str'},
            **COMMAND_OPTIONS,
            stdin={'type': 'str'},
            mode={'type': 'str', 'default': 'auto', 'choices': ['auto', 'sync', 'stream']},
        ),
        mutually_exclusive=[('container_group_id', 'container_group_name')],
        required_one_of=[('container_group_id', 'container_group_name')],
        supports_check_mode=True,
    )
    params = module.params
    command = params['command']
    if isinstance(command, list):
        command = [str(arg) for arg in command]
    cmd = remote_shell.command_text(command) if command else ''
    result: dict = {'changed': False, 'cmd': cmd}
    auth = module.alicloud_auth()
    stdin = params['stdin'].encode('utf-8') if params['stdin'] is not None else None
    try:
        # Bad input fails here, before any API call.
        _validate(params)
        client = alicloud.eci_client(auth)
        target = eci.resolve_target(client, auth, group_id=params['container_group_id'], group_name=params['container_group_name'],
                                    container_name=params['container_name'])
        result.update(container_group_id=target.group_id, container_name=target.container_name)
        if module.check_mode:
            result['changed'] = True
            module.exit_json(msg='Check mode: the container can exec; the command would run', **result)
        mode = eci.choose_mode(params['mode'], command, stdin=stdin, chdir=params['chdir'], creates=params['creates'],
                               removes=params['removes'], timeout=params['timeout'])
        start = datetime.datetime.now()
        if mode == eci.MODE_SYNC:
            run = eci.run_sync(client, auth, target, command, chdir=params['chdir'], creates=params['creates'],
                               removes=params['removes'], timeout=params['timeout'], log=module.debug)
        else:
            run = eci.run_stream(client, auth, target, command, chdir=params['chdir'], creates=params['creates'],
                                 removes=params['removes'], stdin=stdin, timeout=params['timeout'], log=module.debug)
        end = datetime.datetime.now()
    except CloudExecError as exc:
        module.fail_error(exc, **result)

    result['mode'] = run.mode
    for warning in run.warnings:
        module.warn(warning)
    module.exit_command(run.result, result, start, end)


if __name__ == '__main__':
    main()
