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
  - cloudexec.core.connection
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
      - Seconds one command (or one file transfer) may run, between 1 and 86370. When they pass, the invocation is
        stopped with C(StopInvocation) and the command's processes on the instance are ended (the agent alone would
        leave its children running), and the task fails saying so.
      - A command abandoned by Ansible's C(timeout) keyword is ended the same way; one left by a run interrupted with
        Ctrl-C is ended by the next task on that instance. What became of it is said at C(-v), or as a warning when it
        may still run.
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
        C(~/) is the Cloud Assistant user's home. The directory is private (0700); pieces unused for a day are removed.
      - The controller remembers which pieces it sent to each instance in the private control directory
        (E(CLOUDEXEC_CONTROL_DIR), by default C(~/.ansible/cp/cloudexec)); a piece the instance lost is sent again.
      - Only module code goes through the cache (on the stdin of the interpreter, or C(AnsiballZ_*) files without
        pipelining, up to 1 MiB). The lines that hold a task's arguments (and a become password) are pieces of their
        own and are never kept; they travel inside the task's own C(RunCommand), so a task whose module the instance
        keeps is one C(RunCommand). Files of C(copy), C(template) and the like are never kept. An empty value turns the
        cache off.
    vars:
      - name: ansible_ali_assist_piece_cache
    env:
      - name: CLOUDEXEC_PIECE_CACHE
      - name: CLOUDEXEC_ALI_ASSIST_PIECE_CACHE
  idle_timeout:
    description:
      - Seconds the host's background process (see the notes) may stay unused before it exits.
    type: int
    default: 600
    vars:
      - name: ansible_ali_assist_idle_timeout
    env:
      - name: CLOUDEXEC_IDLE_TIMEOUT
  warm_python:
    description:
      - Run pipelined modules in forked children of a Python interpreter kept on the instance, which has imported
        Ansible's module_utils once, instead of a fresh interpreter per task (docs/performance.md).
      - Only a plain pipelined module of the Cloud Assistant user goes through it (pipelining on, no become, no
        C(environment)); everything else, and any module whose module_utils differ from those the interpreter
        imported, runs in a fresh interpreter as without this option.
      - The interpreter listens on a Unix socket in the C(warm) directory of O(piece_cache) (0700), one per Python
        path, and exits after O(idle_timeout) seconds without a module. Its source goes to the instance once per
        host and play, in a C(RunCommand) of its own.
      - Needs O(piece_cache).
    type: bool
    default: false
    vars:
      - name: ansible_ali_assist_warm_python
    env:
      - name: CLOUDEXEC_WARM_PYTHON
  pipelining:
    vars:
      - name: ansible_pipelining
      - name: ansible_ali_assist_pipelining
notes:
  - A task costs one C(RunCommand) and a few C(DescribeInvocationResults) per command, plus one C(RunCommand) per staged
    piece (about 18 KB of text or 13 KB of binary data) and per output page (about 74% of O(output_quota), 8.6 KB by
    default) when the input or output is large.
  - "The API calls are made by a small background process per host, started by the first task and kept across tasks
    (like SSH's ControlPersist): it loads Alibaba's SDK and opens its HTTPS connection once, not in every task. It
    exits after O(idle_timeout) seconds without use, or on C(meta: reset_connection). Its socket lives in
    C(~/.ansible/cp/cloudexec), a directory only the user can read (set E(CLOUDEXEC_CONTROL_DIR) to move it), and it
    gets its credentials on its standard input, never its command line. Commands of several runs on one instance run
    side by side, as Cloud Assistant allows."
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

import dataclasses

from ansible.errors import AnsibleConnectionFailure, AnsibleError

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud
from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant as ca
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.plugin_utils import ali_assist_transport as at
from ansible_collections.cloudexec.core.plugins.plugin_utils.connection_base import SessionConnection

# How long the host's broker may take to start (a Python process that imports the SDK; no API call yet).
BROKER_START = 60


class Connection(SessionConnection):
    """Cloud Assistant RunCommand as an Ansible connection: a polled transport, served by the host's broker.

    The task's worker never imports Alibaba's SDK: it checks the options and hands each command to the
    broker (plugin_utils/ali_assist_host.py), which makes the calls.
    """

    transport = 'cloudexec.core.ali_assist'
    broker_kind = 'ali_assist'
    label = 'Cloud Assistant'
    has_connect_timeout = False
    SESSION_OPTIONS = ('idle_timeout', 'piece_cache')

    def _target_options(self) -> dict:
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
        target = at.Target(instance_id=instance_id, container_id=self.get_option('container_id'),
                           container_name=self.get_option('container_name'), username=self.get_option('username'),
                           working_dir=self.get_option('working_dir'), command_timeout=timeout, poll_initial=poll_initial,
                           poll_max=max(poll_max, poll_initial), piece_cache=self.get_option('piece_cache') or None,
                           output_quota=quota, warm_python=bool(self.get_option('warm_python')),
                           warm_idle=int(self.get_option('idle_timeout')))
        try:
            auth = alicloud.AlicloudAuth.from_options(self.get_option)
        except CloudExecError as exc:
            # As when any other credential problem shows: the host cannot be reached.
            raise AnsibleConnectionFailure(f'Cannot reach instance {target.describe()} through Cloud Assistant: {exc}') from None
        # Credentials go to the broker on its stdin; they name it only through a hash (broker.broker_key).
        return {**dataclasses.asdict(auth), **dataclasses.asdict(target), 'idle_timeout': self.get_option('idle_timeout'),
                'connect_timeout': BROKER_START}

    def _describe_target(self, options: dict) -> str:
        container = options['container_id'] or options['container_name']
        where = f'{options["instance_id"]} (container {container})' if container else options['instance_id']
        return f'instance {where} in {options["alicloud_region"]}'
