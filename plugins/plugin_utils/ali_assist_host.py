# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Cloud Assistant behind the per-host broker: what broker.Broker serves for the ali_assist connection.

Cloud Assistant has no session to keep, but a task's worker process would pay, on every task, for
importing Alibaba's Tea SDK (about half a second: it loads aiohttp and the credential providers) and
for a new HTTPS connection to the ECS API. The broker process pays both once per host and play, and
it watches its callers: a caller that leaves (a task timeout, Ctrl-C) has its command ended at once
(StopInvocation and a sweep of its processes), not by the next task.

Unlike a session, invocations do not share a stream: commands of several callers (two runs on one
instance) run side by side, each its own AssistTransport over the one SDK client (`concurrent`).
"""

from __future__ import annotations

import os
import threading
import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud, remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.plugin_utils import ali_assist_memory as memory
from ansible_collections.cloudexec.core.plugins.plugin_utils import ali_assist_transport as at
from ansible_collections.cloudexec.core.plugins.plugin_utils import broker

# The Target fields the connection passes in the broker's options (beside the auth options).
TARGET_FIELDS = ('instance_id', 'container_id', 'container_name', 'username', 'working_dir', 'command_timeout',
                 'poll_initial', 'poll_max', 'piece_cache', 'output_quota', 'warm_python', 'warm_idle')


class AssistHost:
    """One instance (or container) reached through Cloud Assistant: the broker's "shell" for ali_assist."""

    # Each command is its own invocation: the broker runs callers side by side instead of queueing them.
    concurrent = True
    # Nothing can break: there is no session (a failed call fails its own command only).
    broken = False

    def __init__(self, options: dict[str, t.Any], log: t.Callable[[str], None]) -> None:
        self.auth = alicloud.AlicloudAuth.from_options(options.get)
        self.target = at.Target(**{name: options[name] for name in TARGET_FIELDS if name in options})
        self.client = alicloud.ecs_client(self.auth)
        self.where = self.target.describe()
        self.log = log
        # What the transport says while it serves a request (staging, pages read back): the lines go back to that
        # request's caller, which shows them at -vvv. Requests run side by side, each in its own thread.
        self._said = threading.local()
        self.warm_state: dict[str, bool] = {}   # the warm interpreter's file was sent (warm_python)
        # What became of a command ended for an earlier, interrupted run: the broker passes it to its next caller.
        self.notify: t.Callable[[str, bool], None] = lambda text, worrying: log(text)
        directory = self._control_dir()
        self.ledger = memory.RunLedger(directory, self._key('runs')[:16]) if directory else memory.RunLedger(None, '')
        self.quota_memory = memory.QuotaMemory(os.path.join(directory, f'assist-{self._key("quota")}.quota') if directory else None)
        cache = {'user': self.target.username, 'cache': self.target.piece_cache}
        self.piece_memory = memory.PieceMemory(os.path.join(directory, f'assist-{self._key("pieces", cache)}.pieces')
                                               if directory and self.target.piece_cache else None)

    def _control_dir(self) -> str | None:
        try:
            return broker.control_dir()
        except (CloudExecError, OSError) as exc:
            self.log(f'nothing can be kept about {self.where} ({exc})')
            return None

    def _key(self, what: str, extra: dict[str, t.Any] | None = None) -> str:
        """The name of what this controller keeps about the target (its run records, its quota, its pieces)."""
        return broker.broker_key(f'ali_assist-{what}', {'region': self.auth.alicloud_region, 'instance': self.target.instance_id,
                                                        'container': self.target.container_id or self.target.container_name,
                                                        **(extra or {})})

    def transport(self) -> at.AssistTransport:
        """A transport for one request: its own API counts and -vvv lines, the shared client and memories."""
        self._said.lines = []
        return at.AssistTransport(self.client, self.auth, self.target, log=self._say, notify=self.notify,
                                  memory=self.piece_memory, ledger=self.ledger, quota_memory=self.quota_memory,
                                  warm_state=self.warm_state)

    def _say(self, text: str) -> None:
        lines = getattr(self._said, 'lines', None)
        if lines is not None:
            lines.append(f'ALI ASSIST: {text}')

    def take_log(self) -> list[str]:
        """The -vvv lines of the request this thread served (counts, sizes and ids: never data or secrets)."""
        lines, self._said.lines = getattr(self._said, 'lines', None) or [], None
        return lines

    # ---- what the broker calls

    def idle_check(self) -> None:
        """Nothing to check between commands: there is no session to lose."""

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 3600.0, cancelled: t.Any = None,
            cache: bool = True, private: int = 0) -> remote_shell.CommandResult:
        """One command; the result carries `trace`, the API calls it took (each one a round trip)."""
        del cache  # the transport keeps only module code whatever the caller says (ali_assist_pieces.py)
        transport = self.transport()
        result = transport.run(command, stdin=stdin, timeout=timeout, cancelled=cancelled, private=private)
        result.trace = dict(transport.last_trace)
        return result

    def put_file(self, in_path: str, out_path: str, *, timeout: float = 3600.0, cancelled: t.Any = None) -> dict[str, t.Any]:
        """Copy a local file to the target."""
        return self.transport().put_file(in_path, out_path, timeout=timeout, cancelled=cancelled)

    def fetch_file(self, in_path: str, out_path: str, *, timeout: float = 3600.0, cancelled: t.Any = None) -> dict[str, t.Any]:
        """Copy a file of the target to a local file."""
        return self.transport().fetch_file(in_path, out_path, timeout=timeout, cancelled=cancelled)

    def close(self, grace: float = 0.0) -> None:
        """Nothing to close."""
        del grace


def open_host(options: dict[str, t.Any], log: t.Callable[[str], None]) -> AssistHost:
    """The broker's opener for ali_assist (broker.OPENERS): no API call yet, the first command makes the first one."""
    return AssistHost(options, log)
