# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The connection plugin behaviour shared by every transport that keeps a session in a broker.

aws_ecs and ali_eci differ only in their options and in which session opener their broker runs;
running commands, become, file transfer, reset and close are the same and live here once.
"""

from __future__ import annotations

import os
import shlex

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.plugin_utils import file_transfer
from ansible_collections.cloudexec.core.plugins.plugin_utils.broker import BrokerClient

display = Display()


class BrokeredConnection(ConnectionBase):
    """A connection whose session lives in a per-host broker (see broker.py)."""

    has_pipelining = True
    # Commands run through `sh -c` wrappers in the target; Ansible's own quoting is kept intact.
    has_tty = False
    # Set by each plugin: the broker's OPENERS key, and how messages name the session.
    broker_kind = ''
    session_label = ''

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._broker: BrokerClient | None = None

    def _target_options(self) -> dict:
        """The broker's options: the target, the credentials, shell and timeouts (read here: options are set after __init__)."""
        raise NotImplementedError

    def _describe_target(self, options: dict) -> str:
        """The target in words, for -vvv output (never a secret)."""
        raise NotImplementedError

    def _connect(self):
        if self._broker is None:
            self._timeouts()
            options = self._target_options()
            # The broker key covers the target and the credentials; secrets only as part of a hash.
            self._broker = BrokerClient(self.broker_kind, options, key_options=dict(options),
                                        start_timeout=float(options['connect_timeout']) + 30,
                                        log=lambda msg: display.vvv(msg, host=self._play_context.remote_addr),
                                        notify=self._notify)
            display.vvv(f'{self.session_label.upper()}: {self._describe_target(options)}', host=self._play_context.remote_addr)
            try:
                self._broker.connect()
            except CloudExecError as exc:
                self._broker = None
                raise AnsibleConnectionFailure(f'Cannot open an {self.session_label} session: {exc}') from None
        self._connected = True
        return self

    def _notify(self, text: str, worrying: bool) -> None:
        """What became of an abandoned command: a warning when it may still run, else a -v message."""
        if worrying:
            display.warning(f'{self._play_context.remote_addr}: {text}')
        else:
            display.v(text, host=self._play_context.remote_addr)

    def _timeouts(self) -> tuple[float, float]:
        """(command_timeout, connect_timeout), refused unless positive: 0 must not mean "the default" or "no limit"."""
        values = []
        for name in ('command_timeout', 'connect_timeout'):
            value = self.get_option(name)
            if value is None or float(value) <= 0:
                raise AnsibleError(f'{self.transport}: {name} must be a positive number of seconds, not {value!r}')
            values.append(float(value))
        return values[0], values[1]

    def _run(self, cmd: str, in_data: bytes | None) -> tuple[int, bytes, bytes]:
        command_timeout, connect_timeout = self._timeouts()
        self._connect()
        try:
            # A command queued behind another caller's waits as long as a new session may take to open.
            return self._broker.exec(cmd, in_data, command_timeout, wait=connect_timeout, connect_timeout=connect_timeout)
        except CloudExecError as exc:
            if getattr(exc, 'deadline', False) or exc.code in ('SessionBusy', 'InvalidParameter', 'CommandAbandoned'):
                raise AnsibleError(str(exc)) from None
            if getattr(exc, 'may_have_run', False):
                # The target is reachable (the next task opens a new session): fail the task, not the host,
                # and say that the command may have run rather than run it twice.
                said = 'may have run' in str(exc)   # most of our errors say it already, with their own remedy
                raise AnsibleError(f'{self.session_label} session failed while the command ran: {exc}'
                                   + ('' if said else ' The command may have run: check its effects before running it again')
                                   + ' (the next task opens a new session).') from None
            raise AnsibleConnectionFailure(f'{self.session_label} session failed: {exc}') from None

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
        if sudoable and self.become and rc != 0 and to_bytes(self.become.success or '\0') not in stdout:
            # The become method itself failed, before the command started: say why, as ssh and local do.
            if prompt is not None and self.become.check_incorrect_password(stderr):
                raise AnsibleError(f'Incorrect {self.become.name} password (the target refused it)')
            if self.become.check_missing_password(stderr):
                raise AnsibleError(f'Missing {self.become.name} password: the target asks for one; set ansible_become_password')
        if prompt is not None:
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
                raise AnsibleError(f'{self.transport} cannot answer the password prompt of become_method {name}: it reads '
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
            self._broker = BrokerClient(self.broker_kind, options, key_options=dict(options), notify=self._notify)
        display.vvv(f'{self.session_label.upper()}: closing the session (reset_connection)', host=self._play_context.remote_addr)
        self._broker.stop()
        self._broker = None
        self._connected = False

    def close(self):
        """Let go of the broker; its session stays open for the next task."""
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        self._connected = False
