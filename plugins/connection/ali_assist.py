# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: ali_assist
short_description: Run tasks on Alibaba Cloud ECS instances through Cloud Assistant
version_added: 0.1.0
description:
  - Makes an Alibaba Cloud ECS instance (or a container on it) an Ansible host, reached through Cloud Assistant alone. No SSH,
    no open port, no key pair.
  - Every command is one C(RunCommand) (C(RunShellScript)) on the instance, polled with one C(DescribeInvocationResults) call
    per check. Checks come quickly at first (after O(poll_initial) seconds) and then back off up to O(poll_max) seconds.
  - Cloud Assistant merges stdout and stderr into one buffer and keeps only part of a long output (the start it sent while
    the command ran and the end, up to a quota; see O(output_quota)). The command runs inside a small wrapper that frames
    stdout, stderr and the exit code with random markers and keeps the output in a file on the instance; output larger than
    the quota is read back in pages and checked, so Ansible always gets the whole output.
  - A script may be at most 24 KB after Base64. Larger input (a pipelined module, a copied file) is staged first in pieces,
    each its own C(RunCommand) writing a part file; the command that needs them joins them and checks their SHA-256.
  - Files of any size move over Cloud Assistant itself (no OSS bucket), checksummed.
  - The instance must be Linux with C(/bin/sh), C(base64), C(head), C(mktemp) and C(sha256sum) (or C(shasum) or C(openssl)),
    and Python for modules other than M(ansible.builtin.raw).
author:
  - cloudexec.core maintainers (@cloudexec)
extends_documentation_fragment:
  - cloudexec.core.alicloud_auth.plugins
  - cloudexec.core.alicloud_auth.ecs_endpoint
options:
  instance_id:
    description:
      - The ECS instance id. Defaults to the host's address (C(ansible_host), else the inventory name).
    type: str
    vars:
      - name: ansible_ali_assist_instance_id
  container_id:
    description:
      - Run in this container on the instance instead of on the instance itself (Cloud Assistant's C(ContainerId)).
      - Mutually exclusive with O(container_name).
    type: str
    vars:
      - name: ansible_ali_assist_container_id
  container_name:
    description:
      - Run in the container of this name on the instance (Cloud Assistant's C(ContainerName)).
    type: str
    vars:
      - name: ansible_ali_assist_container_name
  username:
    description:
      - The user Cloud Assistant runs commands as. The agent's default (C(root) on Linux) when unset.
      - Cloud Assistant ignores it for containers (O(container_id), O(container_name)), so it cannot be set with them; use
        C(become) there.
    type: str
    vars:
      - name: ansible_ali_assist_username
  working_dir:
    description:
      - The absolute directory commands start in. The agent's default (the user's home directory) when unset.
      - Cloud Assistant ignores its C(WorkingDir) in containers; there the connection changes to this directory itself.
    type: str
    vars:
      - name: ansible_ali_assist_working_dir
  output_quota:
    description:
      - The bytes of one command's output that Cloud Assistant keeps whole, between 6000 and 24576. Output up to this size
        comes back directly; larger output is kept in a file on the instance and read back in pages sized from it.
      - Cloud Assistant keeps the start that the agent sent while the command ran and the end of the output, up to a quota
        the service sets, and drops the middle. The agent's own floor is 12000 bytes (the default here); the documentation
        says 24 KB. A higher value saves API calls on large outputs.
      - Too high a value never fails a task. When the service cuts output, the connection learns the real quota from what
        arrived, reads that output again from its file in smaller pages, and uses that quota for the instance from then on
        (it is remembered for a day in the private control directory, like O(piece_cache)'s memory).
    type: int
    default: 12000
    vars:
      - name: ansible_ali_assist_output_quota
    env:
      - name: CLOUDEXEC_ALI_ASSIST_OUTPUT_QUOTA
  command_timeout:
    description:
      - Seconds one command may run, between 1 and 86370. When they pass, the invocation is stopped with
        C(StopInvocation) and the command's processes on the instance are ended (the agent alone would leave its
        children running), and the task fails saying so.
      - A command abandoned by Ansible's C(timeout) keyword is ended the same way; one left by a run interrupted with
        Ctrl-C is ended by the next task on that instance. What became of it is said at C(-v), or as a warning when it
        may still run.
    type: int
    default: 600
    vars:
      - name: ansible_ali_assist_command_timeout
    env:
      - name: CLOUDEXEC_ALI_ASSIST_COMMAND_TIMEOUT
  poll_initial:
    description:
      - Seconds before the first result check of a command. Later checks back off by a factor of 1.6 up to O(poll_max).
    type: float
    default: 0.2
    vars:
      - name: ansible_ali_assist_poll_initial
  poll_max:
    description:
      - The longest wait in seconds between two result checks.
      - Alibaba's own tools poll every 3 to 5 seconds; a lower value answers faster and costs more API calls on long commands.
    type: float
    default: 2.0
    vars:
      - name: ansible_ali_assist_poll_max
  piece_cache:
    description:
      - Where the instance keeps the pieces of Ansible's module code between tasks, by their SHA-256, so that a task
        sends only the pieces the instance does not have yet (most of a module is the same from one task to the next).
        C(~/) is the Cloud Assistant user's home. Pieces unused for a day are removed.
      - The controller remembers which pieces it sent to each instance in the private control directory
        (E(CLOUDEXEC_CONTROL_DIR), by default C(~/.ansible/cp/cloudexec)); a piece the instance lost is sent again.
      - Only module code goes through the cache (on the stdin of the interpreter, or C(AnsiballZ_*) files without
        pipelining, up to 1 MiB), and a piece is kept only once two tasks used it, so the piece holding a task's
        arguments is never kept. Files of C(copy), C(template) and the like never are. An empty value turns the cache off.
    type: str
    default: ~/.cache/cloudexec-pieces
    vars:
      - name: ansible_ali_assist_piece_cache
    env:
      - name: CLOUDEXEC_ALI_ASSIST_PIECE_CACHE
  pipelining:
    description:
      - Send modules on the stdin of the Python interpreter instead of copying them first. Saves several commands per task.
    type: bool
    default: false
    env:
      - name: ANSIBLE_PIPELINING
    ini:
      - section: defaults
        key: pipelining
      - section: connection
        key: pipelining
    vars:
      - name: ansible_pipelining
      - name: ansible_ali_assist_pipelining
notes:
  - There is no session to keep, so nothing lives across tasks; a task costs one C(RunCommand) and a few
    C(DescribeInvocationResults) per command, plus one C(RunCommand) per staged piece (about 18 KB of text or 13 KB of
    binary data) and per output page (about 74% of O(output_quota), 8.6 KB by default) when the input or output is large.
  - The AccessKey secret and STS token never reach logs at any verbosity.
  - The scripts of C(RunCommand) are kept in the account's invocation history (C(DescribeInvocations)). Module arguments and
    copied files travel inside them; so does a become password. Prefer Cloud Assistant's own O(username), C(root) by
    default, or passwordless C(sudo).
  - Become works with C(sudo), with or without a password (C(sudo -S) reads the password from stdin), and with other methods
    when they need no password.
  - An instance that is not running, or whose Cloud Assistant agent is offline, makes the host unreachable with a remedy.
  - Cloud Assistant runs at most one script per C(RunCommand) call; commands of parallel hosts are independent calls,
    throttled per account and API by Alibaba Cloud. Throttled calls are retried with back-off.
seealso:
  - plugin: cloudexec.core.ali_ecs
    plugin_type: inventory
  - module: cloudexec.core.ali_ecs_command
'''

EXAMPLES = r'''
# In an inventory (the cloudexec.core.ali_ecs inventory plugin builds these for you):
#   web-01:
#     ansible_connection: cloudexec.core.ali_assist
#     ansible_ali_assist_instance_id: i-bp1demo000000000001
#     ansible_alicloud_region: cn-hangzhou

- name: Configure instances without SSH
  hosts: all
  gather_facts: true
  vars:
    ansible_connection: cloudexec.core.ali_assist
    ansible_pipelining: true
  tasks:
    - name: Ship a config file
      ansible.builtin.copy:
        src: app.conf
        dest: /etc/app.conf
        mode: "0644"

    - name: Restart the service as root
      ansible.builtin.command: systemctl restart app
      become: true

- name: Run inside a container on the instance
  hosts: web-01
  gather_facts: false
  vars:
    ansible_connection: cloudexec.core.ali_assist
    ansible_ali_assist_container_name: app
  tasks:
    - name: Show the container's processes
      ansible.builtin.raw: ps -ef
'''

import os
import shlex

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud
from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant as ca
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.plugin_utils import assist_transport as at
from ansible_collections.cloudexec.core.plugins.plugin_utils import broker

display = Display()


class Connection(ConnectionBase):
    """Cloud Assistant RunCommand as an Ansible connection."""

    transport = 'cloudexec.core.ali_assist'
    has_pipelining = True
    has_tty = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._transport: at.AssistTransport | None = None

    @property
    def _host(self) -> str:
        return self._play_context.remote_addr

    def _target(self) -> at.Target:
        instance_id = self.get_option('instance_id') or self._play_context.remote_addr
        if not instance_id:
            raise AnsibleError('cloudexec.core.ali_assist needs an instance: set ansible_ali_assist_instance_id (or ansible_host)')
        if self.get_option('container_id') and self.get_option('container_name'):
            raise AnsibleError('cloudexec.core.ali_assist: set only one of container_id and container_name')
        timeout = int(self.get_option('command_timeout'))
        if not 1 <= timeout <= 86400 - at.SERVICE_GRACE:
            raise AnsibleError(f'cloudexec.core.ali_assist: command_timeout must be between 1 and {86400 - at.SERVICE_GRACE} seconds')
        poll_initial = float(self.get_option('poll_initial'))
        poll_max = float(self.get_option('poll_max'))
        if poll_initial <= 0 or poll_max <= 0:
            raise AnsibleError('cloudexec.core.ali_assist: poll_initial and poll_max must be positive')
        quota = int(self.get_option('output_quota'))
        if not at.MIN_QUOTA <= quota <= ca.OUTPUT_LIMIT:
            raise AnsibleError(f'cloudexec.core.ali_assist: output_quota must be between {at.MIN_QUOTA} and {ca.OUTPUT_LIMIT} bytes '
                               f'(the output Cloud Assistant keeps whole), not {quota}')
        container = self.get_option('container_id') or self.get_option('container_name')
        if container and self.get_option('username'):
            raise AnsibleError('cloudexec.core.ali_assist: username has no effect in a container (Cloud Assistant ignores it with '
                               'container_id and container_name): leave it unset and use become')
        try:
            ca.check_container(self.get_option('container_id'), self.get_option('container_name'))
        except CloudExecError as exc:
            raise AnsibleError(f'cloudexec.core.ali_assist: {exc}') from None
        return at.Target(instance_id=instance_id, container_id=self.get_option('container_id'),
                         container_name=self.get_option('container_name'), username=self.get_option('username'),
                         working_dir=self.get_option('working_dir'), command_timeout=timeout, poll_initial=poll_initial,
                         poll_max=max(poll_max, poll_initial), piece_cache=self.get_option('piece_cache') or None,
                         output_quota=quota)

    def _run_ledger(self, auth, target) -> at.RunLedger:
        """Where the commands in flight on this target are noted, so a later task can end those of an interrupted run."""
        try:
            directory = broker.control_dir()
        except (CloudExecError, OSError) as exc:
            display.vvv(f'ALI ASSIST: no run ledger ({exc})', host=self._host)
            return at.RunLedger(None, '')
        key = broker.broker_key('ali_assist-runs', {'region': auth.alicloud_region, 'instance': target.instance_id,
                                                    'container': target.container_id or target.container_name})
        return at.RunLedger(directory, key[:16])

    def _quota_memory(self, auth, target) -> at.QuotaMemory:
        """The output quota learned on this target (a file in the private control directory), if it can be kept."""
        try:
            directory = broker.control_dir()
        except (CloudExecError, OSError) as exc:
            display.vvv(f'ALI ASSIST: no quota memory ({exc})', host=self._host)
            return at.QuotaMemory(None)
        key = broker.broker_key('ali_assist-quota', {'region': auth.alicloud_region, 'instance': target.instance_id,
                                                     'container': target.container_id or target.container_name})
        return at.QuotaMemory(os.path.join(directory, f'assist-{key}.quota'))

    def _piece_memory(self, auth, target) -> at.PieceMemory:
        """What this controller sent to the target's piece cache (a file in the private control directory), if it can keep it."""
        if not target.piece_cache:
            return at.PieceMemory(None)
        try:
            directory = broker.control_dir()
        except (CloudExecError, OSError) as exc:
            display.vvv(f'ALI ASSIST: no piece memory ({exc})', host=self._host)
            return at.PieceMemory(None)
        key = broker.broker_key('ali_assist-pieces', {'region': auth.alicloud_region, 'instance': target.instance_id,
                                                      'container': target.container_id or target.container_name,
                                                      'user': target.username, 'cache': target.piece_cache})
        return at.PieceMemory(os.path.join(directory, f'assist-{key}.pieces'))

    def _connect(self):
        if self._transport is None:
            target = self._target()
            try:
                auth = alicloud.AlicloudAuth.from_options(self.get_option)
                client = alicloud.ecs_client(auth)
            except CloudExecError as exc:
                raise AnsibleConnectionFailure(f'Cannot use Cloud Assistant: {exc}') from None
            self._transport = at.AssistTransport(client, auth, target, log=lambda msg: display.vvv(f'ALI ASSIST: {msg}', host=self._host),
                                                 memory=self._piece_memory(auth, target), notify=self._notify,
                                                 ledger=self._run_ledger(auth, target), quota_memory=self._quota_memory(auth, target))
            display.vvv(f'ALI ASSIST: instance {target.describe()} in {auth.alicloud_region}', host=self._host)
        self._connected = True
        return self

    def _notify(self, text: str, worrying: bool) -> None:
        """What became of an abandoned command: a warning when it may still run, else a -v message."""
        if worrying:
            display.warning(f'{self._host}: {text}')
        else:
            display.v(text, host=self._host)

    def _run(self, cmd: str, in_data: bytes | None) -> tuple[int, bytes, bytes]:
        self._connect()
        transport = self._transport
        if transport is None:
            raise AnsibleConnectionFailure('cloudexec.core.ali_assist: no transport')
        before = dict(transport.stats.counter.calls)
        try:
            result = transport.exec(cmd, in_data)
        except at.AssistError as exc:
            raise self._ansible_error(exc) from None
        except CloudExecError as exc:
            raise AnsibleConnectionFailure(f'Cloud Assistant failed: {exc}') from None
        spent = {k: v - before.get(k, 0) for k, v in transport.stats.counter.calls.items() if v - before.get(k, 0)}
        display.vvvv(f'ALI ASSIST: API calls for this command: {spent}', host=self._host)
        return result

    @staticmethod
    def _ansible_error(exc: at.AssistError) -> AnsibleError:
        if exc.unreachable:
            return AnsibleConnectionFailure(str(exc))
        return AnsibleError(str(exc) + (' The command may have run.' if exc.may_have_run and not exc.deadline else ''))

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        display.vvv(f'EXEC {cmd}', host=self._host)
        stdin = to_bytes(in_data) if in_data is not None else None
        prompt = None
        if sudoable and self.become and self.become.expect_prompt():
            prompt = self._become_prompt()
            if prompt is not None:
                # sudo -S reads the password from the first line of stdin when it needs one; the command gets the rest.
                password = to_bytes(self.become.get_option('become_pass') or '')
                stdin = password + b'\n' + (stdin or b'')
        rc, stdout, stderr = self._run(to_text(cmd), stdin)
        if prompt is not None:
            if rc != 0 and (self.become.check_incorrect_password(stderr) or self.become.check_missing_password(stderr)):
                raise AnsibleError(f'Incorrect {self.become.name} password (the target refused it)')
            if stderr.startswith(prompt):
                stderr = stderr[len(prompt):]
                if stderr.startswith(b'\n'):
                    stderr = stderr[1:]
        return rc, stdout, stderr

    def _become_prompt(self) -> bytes | None:
        """The prompt sudo prints before reading the password from stdin; None when no password will be asked for."""
        name = getattr(self.become, 'name', '').rsplit('.', 1)[-1]
        password = self.become.get_option('become_pass')
        if name != 'sudo':
            if password:
                raise AnsibleError(f'cloudexec.core.ali_assist cannot answer the password prompt of become_method {name}: it reads '
                                   'the password from a terminal. Use become_method sudo, or let the user become without a password.')
            return None
        if not password:
            return None
        user = self.become.get_option('become_user') or 'root'
        exe = self.become.get_option('become_exe') or 'sudo'
        rc, dummy_out, dummy_err = self._run(f'{shlex.quote(exe)} -n -u {shlex.quote(user)} true', None)
        if rc == 0:
            return None
        return to_bytes(self.become.prompt)

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        display.vvv(f'PUT {in_path} TO {out_path}', host=self._host)
        if not os.path.exists(to_bytes(in_path, errors='surrogate_or_strict')):
            raise AnsibleFileNotFound(f'file or module does not exist: {in_path}')
        self._connect()
        try:
            stats = self._transport.put_file(in_path, out_path)
        except at.AssistError as exc:
            if exc.unreachable:
                raise AnsibleConnectionFailure(str(exc)) from None
            raise AnsibleError(f'Failed to copy {in_path} to {out_path}: {exc}') from None
        except CloudExecError as exc:
            raise AnsibleError(f'Failed to copy {in_path} to {out_path}: {exc}') from None
        display.vvvv(f'PUT done: {stats["bytes"]} bytes in {stats["pieces"]} piece(s)', host=self._host)

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv(f'FETCH {in_path} TO {out_path}', host=self._host)
        self._connect()
        try:
            stats = self._transport.fetch_file(in_path, out_path)
        except at.RemoteFileMissing as exc:
            raise AnsibleFileNotFound(str(exc)) from None
        except at.AssistError as exc:
            if exc.unreachable:
                raise AnsibleConnectionFailure(str(exc)) from None
            raise AnsibleError(f'Failed to fetch {in_path}: {exc}') from None
        except CloudExecError as exc:
            raise AnsibleError(f'Failed to fetch {in_path}: {exc}') from None
        display.vvvv(f'FETCH done: {stats["bytes"]} bytes in {stats["pages"]} page(s)', host=self._host)

    def reset(self):
        """Nothing to reset: there is no session."""
        self.close()

    def close(self):
        """Forget the client (a new task builds its own)."""
        self._transport = None
        self._connected = False
