# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""One long-lived remote POSIX shell behind an exec session: the stream transports' side of the contract.

Opening an exec session costs an API call, a websocket and the agent's start-up (about a second on
ECS). A connection pays that once per host: the session runs `sh -s` reading scripts from its stdin
(a terminal in raw mode on ECS Exec, a pipe on ECI), and every command is a remote_shell.wrap() script
framed with its own nonce. Files move over the same session (file_transfer.py), in chunks sized below
what one command's stdin may carry on the channel. It keeps the transport contract of transport.py.
"""

from __future__ import annotations

import os
import re
import time
import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils import remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, CommandAbandoned, DeadlineExceeded
from ansible_collections.cloudexec.core.plugins.plugin_utils import file_transfer, warm_python
from ansible_collections.cloudexec.core.plugins.plugin_utils.module_cache import ModuleCache


class ByteChannel(t.Protocol):
    """What a transport offers: send bytes to the remote terminal, read what it prints, close."""

    def send(self, data: bytes) -> None:
        """Queue bytes for the remote side's stdin."""

    def read(self, timeout: float) -> bytes:
        """Output bytes, b'' after timeout seconds; raises CloudExecError when the session ends."""

    def close(self) -> None:
        """End the session."""

    # Optionally, `max_send`: the most bytes one send() may carry (the SSM channel's outgoing buffer).


# Room a command's own wrapper lines take in a send, beside its stdin.
_WRAPPER_ROOM = 8192


def bootstrap_command(nonce: str, shell: str = '/bin/sh') -> str:
    """The command the exec API starts: raw terminal, a READY marker, then a non-interactive `sh -s`.

    The READY marker carries the shell's pid and start time ($$ survives the exec): if a command is
    abandoned, that names the process tree to end from another session (see remote_shell.kill_tree_script).
    stderr of the long-lived shell goes to /dev/null: with stdin and stderr both terminals the shell
    would be interactive and print prompts into our stream. Each command's own stderr is captured by
    its wrapper anyway.
    """
    return ("stty raw -echo 2>/dev/null; __ce_t=; { read -r __ce_l </proc/$$/stat; } 2>/dev/null && "
            "set -- ${__ce_l##*[)] } && __ce_t=${20}; "
            f"printf '\\n@@CE%s:READY:%s:%s@@\\n' {nonce} $$ \"$__ce_t\"; exec {shell} -s 2>/dev/null")


def module_cache_for(options: t.Mapping[str, t.Any]) -> ModuleCache | None:
    """The module cache a session's options ask for (option piece_cache: a directory on the target; empty: none)."""
    directory = options.get('piece_cache')
    if not directory:
        return None
    cache = ModuleCache(directory)
    if options.get('warm_python'):
        # The warm interpreter lives in the cache's directory and exits when idle as long as the session would.
        cache.warm_idle = int(options.get('idle_timeout') or 600)
    return cache


def _as_sent(value: t.Any) -> t.Any:
    """Text as the latin-1 code points of its UTF-8 bytes: the script goes out as latin-1, so the target gets exact UTF-8."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode('utf-8', 'surrogateescape').decode('latin-1')
    return [_as_sent(str(item)) for item in value]


class ShellBroken(CloudExecError):
    """The long-lived shell can no longer be trusted (a command overran its deadline, the session ended)."""


class PersistentShell:
    """Runs framed commands through one long-lived remote shell."""

    def __init__(self, channel: ByteChannel, nonce: str, *, clock: t.Callable[[], float] = time.monotonic,
                 where: str = 'the target', module_cache: ModuleCache | None = None) -> None:
        self.channel = channel
        self.nonce = nonce
        self.where = where
        self._clock = clock
        self.broken: str | None = None
        self.commands = 0
        self.have_base64: bool | None = None
        # Module code kept on the target between tasks (module_cache.py); None: off, or the target lacks base64 or head.
        self.module_cache = module_cache
        # The long-lived shell's process on the target (pid, start time), from its READY marker.
        self.shell_pid: str | None = None
        self.shell_start = ''
        # Whether this session wrote the warm interpreter's server file on the target (warm_python.py).
        self.warm_written = False
        # For the per-exec trace (-vvvv): what went each way, and the round trips waited for (one per command).
        self.round_trips = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    def wait_ready(self, timeout: float) -> None:
        """Read until the bootstrap's READY marker (the session's banner, if any, is dropped)."""
        ready = re.compile(re.escape(remote_shell.marker(self.nonce, 'READY')[:-2]) + rb'(?::(\d+):(\d*))?@@')
        seen = bytearray()
        deadline = self._clock() + timeout
        while (found := ready.search(seen)) is None:
            remaining = deadline - self._clock()
            if remaining <= 0:
                self.broken = 'no READY marker'
                raise DeadlineExceeded(f'The shell in {self.where} did not start within {timeout:g} seconds',
                                       remedy='Check that /bin/sh (or the shell option) exists in the target')
            seen += self.channel.read(min(remaining, 1.0))
            del seen[:-4096]  # only the tail can still hold the marker
        if found.group(1):
            self.shell_pid, self.shell_start = found.group(1).decode(), found.group(2).decode()
        tools = self.run('for __ce_t in base64 head sha256sum; do command -v "$__ce_t" >/dev/null 2>&1 && printf "%.1s" "$__ce_t"; done',
                         timeout=timeout).stdout
        self.have_base64 = b'b' in tools
        if not all(tool in tools for tool in (b'b', b'h', b's')):
            self.module_cache = None   # the cache writes pieces with head or base64, and checks them with sha256sum

    def run(self, command: str | t.Sequence[str], *, stdin: bytes | None = None, timeout: float = 3600.0,
            chdir: str | None = None, cancelled: t.Callable[[], str | None] | None = None, cache: bool = False,
            private: int = 0) -> remote_shell.CommandResult:
        """Run one command; stdout, stderr and rc come back exactly.

        cancelled() is asked a few times a second while the command runs; a reason from it (the caller went
        away) raises CommandAbandoned at once, and the shell is no longer used: the command may still run
        on the target, and ending it is the caller's job (the broker does it from a new session).
        """
        if self.broken:
            raise ShellBroken(f'The session to {self.where} is unusable ({self.broken})', code='ShellBroken',
                              provider='cloudexec', remedy='Retry: a new session will be opened', retryable=False)
        nonce = remote_shell.new_nonce()
        plan = None
        if cache and self.module_cache is not None and self.module_cache.wanted(stdin):
            # Module code: the pieces the target keeps are only named (module_cache.py).
            plan = self.module_cache.plan(t.cast(bytes, stdin), nonce, private)
            prelude, sent_command = plan.prelude, command
            warm = warm_python.rewrite(command, self.module_cache.word, self.module_cache.warm_idle) \
                if self.module_cache.warm_idle and isinstance(command, str) and not private else None
            if warm is not None:
                # A plain pipelined module: it runs in a child of the target's warm interpreter (warm_python.py).
                sent_command = warm
                if not self.warm_written:
                    prelude = prelude + [warm_python.server_file(self.module_cache.word)]
                    self.warm_written = True
            script = remote_shell.wrap(_as_sent(sent_command), nonce, chdir=_as_sent(chdir), prelude=prelude, stdin_feed=plan.feed)
        else:
            via = None
            if stdin is not None and remote_shell.stdin_method(stdin, nonce) != remote_shell.STDIN_HEREDOC and not self.have_base64:
                via = remote_shell.STDIN_PRINTF
            script = remote_shell.wrap(_as_sent(command), nonce, stdin=stdin, stdin_via=via, chdir=_as_sent(chdir))
        parser = remote_shell.OutputParser(nonce)
        deadline = self._clock() + timeout
        self.commands += 1
        heard_before = self._heard()
        try:
            sent = script.encode('latin-1')
            self.channel.send(sent)
            self.bytes_sent += len(sent)
            self.round_trips += 1
            result = remote_shell.read_result(self._read, parser, deadline=deadline, clock=self._clock, cancelled=cancelled)
            if result is None:
                # The shell is still busy with the command, and nothing can interrupt it on a raw terminal: the
                # caller ends the session and the command's processes.
                self.broken = 'a command overran its timeout'
                raise DeadlineExceeded(f'The command in {self.where} did not finish within {timeout:g} seconds '
                                       f'({"it had started" if parser.started else "it may not have started"})',
                                       remedy='Raise the timeout, or use async for long jobs')
        except CommandAbandoned:
            self.broken = 'a command was abandoned'
            raise
        except CloudExecError as exc:
            if not isinstance(exc, DeadlineExceeded):
                self.broken = exc.code or 'session ended'
                exc.may_have_run = self._may_have_run(exc, parser, heard_before)  # type: ignore[attr-defined]
            raise
        if plan is not None:
            t.cast(ModuleCache, self.module_cache).ran(plan, result.outcome)
            if result.outcome == remote_shell.EVICTED:
                # The target lost kept pieces, which its script found before the command started: send it all inline.
                return self.run(command, stdin=stdin, timeout=max(deadline - self._clock(), 1.0), chdir=chdir, cancelled=cancelled)
        return result

    def _read(self, timeout: float) -> bytes:
        data = self.channel.read(timeout)
        self.bytes_received += len(data)
        return data

    def counters(self) -> dict[str, int]:
        """Running totals for the per-exec trace: round trips, bytes and (on an SSM channel) frames each way, and the
        module pieces named rather than sent."""
        stats = getattr(self.channel, 'stats', None)
        cache = self.module_cache
        return {'round trips': self.round_trips, 'bytes sent': self.bytes_sent, 'bytes received': self.bytes_received,
                'frames sent': getattr(stats, 'frames_sent', 0), 'frames received': getattr(stats, 'frames_received', 0),
                'pieces named': cache.hits if cache else 0}

    def max_stdin(self) -> int | None:
        """The most stdin bytes one command can carry on this channel (None: no limit), as the script encodes them.

        A script goes out in one send; on the SSM channel a send must fit the outgoing buffer whole. Binary stdin
        travels as base64 (76 characters and a newline per 57 bytes) or, without base64 on the target, as printf
        octal escapes (up to 4 characters a byte).
        """
        limit = getattr(self.channel, 'max_send', None)
        if not limit:
            return None
        room = max(limit - _WRAPPER_ROOM, 1)
        return room * 57 // 77 if self.have_base64 else room // 4

    def _runner(self, deadline: float, cancelled: t.Callable[[], str | None] | None, cache: bool = False) -> file_transfer.Runner:
        def run(command: str, stdin: bytes | None) -> tuple[int, bytes, bytes]:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise DeadlineExceeded(f'The file transfer to {self.where} did not finish in time', remedy='Raise command_timeout')
            result = self.run(command, stdin=stdin, timeout=remaining, cancelled=cancelled, cache=cache)
            return result.rc, result.stdout, result.stderr
        return run

    def put_file(self, in_path: str, out_path: str, *, timeout: float = 3600.0,
                 cancelled: t.Callable[[], str | None] | None = None) -> dict[str, t.Any]:
        """Copy a local file to out_path on the target, in chunks that fit one command's stdin, checksummed.

        Only Ansible's own module files (copied without pipelining) go through the module cache: a user's files never
        leave pieces behind, whatever they hold.
        """
        module_file = os.path.basename(out_path).startswith('AnsiballZ_')
        return file_transfer.put_file(self._runner(self._clock() + timeout, cancelled, cache=module_file), in_path, out_path,
                                      chunk_size=file_transfer.chunk_size(self.max_stdin()), where=self.where)

    def fetch_file(self, in_path: str, out_path: str, *, timeout: float = 3600.0,
                   cancelled: t.Callable[[], str | None] | None = None) -> dict[str, t.Any]:
        """Copy in_path from the target to a local file, checksummed."""
        return file_transfer.fetch_file(self._runner(self._clock() + timeout, cancelled), in_path, out_path, where=self.where)

    def _heard(self) -> tuple[int, int] | None:
        """(acknowledgements, frames) received so far, where the transport counts them (SSM does)."""
        stats = getattr(self.channel, 'stats', None)
        if stats is None or not hasattr(stats, 'acks_received'):
            return None
        return stats.acks_received, stats.frames_received

    def _may_have_run(self, exc: CloudExecError, parser: remote_shell.OutputParser, heard_before: tuple[int, int] | None) -> bool:
        """Whether the command could have started when the session failed.

        The script is one subshell, which the remote shell runs only once its last line has arrived. The
        command cannot have run if the transport says nothing of it was sent, or if nothing at all came
        back after sending it (no acknowledgement, no frame, no output): that is a session that was already
        dead, typically dropped while idle. Then the caller may send it once more on a new session.
        """
        if parser.started:
            return True
        if getattr(exc, 'input_acknowledged', None) is False:
            return False  # the transport knows nothing of this command was sent
        heard_after = self._heard()
        return heard_before is None or heard_after != heard_before

    def idle_check(self) -> None:
        """Between commands: raise CloudExecError if the session ended while idle (the broker then opens a new one)."""
        self.channel.read(0.001)

    def close(self, grace: float = 2.0) -> None:
        """Leave the shell so the agent ends the session itself (freeing its slot), then close the channel."""
        try:
            if not self.broken:
                self.channel.send(b'exit\n')
                deadline = self._clock() + grace
                while self._clock() < deadline:
                    self.channel.read(min(0.2, max(deadline - self._clock(), 0.001)))
        except CloudExecError:
            pass  # the session ended, which is what we asked for
        finally:
            self.channel.close()
