# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: ali_eci
short_description: Run tasks inside Alibaba Cloud ECI containers through ExecContainerCommand
version_added: 0.1.0
description:
  - Makes a container of a running Alibaba Cloud Elastic Container Instance (ECI) container group an Ansible host,
    reached through the ECI C(ExecContainerCommand) API and its exec websocket. No SSH, no agent, no public IP.
  - "One session per host is kept open across tasks by a small background broker (like SSH's ControlPersist), so a
    play costs about one C(ExecContainerCommand) call per host. It ends after O(idle_timeout) seconds without use, or
    on C(meta: reset_connection)."
  - C(ExecContainerCommand) takes at most 20 arguments of 256 characters, so only a short bootstrap travels in the API
    call; commands, pipelining and file transfers all travel over the websocket as the stdin of one long-lived shell,
    without a terminal, so bytes pass untouched. Files are checksummed.
  - The container needs C(/bin/sh) (or O(shell)), and Python for modules other than M(ansible.builtin.raw).
author:
  - cloudexec.core maintainers (@cloudexec)
extends_documentation_fragment:
  - cloudexec.core.alicloud_auth.plugins
options:
  container_group_id:
    description:
      - The ID of the container group, for example V(eci-bp1demo00000000001).
      - Defaults to the host's address (C(ansible_host), else the inventory name) unless O(container_group_name) is set.
    type: str
    vars:
      - name: ansible_ali_eci_container_group_id
  container_group_name:
    description:
      - The name of the container group, looked up with C(DescribeContainerGroups); used when O(container_group_id) is
        not set. A name shared by several groups of the region is an error.
    type: str
    vars:
      - name: ansible_ali_eci_container_group_name
  container_name:
    description:
      - The container of the group to run in. Required only for groups with more than one container.
    type: str
    vars:
      - name: ansible_ali_eci_container_name
  shell:
    description:
      - The POSIX shell in the container that runs commands.
    type: str
    default: /bin/sh
    vars:
      - name: ansible_ali_eci_shell
  idle_timeout:
    description:
      - Seconds the background session may stay unused before it is closed.
    type: int
    default: 600
    vars:
      - name: ansible_ali_eci_idle_timeout
    env:
      - name: CLOUDEXEC_IDLE_TIMEOUT
  connect_timeout:
    description:
      - Seconds to wait for a new session to be ready (API calls, websocket, shell start-up).
    type: int
    default: 60
    vars:
      - name: ansible_ali_eci_connect_timeout
  command_timeout:
    description:
      - Seconds one command may run. When it passes, the session is closed (which ends the command) and the task fails.
    type: int
    default: 3600
    vars:
      - name: ansible_ali_eci_command_timeout
  pipelining:
    description:
      - Send modules on the stdin of the Python interpreter instead of copying them first.
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
      - name: ansible_ali_eci_pipelining
notes:
  - The exec WebSocketUri (whose query is a session token), the AccessKey secret and the STS token never reach logs at
    any verbosity. Credentials reach the background broker on its standard input, not its command line.
  - The broker's socket lives in C(~/.ansible/cp/cloudexec), a directory only the user can read
    (set E(CLOUDEXEC_CONTROL_DIR) to move it).
  - A container group that is not C(Running), an unknown group or container, or a group with several containers and no
    O(container_name) make the host unreachable with the reason and what to do about it.
  - Become works with C(sudo), with or without a password (the password is sent on the command's stdin for
    C(sudo -S), never on a command line), and with C(su) and other methods when they need no password. Those read a
    password from a terminal, which the session's commands do not have, so setting one for them fails the task with
    an error that says so.
  - The RAM identity needs C(eci:DescribeContainerGroups) and C(eci:ExecContainerCommand).
seealso:
  - plugin: cloudexec.core.ali_eci
    plugin_type: inventory
  - module: cloudexec.core.ali_eci_exec
'''

EXAMPLES = r'''
# In an inventory (the cloudexec.core.ali_eci inventory plugin builds these for you):
#   web-1:
#     ansible_connection: cloudexec.core.ali_eci
#     ansible_ali_eci_container_group_id: eci-bp1demo00000000001
#     ansible_ali_eci_container_name: web
#     ansible_alicloud_region: cn-hangzhou

- name: Configure an ECI container
  hosts: eci_web
  gather_facts: true
  vars:
    ansible_connection: cloudexec.core.ali_eci
    ansible_alicloud_region: cn-hangzhou
  tasks:
    - name: Ship a config file into the container
      ansible.builtin.copy:
        src: app.conf
        dest: /etc/app.conf
        mode: "0644"
    - name: Close the ECI exec session now rather than after the idle timeout
      ansible.builtin.meta: reset_connection
'''

import os
import shlex

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

from ansible_collections.cloudexec.core.plugins.module_utils.auth_options import ALICLOUD_AUTH_ARGSPEC
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.plugin_utils import file_transfer
from ansible_collections.cloudexec.core.plugins.plugin_utils.broker import BrokerClient

display = Display()

KIND = 'ali_eci'


class Connection(ConnectionBase):
    """ECI ExecContainerCommand as an Ansible connection."""

    transport = 'cloudexec.core.ali_eci'
    has_pipelining = True
    # Commands run through `sh -c` wrappers in the target; Ansible's own quoting is kept intact.
    has_tty = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._broker: BrokerClient | None = None

    def _target_options(self) -> dict:
        options = {name: self.get_option(name) for name in ALICLOUD_AUTH_ARGSPEC}
        group_id = self.get_option('container_group_id')
        group_name = self.get_option('container_group_name')
        if not group_id and not group_name:
            group_id = self._play_context.remote_addr
        options.update(
            container_group_id=group_id or None,
            container_group_name=None if group_id else group_name,
            container_name=self.get_option('container_name'),
            shell=self.get_option('shell'),
            idle_timeout=self.get_option('idle_timeout'),
            connect_timeout=self.get_option('connect_timeout'),
        )
        if not options['container_group_id'] and not options['container_group_name']:
            raise AnsibleError('cloudexec.core.ali_eci needs a container group: set ansible_ali_eci_container_group_id '
                               '(or ansible_host, or ansible_ali_eci_container_group_name)')
        return options

    def _where(self, options: dict) -> str:
        group = options['container_group_id'] or f'named {options["container_group_name"]}'
        return f'container group {group} container {options["container_name"] or "(only)"} region {options["alicloud_region"] or "(default)"}'

    def _connect(self):
        if self._broker is None:
            options = self._target_options()
            # The broker key covers the target and the credentials; secrets only as part of a hash.
            self._broker = BrokerClient(KIND, options, key_options=dict(options), start_timeout=float(options['connect_timeout']) + 30,
                                        log=lambda msg: display.vvv(msg, host=self._play_context.remote_addr))
            display.vvv(f'ECI EXEC: {self._where(options)}', host=self._play_context.remote_addr)
            try:
                self._broker.connect()
            except CloudExecError as exc:
                self._broker = None
                raise AnsibleConnectionFailure(f'Cannot open an ECI exec session: {exc}') from None
        self._connected = True
        return self

    def _run(self, cmd: str, in_data: bytes | None) -> tuple[int, bytes, bytes]:
        self._connect()
        try:
            return self._broker.exec(cmd, in_data, float(self.get_option('command_timeout')))
        except CloudExecError as exc:
            if getattr(exc, 'deadline', False):
                raise AnsibleError(str(exc)) from None
            if getattr(exc, 'may_have_run', False):
                # The target is reachable (the next task opens a new session): fail the task, not the host,
                # and say that the command may have run rather than run it twice.
                raise AnsibleError(f'ECI exec session failed while the command ran: {exc} The command may have run: check '
                                   'its effects before running it again (the next task opens a new session).') from None
            raise AnsibleConnectionFailure(f'ECI exec session failed: {exc}') from None

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        display.vvv(f'EXEC {cmd}', host=self._play_context.remote_addr)
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
            # sudo -S writes its prompt (and a newline after reading the password) to stderr: not the command's.
            if stderr.startswith(prompt):
                stderr = stderr[len(prompt):]
                if stderr.startswith(b'\n'):
                    stderr = stderr[1:]
        return rc, stdout, stderr

    def _become_prompt(self) -> bytes | None:
        """The prompt the become method will print before reading the password from stdin; None when it will not ask.

        Only sudo can take a password here: `sudo -S` reads it from stdin. Other methods (su, doas...) read it
        from a terminal, which the session's commands do not have; they work when they need no password.
        """
        name = getattr(self.become, 'name', '').rsplit('.', 1)[-1]
        password = self.become.get_option('become_pass')
        if name != 'sudo':
            if password:
                raise AnsibleError(f'cloudexec.core.ali_eci cannot answer the password prompt of become_method {name}: it reads '
                                   'the password from a terminal. Use become_method sudo (its -S option reads the password '
                                   'from stdin), or let the target user become without a password.')
            return None
        if not password:
            return None
        user = self.become.get_option('become_user') or 'root'
        exe = self.become.get_option('become_exe') or 'sudo'
        rc, _out, _err = self._run(f'{shlex.quote(exe)} -n -u {shlex.quote(user)} true', None)
        if rc == 0:
            return None  # no password needed (NOPASSWD, or a cached timestamp)
        return to_bytes(self.become.prompt)

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        display.vvv(f'PUT {in_path} TO {out_path}', host=self._play_context.remote_addr)
        if not os.path.exists(to_bytes(in_path, errors='surrogate_or_strict')):
            raise AnsibleFileNotFound(f'file or module does not exist: {in_path}')
        try:
            stats = file_transfer.put_file(self._run, in_path, out_path)
        except CloudExecError as exc:
            raise AnsibleError(f'Failed to copy {in_path} to {out_path}: {exc}') from None
        display.vvvv(f'PUT done: {stats["bytes"]} bytes in {stats["chunks"]} chunk(s)', host=self._play_context.remote_addr)

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv(f'FETCH {in_path} TO {out_path}', host=self._play_context.remote_addr)
        try:
            file_transfer.fetch_file(self._run, in_path, out_path)
        except file_transfer.RemoteFileNotFound as exc:
            raise AnsibleFileNotFound(str(exc)) from None
        except CloudExecError as exc:
            raise AnsibleError(f'Failed to fetch {in_path}: {exc}') from None

    def reset(self):
        """End the background session: the next task opens a new one."""
        if self._broker is None:
            try:
                options = self._target_options()
            except AnsibleError:
                return
            self._broker = BrokerClient(KIND, options, key_options=dict(options))
        display.vvv('ECI EXEC: closing the session (reset_connection)', host=self._play_context.remote_addr)
        self._broker.stop()
        self._broker = None
        self._connected = False

    def close(self):
        """Let go of the broker; its session stays open for the next task."""
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        self._connected = False
