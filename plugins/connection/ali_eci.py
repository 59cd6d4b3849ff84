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
  - cloudexec.core.alicloud_auth.eci_endpoint
  - cloudexec.core.connection
  - cloudexec.core.connection.session
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
    vars:
      - name: ansible_ali_eci_idle_timeout
  warm_python:
    vars:
      - name: ansible_ali_eci_warm_python
  connect_timeout:
    vars:
      - name: ansible_ali_eci_connect_timeout
  command_timeout:
    vars:
      - name: ansible_ali_eci_command_timeout
  piece_cache:
    vars:
      - name: ansible_ali_eci_piece_cache
  pipelining:
    vars:
      - name: ansible_pipelining
      - name: ansible_ali_eci_pipelining
notes:
  - The exec WebSocketUri (whose query is a session token), the AccessKey secret and the STS token never reach logs at
    any verbosity.
  - A container group that is not C(Running), an unknown group or container, or a group with several containers and no
    O(container_name) make the host unreachable with the reason and what to do about it.
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

from ansible.errors import AnsibleError

from ansible_collections.cloudexec.core.plugins.module_utils.auth_options import ALICLOUD_AUTH_ARGSPEC
from ansible_collections.cloudexec.core.plugins.plugin_utils.connection_base import SessionConnection


class Connection(SessionConnection):
    """ECI ExecContainerCommand as an Ansible connection."""

    transport = 'cloudexec.core.ali_eci'
    broker_kind = 'ali_eci'
    label = 'ECI exec'

    def _target_options(self) -> dict:
        options = {name: self.get_option(name) for name in ALICLOUD_AUTH_ARGSPEC if name != 'ecs_endpoint'}  # ECI only
        group_id = self.get_option('container_group_id')
        group_name = self.get_option('container_group_name')
        if not group_id and not group_name:
            group_id = self._play_context.remote_addr
        options.update(
            container_group_id=group_id or None,
            container_group_name=None if group_id else group_name,
            container_name=self.get_option('container_name'),
            **self._session_options(),
        )
        if not options['container_group_id'] and not options['container_group_name']:
            raise AnsibleError('cloudexec.core.ali_eci needs a container group: set ansible_ali_eci_container_group_id '
                               '(or ansible_host, or ansible_ali_eci_container_group_name)')
        return options

    def _describe_target(self, options: dict) -> str:
        group = options['container_group_id'] or f'named {options["container_group_name"]}'
        return f'container group {group} container {options["container_name"] or "(only)"} region {options["alicloud_region"] or "(default)"}'
