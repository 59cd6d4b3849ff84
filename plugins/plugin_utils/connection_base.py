# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one base of every cloudexec.core connection plugin: a connection is this base plus one transport.

Running commands, become, pipelining, file transfer, timeouts, reset and close, how failures become
Ansible's errors, and what is said about abandoned commands live here once. A plugin adds its options
(DOCUMENTATION, with the shared fragment cloudexec.core.connection), reads them into the transport's
options (`_target_options`), names its target for -vvv (`_describe_target`), and says where its
transport lives (`_open_client`): SessionConnection for every transport today, whose session (or, for Cloud
Assistant, SDK client) lives in a per-host broker across tasks.
See transport.py for the contract and docs/architecture.md for the picture.
"""

from __future__ import annotations

import os
import shlex
import time
import typing as t

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, RemoteFileNotFound
from ansible_collections.cloudexec.core.plugins.plugin_utils.broker import BrokerClient
from ansible_collections.cloudexec.core.plugins.plugin_utils.transport import TransportClient

display = Display()

# Failures that fail the task but leave the host reachable (the next task can run).
_TASK_FAILURES = frozenset(('SessionBusy', 'InvalidParameter', 'CommandAbandoned', 'CommandCancelled'))


class CloudExecConnection(ConnectionBase):
    """A connection: the shared behaviour, over the TransportClient that a plugin opens."""

    has_pipelining = True
    # Commands run through `sh -c` wrappers on the target; Ansible's own quoting is kept intact.
    has_tty = False
    # Set by each plugin: how messages name the way in ('ECS Exec', 'ECI exec', 'Cloud Assistant').
    label = ''
    # Whether the plugin has the connect_timeout option (the stream transports: a session to open).
    has_connect_timeout = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._client: TransportClient | None = None

    # ---- what each plugin provides

    def _target_options(self) -> dict[str, t.Any]:
        """The transport's options: the target, the credentials, timeouts (read here: options are set after __init__)."""
        raise NotImplementedError

    def _describe_target(self, options: dict[str, t.Any]) -> str:
        """The target in words, for -vvv output (never a secret)."""
        raise NotImplementedError

    def _open_client(self, options: dict[str, t.Any]) -> TransportClient:
        """Reach the transport (start or join its broker, or build it here); CloudExecError when the host cannot be reached."""
        raise NotImplementedError

    def _reset_target(self, options: dict[str, t.Any]) -> None:
        """reset_connection when this task has not reached the transport yet (a session may live on in a broker)."""

    # ---- shared

    @property
    def _host(self) -> str:
        return self._play_context.remote_addr

    def _notify(self, text: str, worrying: bool) -> None:
        """What became of an abandoned command: a warning when it may still run, else a -v message."""
        if worrying:
            display.warning(f'{self._host}: {text}')
        else:
            display.v(text, host=self._host)

    def _seconds(self, name: str) -> float:
        """A timeout option, refused unless positive: 0 must not mean "the default" or "no limit"."""
        value = self.get_option(name)
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = 0.0
        if seconds <= 0:
            raise AnsibleError(f'{self.transport}: {name} must be a positive number of seconds, not {value!r}')
        return seconds

    def _command_timeout(self) -> float:
        if self.has_connect_timeout:
            self._seconds('connect_timeout')
        return self._seconds('command_timeout')

    def _connect(self):
        if self._client is None:
            self._command_timeout()
            options = self._target_options()
            display.vvv(f'{self.label.upper()}: {self._describe_target(options)}', host=self._host)
            try:
                self._client = self._open_client(options)
            except CloudExecError as exc:
                raise AnsibleConnectionFailure(f'Cannot reach {self._describe_target(options)} through {self.label}: {exc}') from None
        self._connected = True
        return self

    def _failure(self, exc: CloudExecError, what: str) -> AnsibleError:
        """The one mapping of a transport's failure to Ansible's errors.

        Unreachable (AnsibleConnectionFailure: the host drops out of the play) only when the target cannot run
        anything; a failure that may have let the command run fails the task and says so, never runs it twice.
        """
        if isinstance(exc, RemoteFileNotFound):
            return AnsibleFileNotFound(str(exc))
        if getattr(exc, 'unreachable', False):
            return AnsibleConnectionFailure(f'{what}: {exc}')
        if getattr(exc, 'deadline', False) or exc.code in _TASK_FAILURES:
            return AnsibleError(f'{what}: {exc}')
        if getattr(exc, 'may_have_run', False):
            said = 'may have run' in str(exc)   # most of our errors say it already, with their own remedy
            return AnsibleError(f'{what}: {exc}' + ('' if said else ' The command may have run: check its effects before running it '
                                                    'again'))
        return AnsibleConnectionFailure(f'{what}: {exc}')

    def _run(self, cmd: str, in_data: bytes | None, private: int = 0) -> tuple[int, bytes, bytes]:
        timeout = self._command_timeout()
        self._connect()
        try:
            return t.cast(TransportClient, self._client).run(cmd, in_data, timeout, private)
        except CloudExecError as exc:
            raise self._failure(exc, f'{self.label} failed') from None

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        display.vvv(f'EXEC {cmd}', host=self._host)
        stdin = to_bytes(in_data) if in_data is not None else None
        prompt = None
        private = 0
        if sudoable and self.become and self.become.expect_prompt():
            prompt = self._become_prompt()
            if prompt is not None:
                # sudo -S reads the password from the first line of stdin when it needs one; the command gets the rest.
                # That line is private: a transport never keeps it (module caches) nor logs it.
                password = to_bytes(self.become.get_option('become_pass') or '')
                stdin = password + b'\n' + (stdin or b'')
                private = len(password) + 1
        started = time.monotonic()
        rc, stdout, stderr = self._run(to_text(cmd), stdin, private)
        # The cost of this exec (docs/performance.md): time, and what the transport counted (round trips, bytes, frames).
        trace = ', '.join(f'{value} {name}' for name, value in (getattr(self._client, 'last_trace', None) or {}).items())
        display.vvvv(f'TRACE exec {time.monotonic() - started:.3f} s, {len(stdin or b"")} bytes of stdin'
                     f'{": " + trace if trace else ""}', host=self._host)
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
        from a terminal, which our commands do not have; they work when they need no password.
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
        display.vvv(f'PUT {in_path} TO {out_path}', host=self._host)
        if not os.path.exists(to_bytes(in_path, errors='surrogate_or_strict')):
            raise AnsibleFileNotFound(f'file or module does not exist: {in_path}')
        timeout = self._command_timeout()
        self._connect()
        try:
            stats = t.cast(TransportClient, self._client).put_file(in_path, out_path, timeout)
        except CloudExecError as exc:
            raise self._failure(exc, f'Failed to copy {in_path} to {out_path}') from None
        display.vvvv(f'PUT done: {stats}', host=self._host)

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv(f'FETCH {in_path} TO {out_path}', host=self._host)
        timeout = self._command_timeout()
        self._connect()
        try:
            stats = t.cast(TransportClient, self._client).fetch_file(in_path, out_path, timeout)
        except CloudExecError as exc:
            raise self._failure(exc, f'Failed to fetch {in_path}') from None
        display.vvvv(f'FETCH done: {stats}', host=self._host)

    def reset(self):
        """End the session, if any (meta: reset_connection): the next task opens a new one."""
        display.vvv(f'{self.label.upper()}: reset_connection', host=self._host)
        if self._client is not None:
            self._client.reset()
        else:
            try:
                options = self._target_options()
            except AnsibleError:
                return
            self._reset_target(options)
        self.close()

    def close(self):
        """Let go of the transport (a broker keeps its session for the next task)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._connected = False


class SessionConnection(CloudExecConnection):
    """A connection over a stream transport, whose session lives in a per-host broker across tasks (broker.py)."""

    # Set by each plugin: the broker's OPENERS key.
    broker_kind = ''
    # The options every session connection documents (doc fragments cloudexec.core.connection and .session) and its broker
    # and session opener read.
    SESSION_OPTIONS = ('shell', 'idle_timeout', 'piece_cache', 'connect_timeout', 'warm_python')

    def _session_options(self) -> dict[str, t.Any]:
        """The values of SESSION_OPTIONS for this host."""
        return {name: self.get_option(name) for name in self.SESSION_OPTIONS}

    def _broker_client(self, options: dict[str, t.Any]) -> BrokerClient:
        # The broker key covers the target and the credentials; secrets only as part of a hash.
        return BrokerClient(self.broker_kind, options, key_options=dict(options),
                            start_timeout=float(options['connect_timeout']) + 30,
                            log=lambda msg: display.vvv(msg, host=self._host), notify=self._notify)

    def _open_client(self, options: dict[str, t.Any]) -> TransportClient:
        client = self._broker_client(options)
        client.connect()
        return client

    def _reset_target(self, options: dict[str, t.Any]) -> None:
        self._broker_client(options).stop()
