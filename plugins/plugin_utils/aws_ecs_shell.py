# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Open the long-lived shell of the aws_ecs connection: ExecuteCommand, the data channel, `sh -s`."""

from __future__ import annotations

import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils import aws, aws_ecs, remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.session import DataChannelSession
from ansible_collections.cloudexec.core.plugins.plugin_utils.persistent_shell import PersistentShell, bootstrap_command, module_cache_for


def open_shell(options: dict[str, t.Any], log: t.Callable[[str], None]) -> PersistentShell:
    """Resolve the target, start one ECS Exec session running a long-lived shell, and wait until it is ready."""
    auth = aws.AwsAuth.from_options(options.get, environ={})
    client = aws.aws_client(auth, 'ecs')
    target = aws_ecs.resolve_target(client, options.get('cluster'), options['task'], options.get('container'))
    shell = options.get('shell') or '/bin/sh'
    nonce = remote_shell.new_nonce()
    connect_timeout = float(options.get('connect_timeout') or 60)
    session = aws_ecs.execute_command(client, target, aws_ecs.shell_command(bootstrap_command(nonce, shell), shell),
                                      timeout=connect_timeout)
    channel = DataChannelSession(session.stream_url, session.token, session_id=session.session_id, target_id=target.ssm_target,
                                 connect_timeout=connect_timeout, log=log, generate_data_key=aws.kms_data_key_provider(auth),
                                 resume_session=aws.ssm_session_resumer(auth))
    channel.open()
    persistent = PersistentShell(channel, nonce, where=f'{target.task_id}/{target.container_name}',
                                 module_cache=module_cache_for(options))
    try:
        persistent.wait_ready(connect_timeout)
    except Exception:
        channel.close()
        raise
    log(f'session {session.session_id} ready in {target.task_id}/{target.container_name}')
    return persistent
