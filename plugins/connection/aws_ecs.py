# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: aws_ecs
short_description: Run tasks inside ECS task containers through ECS Exec
version_added: 0.1.0
description:
  - Makes a container of a running Amazon ECS task an Ansible host, reached through ECS C(ExecuteCommand) and the
    Session Manager data channel, spoken in pure Python. No SSH, no C(session-manager-plugin) binary, no S3 bucket.
  - "One session per host is kept open across tasks by a small background broker (like SSH's ControlPersist), so a
    play costs about one C(ExecuteCommand) per host. It ends after O(idle_timeout) seconds without use, or on
    C(meta: reset_connection)."
  - Commands, pipelining and file transfers all travel over that one session; files are checksummed.
  - The container needs C(/bin/sh) (or O(shell)), and Python for modules other than M(ansible.builtin.raw).
author:
  - cloudexec.core maintainers (@cloudexec)
extends_documentation_fragment:
  - cloudexec.core.aws_auth.plugins
  - cloudexec.core.connection
  - cloudexec.core.connection.session
options:
  cluster:
    description:
      - The cluster name or ARN. The C(default) cluster when not set.
    type: str
    vars:
      - name: ansible_aws_ecs_cluster
    env:
      - name: CLOUDEXEC_AWS_ECS_CLUSTER
  task:
    description:
      - The task ARN or id. Defaults to the host's address (C(ansible_host), else the inventory name).
    type: str
    vars:
      - name: ansible_aws_ecs_task
  container:
    description:
      - The container name. Required only for tasks with more than one container.
    type: str
    vars:
      - name: ansible_aws_ecs_container
  shell:
    description:
      - The POSIX shell in the container that runs commands.
    type: str
    default: /bin/sh
    vars:
      - name: ansible_aws_ecs_shell
  idle_timeout:
    description:
      - Seconds the background session may stay unused before it is closed.
      - ECS itself ends sessions after 20 minutes without traffic.
    vars:
      - name: ansible_aws_ecs_idle_timeout
  warm_python:
    vars:
      - name: ansible_aws_ecs_warm_python
  connect_timeout:
    vars:
      - name: ansible_aws_ecs_connect_timeout
  command_timeout:
    vars:
      - name: ansible_aws_ecs_command_timeout
  piece_cache:
    vars:
      - name: ansible_aws_ecs_piece_cache
  pipelining:
    vars:
      - name: ansible_pipelining
      - name: ansible_aws_ecs_pipelining
notes:
  - The session token and stream URL never reach logs at any verbosity.
'''

EXAMPLES = r'''
# In an inventory (the cloudexec.core.aws_ecs inventory plugin builds these for you):
#   web-1:
#     ansible_connection: cloudexec.core.aws_ecs
#     ansible_aws_ecs_cluster: production
#     ansible_aws_ecs_task: 1f0e1c2d3b4a59687766554433221100
#     ansible_aws_ecs_container: web
#     ansible_aws_region: eu-west-1

- hosts: all
  gather_facts: true
  tasks:
    - name: Ship a config file into the container
      ansible.builtin.copy:
        src: app.conf
        dest: /etc/app.conf
        mode: "0644"
    - name: Close the ECS Exec session now rather than after the idle timeout
      ansible.builtin.meta: reset_connection
'''

from ansible.errors import AnsibleError

from ansible_collections.cloudexec.core.plugins.module_utils.auth_options import AWS_AUTH_ARGSPEC
from ansible_collections.cloudexec.core.plugins.plugin_utils.connection_base import SessionConnection


class Connection(SessionConnection):
    """ECS Exec as an Ansible connection."""

    transport = 'cloudexec.core.aws_ecs'
    broker_kind = 'aws_ecs'
    label = 'ECS Exec'

    def _target_options(self) -> dict:
        options = {name: self.get_option(name) for name in AWS_AUTH_ARGSPEC}
        options.update(
            cluster=self.get_option('cluster'),
            task=self.get_option('task') or self._play_context.remote_addr,
            container=self.get_option('container'),
            **self._session_options(),
        )
        if not options['task']:
            raise AnsibleError('cloudexec.core.aws_ecs needs a task: set ansible_aws_ecs_task (or ansible_host)')
        return options

    def _describe_target(self, options: dict) -> str:
        return f'task {options["task"]} container {options["container"] or "(only)"} cluster {options["cluster"] or "default"}'
