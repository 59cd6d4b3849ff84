# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sandboxes: one directory per container or instance, and real local processes running in it.

A command runs with the sandbox as HOME and working directory, in a clean environment (nothing of
the emulator's own environment leaks in), in its own session and process group so a timeout or a
shutdown kills the whole tree. Where the real service gives a terminal (ECS Exec, interactive ECI
exec) the process gets a PTY: stdout and stderr then arrive merged, with terminal line endings.

Layout under ``<state-dir>/sandboxes``: ``aws-ecs/<task id>/<container>``, ``ali-eci/<group id>/<container>``,
``ali-ecs/<instance id>`` and ``aws-ssm/<node id>`` (an SSM managed node: the sandbox stands for the node's file
system root, its users' homes are ``home/<user>`` in it, see :func:`node_home`).
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import pty
import signal
import struct
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from .world import World

CLEAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
# Fake privilege tools (sudo, su) that sandboxed commands find first on their PATH: they cannot switch
# users, they check the world's become password and record that they were used (README.md, "Fake sudo and su").
FAKE_BIN = Path(__file__).resolve().parent / 'bin'
BECOME_SUFFIX = '.become-sha256'
# After the main process exits, how long to wait for the last output still in the pipes.
DRAIN_GRACE_SECONDS = 1.0
_READ_SIZE = 65536
_EXIT_POLL_SECONDS = 0.02

STDOUT = 'stdout'
STDERR = 'stderr'


def sandbox_dir(state_dir: Path, kind: str, ident: str, container: str | None = None) -> Path:
    path = Path(state_dir) / 'sandboxes' / kind / ident
    return path / container if container else path


def prepare_sandboxes(world: World, state_dir: Path) -> None:
    """Create every target's directory and record it on the world objects."""
    for task in world.aws.all_tasks():
        for container in task.containers:
            container.sandbox = sandbox_dir(state_dir, 'aws-ecs', task.task_id, container.name)
            container.sandbox.mkdir(parents=True, exist_ok=True)
            _write_become_password(container.sandbox, container.become_password)
    for group in world.alicloud.container_groups:
        for eci_container in group.containers:
            eci_container.sandbox = sandbox_dir(state_dir, 'ali-eci', group.group_id, eci_container.name)
            eci_container.sandbox.mkdir(parents=True, exist_ok=True)
            _write_become_password(eci_container.sandbox, eci_container.become_password)
    for instance in world.alicloud.instances:
        instance.sandbox = sandbox_dir(state_dir, 'ali-ecs', instance.instance_id)
        instance.sandbox.mkdir(parents=True, exist_ok=True)
        _write_become_password(instance.sandbox, instance.become_password)
    for node in world.aws.managed_nodes:
        node.sandbox = sandbox_dir(state_dir, 'aws-ssm', node.node_id)
        node.sandbox.mkdir(parents=True, exist_ok=True)
        for user in node.users:
            # The node's own users exist from the start (Run As needs them); ssm-user's home appears with its first session.
            _write_become_password(node_home(node.sandbox, user), node.become_password)


def node_home(sandbox: Path, user: str) -> Path:
    """A managed node user's home in the node's sandbox, created if missing: ``home/<user>``, root's included, as the
    agent sets HOME=/home/<user> for every session user (amazon-ssm-agent agent/session/shell/shell_unix.go)."""
    home = Path(sandbox) / 'home' / user
    home.mkdir(parents=True, exist_ok=True)
    return home


def _write_become_password(sandbox: Path, password: str | None) -> None:
    """Put the SHA-256 of a target's become password next to (not inside) its sandbox, for the fake sudo."""
    path = sandbox.parent / (sandbox.name + BECOME_SUFFIX)
    if password is None:
        path.unlink(missing_ok=True)
        return
    path.write_text(hashlib.sha256(password.encode()).hexdigest() + '\n')
    path.chmod(0o600)


def clean_env(home: Path, extra: Mapping[str, str] | None = None, tty: bool = False) -> dict[str, str]:
    env = {
        'HOME': str(home),
        'PWD': str(home),
        'PATH': f'{FAKE_BIN}:{CLEAN_PATH}',
        'LANG': 'C.UTF-8',
        'SHELL': '/bin/sh',
    }
    if tty:
        env['TERM'] = 'xterm-256color'
    env.update(extra or {})
    return env


def shell_exit_code(returncode: int) -> int:
    """A signal death (negative returncode) reported the way shells do: 128 + signal number."""
    return returncode if returncode >= 0 else 128 - returncode


@dataclass
class SandboxResult:
    exit_code: int
    # Everything in arrival order (stdout and stderr interleaved; with a PTY that is all there is).
    output: bytes
    stdout: bytes
    stderr: bytes
    timed_out: bool
    duration: float


class SandboxProcess:
    """A running process: stream its output with :meth:`read`, feed it with :meth:`write`."""

    def __init__(self, proc: asyncio.subprocess.Process, master_fd: int | None) -> None:
        self._proc = proc
        self._master = master_fd
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._open_streams = 0
        self._pending = bytearray()
        self._tasks: list[asyncio.Task[None]] = []
        self._writer_registered = False
        self._closed = False
        # PTY reading: stopped by pause_reading(), and for good once the terminal reported EOF/EIO.
        self._reading_paused = False
        self._reading_done = False
        loop = asyncio.get_running_loop()
        if master_fd is not None:
            self._open_streams = 1
            os.set_blocking(master_fd, False)
            loop.add_reader(master_fd, self._on_pty_readable)
        else:
            for name, stream in ((STDOUT, proc.stdout), (STDERR, proc.stderr)):
                if stream is not None:
                    self._open_streams += 1
                    self._tasks.append(asyncio.ensure_future(self._pump(name, stream)))
            if self._open_streams == 0:
                self._queue.put_nowait(None)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def has_pty(self) -> bool:
        return self._master is not None

    # ---- output

    def _stream_closed(self) -> None:
        self._open_streams -= 1
        if self._open_streams == 0:
            self._queue.put_nowait(None)

    async def _pump(self, name: str, stream: asyncio.StreamReader) -> None:
        while True:
            data = await stream.read(_READ_SIZE)
            if not data:
                break
            self._queue.put_nowait((name, data))
        self._stream_closed()

    def _on_pty_readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO: every slave descriptor is closed, i.e. the process tree is gone.
            if exc.errno != errno.EIO:
                raise
            data = b''
        if data:
            self._queue.put_nowait((STDOUT, data))
            return
        asyncio.get_running_loop().remove_reader(self._master)
        self._reading_done = True
        self._stream_closed()

    def pause_reading(self) -> None:
        """Stop reading the PTY: once the terminal's buffer is full, the command blocks on its writes."""
        if self._master is not None and not (self._reading_paused or self._reading_done or self._closed):
            asyncio.get_running_loop().remove_reader(self._master)
            self._reading_paused = True

    def resume_reading(self) -> None:
        """Read the PTY again after pause_reading()."""
        if self._master is not None and self._reading_paused and not (self._reading_done or self._closed):
            asyncio.get_running_loop().add_reader(self._master, self._on_pty_readable)
        self._reading_paused = False

    async def read(self) -> tuple[str, bytes] | None:
        """The next ``(stream, data)`` chunk (stream is "stdout" or "stderr"), or None once all output ended."""
        item = await self._queue.get()
        if item is None:
            # Keep answering None to later readers.
            self._queue.put_nowait(None)
        return item

    # ---- input

    def write(self, data: bytes) -> None:
        """Queue input for the process; never blocks the event loop."""
        if self._master is not None:
            self._pending += data
            self._flush_pty()
        elif self._proc.stdin is not None and not self._proc.stdin.is_closing():
            self._proc.stdin.write(data)

    def _flush_pty(self) -> None:
        assert self._master is not None
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                written = os.write(self._master, self._pending)
                del self._pending[:written]
        except BlockingIOError:
            pass
        except OSError:
            # The terminal is gone; input for a dead process is dropped.
            self._pending.clear()
        if self._pending and not self._writer_registered:
            loop.add_writer(self._master, self._flush_pty)
            self._writer_registered = True
        elif not self._pending and self._writer_registered:
            loop.remove_writer(self._master)
            self._writer_registered = False

    async def drain(self) -> None:
        if self._master is None and self._proc.stdin is not None and not self._proc.stdin.is_closing():
            with contextlib.suppress(ConnectionError):
                await self._proc.stdin.drain()

    def close_stdin(self) -> None:
        """End of input: closes the pipe, or types the terminal's EOF character (Ctrl-D) on a PTY."""
        if self._master is not None:
            self.write(b'\x04')
        elif self._proc.stdin is not None:
            self._proc.stdin.close()

    def resize(self, rows: int, cols: int) -> None:
        """Set the terminal size; the kernel sends the process SIGWINCH."""
        if self._master is not None:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))

    # ---- lifetime

    async def wait(self) -> int:
        """Wait for the main process; returns its shell-style exit code."""
        # asyncio's Process.wait() only returns once the output pipes are closed too, which never happens
        # while a background child holds them; the exit status itself is recorded as soon as the process is
        # reaped, so poll for it.
        while self._proc.returncode is None:
            await asyncio.sleep(_EXIT_POLL_SECONDS)
        return shell_exit_code(self._proc.returncode)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the command and everything it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def close(self) -> None:
        """Release the PTY and pipe resources (call once the process is gone)."""
        if self._closed:
            return
        self._closed = True
        if self._master is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._master)
            if self._writer_registered:
                loop.remove_writer(self._master)
            os.close(self._master)
            self._queue.put_nowait(None)
        for task in self._tasks:
            task.cancel()
        if self._proc.stdin is not None:
            self._proc.stdin.close()


def _group_alive(pgid: int) -> bool:
    """Whether any process is left in the process group (every sandbox process leads a group of its own)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pty_child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    # A new session whose controlling terminal is the PTY on fd 0, like a real login or exec shell.
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class SandboxRunner:
    """Starts processes in sandboxes and keeps track of them so shutdown can kill them all."""

    def __init__(self) -> None:
        self._live: set[SandboxProcess] = set()

    def _prune(self) -> None:
        self._live = {p for p in self._live if p.returncode is None or _group_alive(p.pid)}

    @property
    def live(self) -> int:
        """How many started processes are still running, or left processes running in their group (background children
        that a service leaves alone, as Cloud Assistant's agent does after a script ends): shutdown kills those too."""
        self._prune()
        return len(self._live)

    async def start(self, sandbox: Path, argv: Sequence[str], *, tty: bool = False, env: Mapping[str, str] | None = None,
                    rows: int = 24, cols: int = 80, merge_stderr: bool = False) -> SandboxProcess:
        """Start ``argv`` in ``sandbox`` (HOME and cwd), optionally on a fresh PTY of ``rows`` x ``cols``."""
        sandbox = Path(sandbox)
        if not sandbox.is_dir():
            raise FileNotFoundError(f'sandbox {sandbox} does not exist')
        if not argv:
            raise ValueError('argv must not be empty')
        full_env = clean_env(sandbox, env, tty)
        if tty:
            master, slave = pty.openpty()
            try:
                fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=slave, stdout=slave, stderr=slave, cwd=str(sandbox), env=full_env,
                    preexec_fn=_pty_child_setup)  # pylint: disable=subprocess-popen-preexec-fn
            except BaseException:
                os.close(master)
                raise
            finally:
                # The child holds its own copies; ours would keep the terminal open (and EOF away) forever.
                os.close(slave)
            process = SandboxProcess(proc, master)
        else:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
                cwd=str(sandbox), env=full_env, start_new_session=True)
            process = SandboxProcess(proc, None)
        self._prune()
        self._live.add(process)
        return process

    async def run(self, sandbox: Path, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None,
                  tty: bool = False, env: Mapping[str, str] | None = None) -> SandboxResult:
        """Run a command to completion and collect its output; on timeout the process tree is killed."""
        started = time.monotonic()
        process = await self.start(sandbox, argv, tty=tty, env=env)
        output, out, err = bytearray(), bytearray(), bytearray()

        async def collect() -> None:
            while (item := await process.read()) is not None:
                stream, data = item
                output.extend(data)
                (err if stream == STDERR else out).extend(data)

        collector = asyncio.ensure_future(collect())
        if stdin:
            process.write(stdin)
            await process.drain()
        if not tty:
            process.close_stdin()
        timed_out = False
        try:
            exit_code = await asyncio.wait_for(process.wait(), timeout)
        except asyncio.TimeoutError:
            timed_out = True
            process.kill()
            exit_code = await process.wait()
        # Background children still holding the pipes would keep output open forever: the command is
        # over, so its group goes too, and what is already buffered is still collected.
        process.kill()
        try:
            await asyncio.wait_for(asyncio.shield(collector), DRAIN_GRACE_SECONDS)
        except asyncio.TimeoutError:
            collector.cancel()
        finally:
            process.close()
        return SandboxResult(exit_code=exit_code, output=bytes(output), stdout=bytes(out), stderr=bytes(err),
                             timed_out=timed_out, duration=time.monotonic() - started)

    async def kill_all(self) -> None:
        """Kill every live process group and wait for them (used at shutdown)."""
        self._prune()
        processes = list(self._live)
        for process in processes:
            process.kill()
        for process in processes:
            with contextlib.suppress(ProcessLookupError, asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 5)
            process.close()
        self._live.clear()
