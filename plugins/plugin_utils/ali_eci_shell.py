# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Open the long-lived shell of the ali_eci connection: ExecContainerCommand, the exec websocket, `sh -s`.

ExecContainerCommand's Command is limited to 20 items of 256 characters, so only a short bootstrap
travels in it; every real command goes over the websocket as stdin of the long-lived shell. The
session runs without a TTY (stdin and output are pipes), so bytes pass untouched and stdout and
stderr arrive on channels 1 and 2; both feed the framing parser (the wrapped commands report their
own stderr inside the framed stdout). The stream's "ready" message and its status message (JSON,
plain text, on channel 3 or 4, or none at all: see module_utils/eci.py) never reach that parser: a
status only means the shell is gone, and its text explains why.
"""

from __future__ import annotations

import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud, eci, remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, SessionClosed, ValidationError
from ansible_collections.cloudexec.core.plugins.plugin_utils.persistent_shell import PersistentShell, bootstrap_command, module_cache_for


class EciByteChannel:
    """An EciExecStream as the ByteChannel a PersistentShell drives: stdin in, merged stdout/stderr bytes out."""

    def __init__(self, stream: eci.EciExecStream, where: str) -> None:
        self.stream = stream
        self.where = where

    def send(self, data: bytes) -> None:
        """Write to the shell's stdin (channel 0); a lost stream raises EciStreamError (StreamDropped)."""
        if self.stream.status is not None:
            raise self._closed(self.stream.status, sent=False)
        try:
            self.stream.send(data)
        except CloudExecError as exc:
            if exc.code != 'StreamNotOpen':
                raise
            raise self._closed(self.stream.status, sent=False) from None  # closed by the service in an earlier read

    def read(self, timeout: float) -> bytes:
        """stdout and stderr bytes that arrived within timeout (b'' when none); raises when the session ended.

        The service sends the shell's exit status just before it closes the stream: from then on the shell is gone,
        so the session counts as ended at once (output that came with the status belongs to no finished command).
        """
        try:
            events = self.stream.read(timeout)
        except eci.EciStreamClosed as exc:
            raise self._closed(exc.status) from None
        if any(name == eci.STATUS for name, _data in events):
            raise self._closed(self.stream.status)
        return b''.join(data for name, data in events if name in (eci.STDOUT, eci.STDERR))

    def _closed(self, status: eci.ExecStatus | None, sent: bool = True) -> SessionClosed:
        detail = ''
        if status is not None:
            # The service's own words when it gave any (a start failure: "OCI runtime exec failed ...").
            detail = f' ({status.message})' if status.message else (
                f' with exit code {status.exit_code}' if status.exit_code else ' (success)')
        # When the send itself found the stream closed, nothing of the command reached the shell.
        return SessionClosed(f'the shell of the ECI exec session in {self.where} ended{detail}', provider='alicloud',
                             remedy='Retry: a new session will be opened', input_acknowledged=None if sent else False)

    def close(self) -> None:
        """Close the websocket. The shell then reads end of file and exits; a command it still runs goes on
        (as with a kubelet): ending that is the broker's job (remote_shell.kill_tree_script)."""
        self.stream.close()


def session_argv(nonce: str, shell: str) -> list[str]:
    """The Command of the ExecContainerCommand call: a short bootstrap that starts `sh -s` on the stream's stdin."""
    bootstrap = bootstrap_command(nonce, shell)
    # Sized in UTF-8 bytes: the strictest reading of the API's "256 characters" (see eci.item_size).
    if eci.item_size(bootstrap) > eci.MAX_COMMAND_ITEM_LENGTH:
        raise ValidationError('shell', f'the session bootstrap for shell {shell!r} has {eci.item_size(bootstrap)} bytes, more than '
                                       f'the {eci.MAX_COMMAND_ITEM_LENGTH} that one ExecContainerCommand item holds',
                              remedy='Use a shorter path for the shell')
    return [shell, '-c', bootstrap]


def open_shell(options: dict[str, t.Any], log: t.Callable[[str], None]) -> PersistentShell:
    """Resolve the container, start one ECI exec session running a long-lived shell, and wait until it is ready."""
    auth = alicloud.AlicloudAuth.from_options(options.get)
    client = alicloud.eci_client(auth)
    target = eci.resolve_target(client, auth, group_id=options.get('container_group_id') or None,
                                group_name=options.get('container_group_name') or None,
                                container_name=options.get('container_name') or None)
    where = f'{target.group_id}/{target.container_name}'
    shell = options.get('shell') or '/bin/sh'
    nonce = remote_shell.new_nonce()
    connect_timeout = float(options.get('connect_timeout') or 60)
    argv = session_argv(nonce, shell)
    answer = eci.exec_container_command(client, auth, target, argv, sync=False, stdin=True, tty=False, retry_timeout=connect_timeout)
    uri = answer.get('WebSocketUri')
    if not uri:
        raise CloudExecError('ExecContainerCommand returned no WebSocketUri', code='NoWebSocketUri', provider='alicloud',
                             retryable=False, remedy='Retry; if it persists, check the ECI service health')
    stream = eci.EciExecStream(uri, connect_timeout=connect_timeout, log=log)
    stream.open()
    channel = EciByteChannel(stream, where)
    persistent = PersistentShell(channel, nonce, where=where, module_cache=module_cache_for(options))
    try:
        persistent.wait_ready(connect_timeout)
    except SessionClosed as exc:
        channel.close()
        # Before READY, an ended stream is a shell that did not start (the service's words, if any, are in the message).
        exc.remedy = f'Check that {shell} (the shell option) exists in the container and runs'
        raise
    except Exception:
        channel.close()
        raise
    log(f'ECI exec session ready in {where}')
    return persistent
