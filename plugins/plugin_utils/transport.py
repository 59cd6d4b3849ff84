# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The contract every transport of a cloudexec.core connection keeps (docs/architecture.md draws it).

A transport runs commands and moves files on one target. Every connection plugin is the shared base
(connection_base.CloudExecConnection) plus one transport:

- ``run(command, stdin=None, timeout=..., cancelled=None)`` returns a remote_shell.CommandResult: the
  command's exact stdout, its stderr apart, its real exit code.
  - When ``timeout`` passes, the transport ENDS the command on the target (it never just stops waiting)
    and raises DeadlineExceeded, whose message says what became of the command.
  - ``cancelled()`` is asked a few times a second; a reason from it raises CommandAbandoned at once (the
    command may still run: ending it is the transport host's job, see broker.Broker._end_abandoned).
  - Any other failure is a CloudExecError carrying ``may_have_run``: False only when the command surely
    never reached the target (it may then be sent once more), True otherwise; and ``unreachable``: True
    when the target cannot run anything at all (the host is unreachable, not just the task failed).
- ``put_file(in_path, out_path, timeout=..., cancelled=None)`` and ``fetch_file(...)`` move one file,
  verified with SHA-256, and return what they did ({'bytes': ...}); a missing file to fetch is
  errors.RemoteFileNotFound. A transport knows its own ceilings (how much stdin one command may carry)
  and sizes its chunks below them.
- ``close()`` ends the session, if there is one.

There are two kinds; both live in a per-host broker process (broker.py) across tasks:

- stream transports keep a session with a long-lived remote shell (PersistentShell over a ByteChannel:
  the SSM data channel of aws_ecs and aws_ssm, the ECI exec stream of ali_eci). Opening one costs an API
  call, a websocket and the agent's start-up; its commands take turns on the one shell.
- polled transports have no session (Cloud Assistant's RunCommand, polled: ali_assist_transport.py, served
  by ali_assist_host.py). What the broker keeps is the SDK, loaded once (importing it costs a task's worker
  half a second), and its HTTPS connection; commands run side by side and each ends its own command when
  ``cancelled()`` gives a reason, saying how in CommandAbandoned.ended.

The connection talks to either through a TransportClient, broker.BrokerClient.
"""

from __future__ import annotations

import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils.remote_shell import CommandResult

Cancelled = t.Callable[[], t.Optional[str]]


class Transport(t.Protocol):
    """What a transport does (see the module docstring for its errors)."""

    where: str

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 3600.0,
            cancelled: Cancelled | None = None, private: int = 0) -> CommandResult:
        """Run one shell command line on the target; the first `private` bytes of stdin (a become password) are never kept."""

    def put_file(self, in_path: str, out_path: str, *, timeout: float = 3600.0, cancelled: Cancelled | None = None) -> dict[str, t.Any]:
        """Copy a local file to the target."""

    def fetch_file(self, in_path: str, out_path: str, *, timeout: float = 3600.0,
                   cancelled: Cancelled | None = None) -> dict[str, t.Any]:
        """Copy a file of the target to a local file."""

    def close(self) -> None:
        """End the session, if any."""


class TransportClient(t.Protocol):
    """How a connection plugin reaches its transport, wherever it lives (a broker, or this process)."""

    def run(self, command: str, stdin: bytes | None, timeout: float, private: int = 0) -> tuple[int, bytes, bytes]:
        """(rc, stdout, stderr) of one command; stdin is module code, its first `private` bytes a become password."""

    def put_file(self, in_path: str, out_path: str, timeout: float) -> dict[str, t.Any]:
        """Copy a local file to the target."""

    def fetch_file(self, in_path: str, out_path: str, timeout: float) -> dict[str, t.Any]:
        """Copy a file of the target to a local file."""

    def reset(self) -> None:
        """End the session now (meta: reset_connection), ending a command that still runs."""

    def close(self) -> None:
        """Let go of the transport at the end of a task (a broker keeps its session for the next one)."""
