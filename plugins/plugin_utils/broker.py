# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A per-host session broker, so a play pays one exec session per host instead of one per task.

Ansible makes a new connection object for every task. Like SSH's ControlPersist, the first task
starts a small background process that opens the session (ExecuteCommand, websocket, remote shell)
and serves commands over a Unix socket in a directory only the user can read; later tasks connect to
it. It exits after `idle_timeout` seconds without a request, or when reset_connection asks it to.
Credentials reach it on its stdin, never on a command line or in the environment of other users.

Wire format on the socket: a 4-byte big-endian length, a JSON header, then the raw byte payloads
whose lengths the header lists.

Callers go away: Ansible's `timeout:` keyword, Ctrl-C, a killed worker. The broker watches the
socket of the caller whose command runs; when it closes (or shuts down its sending side, which is
how a caller that is still alive says "I give up"), the command is abandoned: the session is closed
and a new one ends the old shell's process tree on the target, so no host waits on a command nobody
wants. A request whose caller left before it could run is dropped, never run. Every wait has a
deadline on both sides, and what happened to an abandoned command is told to the caller if it still
listens, else to the next one.

Why a broker of our own rather than ansible-core's persistent connections (ansible-connection): see
docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils import remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, CommandAbandoned, DeadlineExceeded, RemoteFileNotFound

# Where each transport's session opener lives: "module:function" taking (options, log) and returning
# a ready PersistentShell (or, for Cloud Assistant, which has no session, an AssistHost: its commands
# run side by side, see `concurrent`). Imported lazily so a broker loads only its own cloud's SDK.
OPENERS = {
    'aws_ecs': 'ansible_collections.cloudexec.core.plugins.plugin_utils.aws_ecs_shell:open_shell',
    'ali_eci': 'ansible_collections.cloudexec.core.plugins.plugin_utils.ali_eci_shell:open_shell',
    'aws_ssm': 'ansible_collections.cloudexec.core.plugins.plugin_utils.aws_ssm_shell:open_shell',
    'ali_assist': 'ansible_collections.cloudexec.core.plugins.plugin_utils.ali_assist_host:open_host',
}

# A caller waits this long for a session busy with another caller's command, unless it says otherwise.
DEFAULT_QUEUE_WAIT = 60.0
# Beyond a command's own timeout, how long ending an abandoned command may take (a new session, the kill script).
ABANDON_GRACE = 30.0
# How long the kill script may run on the target (it sends SIGTERM, then SIGKILL after KILL_GRACE seconds).
KILL_TIMEOUT = 20.0
KILL_GRACE = 2.0
# How long a caller that gave up (task timeout) still listens for what happened to its command.
ABANDON_REPORT_WAIT = 20.0
# reset_connection: how long it waits for a running command to be ended before it closes the session anyway.
STOP_WAIT = 60.0
# How often the broker's idle loop, and a waiting caller, look around.
_TICK = 0.2

_HEADER = struct.Struct('>I')
_MAX_HEADER = 1 << 20
# The collection root's parent: what a fresh Python needs on sys.path to import this collection.
# Not resolved: the collection may be reached through a symlinked ansible_collections tree.
_COLLECTIONS_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))))


class BrokerError(CloudExecError):
    """The broker could not be started or reached, or it reported a failure."""

    may_have_run = False
    deadline = False
    unreachable = False


def _broker_lost(message: str, code: str) -> BrokerError:
    """The broker stopped answering after the command was sent: it may have run."""
    exc = BrokerError(message, code=code, provider='cloudexec', retryable=False,
                      remedy='The command may have run: check its effects before repeating it')
    exc.may_have_run = True
    return exc


# A Unix socket path may hold at most 107 bytes on Linux (104 on some BSDs); stay well below.
_MAX_SOCKET_PATH = 100


def _private_dir(base: str) -> str:
    """Create base 0700 if needed and refuse it unless only this user can enter it."""
    os.makedirs(base, mode=0o700, exist_ok=True)
    info = os.stat(base)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise BrokerError(f'The control directory {base} is not private to this user', code='InsecureControlDir',
                          provider='cloudexec', remedy=f'chmod 700 {base} (and make sure you own it)', retryable=False)
    return base


def control_dir() -> str:
    """The private directory for sockets and locks (created 0700, refused if anyone else can enter it)."""
    base = os.environ.get('CLOUDEXEC_CONTROL_DIR') or os.path.join(os.path.expanduser('~'), '.ansible', 'cp', 'cloudexec')
    return _private_dir(base)


_DIR_FDS: dict[str, int] = {}


def sockaddr(path: str) -> str:
    """The address to bind or connect for the socket at path, within the platform's length limit.

    A long control directory (a deep HOME, a test's temp dir) would overflow sun_path. On Linux the
    directory is then reached through an open descriptor, /proc/self/fd/N/name: the socket stays in
    the private directory, with its permissions, whatever the directory's name.
    """
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    directory, name = os.path.split(path)
    if directory not in _DIR_FDS:
        _DIR_FDS[directory] = os.open(directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    short = f'/proc/self/fd/{_DIR_FDS[directory]}/{name}'
    if len(short.encode()) > _MAX_SOCKET_PATH or not os.path.isdir(os.path.dirname(short)):
        raise BrokerError(f'The control directory path is too long for a Unix socket: {directory}', code='ControlPathTooLong',
                          provider='cloudexec', remedy='Set CLOUDEXEC_CONTROL_DIR to a shorter directory', retryable=False)
    return short


def broker_key(kind: str, options: dict[str, t.Any]) -> str:
    """A name for the broker of one target and one set of credentials; secrets go in hashed, never in clear."""
    canonical = json.dumps({'kind': kind, 'options': options}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


# --- framing ----------------------------------------------------------------------------------

def send_message(sock: socket.socket, header: dict[str, t.Any], *payloads: bytes) -> None:
    """Send a header (with the payload lengths added) and the payloads."""
    header = dict(header, payloads=[len(p) for p in payloads])
    raw = json.dumps(header).encode()
    sock.sendall(_HEADER.pack(len(raw)) + raw)
    for payload in payloads:
        sock.sendall(payload)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError('peer closed the broker socket')
        chunks.append(chunk)
        size -= len(chunk)
    return b''.join(chunks)


def recv_message(sock: socket.socket) -> tuple[dict[str, t.Any], list[bytes]]:
    """Receive one header and its payloads."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if size > _MAX_HEADER:
        raise ConnectionError('broker header too large')
    header = json.loads(_recv_exact(sock, size))
    return header, [_recv_exact(sock, n) for n in header.get('payloads', [])]


def error_header(exc: CloudExecError, *, may_have_run: bool | None = None) -> dict[str, t.Any]:
    """A failure as the broker reports it (never any secret: messages are built without them).

    may_have_run says whether the command could have started; errors that do not know say True, the
    safe side: a command is sent again only when it surely never ran.
    """
    if may_have_run is None:
        may_have_run = bool(getattr(exc, 'may_have_run', True))
    return {'ok': False, 'error': {'message': exc.message, 'code': exc.code, 'provider': exc.provider, 'remedy': exc.remedy,
                                   'may_have_run': may_have_run,
                                   'deadline': isinstance(exc, DeadlineExceeded) or bool(getattr(exc, 'deadline', False)),
                                   'unreachable': bool(getattr(exc, 'unreachable', False))}}


def _failure(message: str, code: str, remedy: str, *, may_have_run: bool) -> dict[str, t.Any]:
    """A failure header of the broker's own."""
    return {'ok': False, 'error': {'message': message, 'code': code, 'provider': 'cloudexec', 'remedy': remedy,
                                   'may_have_run': may_have_run, 'deadline': False}}


def error_from_header(header: dict[str, t.Any]) -> CloudExecError:
    """The CloudExecError a broker failure header describes."""
    error = header.get('error') or {}
    if error.get('code') == 'FileNotFound':
        return RemoteFileNotFound(error.get('message') or 'the file to fetch does not exist on the target')
    exc = BrokerError(error.get('message') or 'the session broker failed', code=error.get('code'), provider=error.get('provider'),
                      remedy=error.get('remedy'), retryable=False)
    exc.may_have_run = error.get('may_have_run', True)
    exc.deadline = error.get('deadline', False)
    exc.unreachable = error.get('unreachable', False)
    return exc


# Requests that need the shell.
_WORK_OPS = ('exec', 'put', 'fetch')


def _describe(header: dict[str, t.Any]) -> str:
    """A request in words for a note (its command's start, or the file it moves)."""
    if header.get('op') == 'exec':
        return repr(str(header.get('command'))[:80])
    return f'{header.get("op")} {header.get("in_path")!r} to {header.get("out_path")!r}'


def caller_left(conn: socket.socket) -> bool:
    """Whether the peer closed its socket or shut down its sending side (a caller sends nothing while it waits)."""
    try:
        data = conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return data == b''


# --- client side (in the connection plugin) -----------------------------------------------------

class BrokerClient:
    """Talks to the broker of one target, starting it when it is not running: a stream transport's TransportClient.

    A command queued behind another caller's waits at most the target's connect_timeout (a new session would take
    about as long); the broker may also need connect_timeout and ABANDON_GRACE to end a command that overran.
    """

    def __init__(self, kind: str, options: dict[str, t.Any], *, key_options: dict[str, t.Any] | None = None,
                 start_timeout: float = 120.0, log: t.Callable[[str], None] | None = None,
                 notify: t.Callable[[str, bool], None] | None = None) -> None:
        self.kind = kind
        self.options = options
        self.connect_timeout = float(options.get('connect_timeout') or 60)
        self.key = broker_key(kind, key_options if key_options is not None else options)
        self.start_timeout = start_timeout
        self.last_trace: dict[str, int] = {}   # what the last exec cost on the wire, for the -vvvv trace
        self._log = log or (lambda msg: None)
        # What the broker tells about abandoned commands: (text, worrying) - worrying when one may still run.
        self._notify = notify or (lambda msg, worrying: self._log(msg))
        self._sock: socket.socket | None = None
        self.started_broker = False

    @property
    def socket_path(self) -> str:
        """The broker's Unix socket."""
        return os.path.join(control_dir(), f'{self.key}.sock')

    def _try_connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(sockaddr(self.socket_path))
        except OSError:
            sock.close()
            return None
        return sock

    def connect(self) -> None:
        """Connect to the running broker, or start one (under a lock, so concurrent runs start only one)."""
        if self._sock is not None:
            return
        sock = self._try_connect()
        if sock is None:
            lock_path = os.path.join(control_dir(), f'{self.key}.lock')
            with open(lock_path, 'a', encoding='ascii') as lock:
                self._lock_within(lock, self.start_timeout)
                sock = self._try_connect()
                if sock is None:
                    self._spawn()
                    sock = self._try_connect()
            if sock is None:
                raise BrokerError('The session broker started but cannot be reached', code='BrokerUnreachable', provider='cloudexec',
                                  remedy=f'Check {control_dir()} and retry', retryable=False)
        self._sock = sock

    def _lock_within(self, lock: t.IO[str], timeout: float) -> None:
        """Take the start-up lock, waiting at most timeout seconds for another process starting the same broker."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BrokerError(f'Another process has been starting the session broker for over {timeout:g} seconds',
                                      code='BrokerTimeout', provider='cloudexec', retryable=False,
                                      remedy='Retry; if it persists, look for a hung ansible process of yours') from None
                time.sleep(_TICK)

    def _spawn(self) -> None:
        """Start a broker and wait until it reports its session open (or why it could not)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)  # a stale socket of a broker that died
        boot = ('import sys; sys.path.insert(0, sys.argv[1]); '
                'from ansible_collections.cloudexec.core.plugins.plugin_utils.broker import main; main()')
        self._log(f'starting a session broker for {self.kind} ({self.key[:8]})')
        with subprocess.Popen([sys.executable, '-c', boot, _COLLECTIONS_ROOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True) as proc:
            config = json.dumps({'kind': self.kind, 'options': self.options, 'socket': self.socket_path}).encode()
            proc.stdin.write(config)
            proc.stdin.close()
            # If we give up (or die) before the broker reports, it sees its stdout closed and exits (see main).
            status = self._read_status(proc.stdout)
            proc.wait()  # the launcher forks and exits at once; the broker lives on
        if status.get('ok'):
            self.started_broker = True
            return
        raise error_from_header(status)

    def _read_status(self, stream: t.IO[bytes]) -> dict[str, t.Any]:
        deadline = time.monotonic() + self.start_timeout
        data = b''
        while b'\n' not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(f'The session broker did not report within {self.start_timeout:g} seconds', code='BrokerTimeout',
                                  provider='cloudexec', remedy='Check the network path to the cloud API, or raise connect_timeout',
                                  retryable=False)
            ready, _writable, _errors = select.select([stream], [], [], remaining)
            if ready:
                chunk = os.read(stream.fileno(), 65536)
                if not chunk:
                    break
                data += chunk
        try:
            return json.loads(data.split(b'\n', 1)[0])
        except ValueError:
            return {'ok': False, 'error': {'message': 'the session broker exited without a status', 'code': 'BrokerCrashed',
                                           'remedy': 'Run with -vvv for details; check that the collection requirements are installed'}}

    def request(self, header: dict[str, t.Any], *payloads: bytes,
                reply_within: float | None = None) -> tuple[dict[str, t.Any], list[bytes]]:
        """One request/response round trip, the reply awaited at most reply_within seconds.

        A broker that had vanished, or that was closing, is replaced once: the request never reached a
        shell, so it cannot run twice. If this process is interrupted while it waits (a task timeout,
        Ctrl-C), the broker is told the command is abandoned, and what became of it is reported.
        """
        for attempt in (1, 2):
            self.connect()
            sock = t.cast(socket.socket, self._sock)  # connect() raises rather than leave it unset
            try:
                sock.settimeout(None)
                send_message(sock, header, *payloads)
                sock.settimeout(reply_within)
                reply, data = recv_message(sock)
            except socket.timeout:
                self.close()  # the broker sees us go, and ends the command
                raise _broker_lost(f'The session broker did not answer within {reply_within:g} seconds', 'BrokerTimeout') from None
            except (ConnectionError, OSError) as exc:
                self.close()
                if attempt == 2 or header.get('op') == 'exec' and self._sent_to_live_broker(exc):
                    raise _broker_lost('The session broker went away during the request', 'BrokerLost') from None
                continue
            except BaseException:
                # Not an error of ours: Ansible's task timeout, Ctrl-C, SystemExit. Say we give up, hear the outcome.
                self._abandon(sock)
                raise
            self._tell(reply)
            if not reply.get('ok') and (reply.get('error') or {}).get('code') == 'BrokerStopping' and attempt == 1:
                self.close()  # that broker is closing its session (reset_connection): start a new one
                continue
            return reply, data
        raise AssertionError('unreachable')

    def _abandon(self, sock: socket.socket) -> None:
        """Tell the broker this caller gives up its command (EOF on our side), and report what it did about it."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(ABANDON_REPORT_WAIT)
            reply, _data = recv_message(sock)
        except Exception:  # pylint: disable=broad-exception-caught  # best effort: we are already failing
            self._notify('The abandoned command was handed to the session broker to end; no report came back in '
                         f'{ABANDON_REPORT_WAIT:g} seconds', True)
        else:
            self._tell(reply)
        finally:
            self.close()

    def _tell(self, reply: dict[str, t.Any]) -> None:
        for line in reply.get('log') or ():
            self._log(str(line))
        for note in reply.get('notes') or ():
            self._notify(str(note.get('text')), bool(note.get('worrying')))

    @staticmethod
    def _sent_to_live_broker(exc: BaseException) -> bool:
        # A broker that had already exited refuses or resets at once: safe to start a new one.
        return not isinstance(exc, (ConnectionRefusedError, BrokenPipeError, FileNotFoundError))

    def _work(self, header: dict[str, t.Any], timeout: float, *payloads: bytes) -> tuple[dict[str, t.Any], list[bytes]]:
        """A request for the shell: timeout bounds its work; it queues at most connect_timeout behind another caller."""
        if timeout <= 0:
            raise BrokerError(f'command_timeout must be a positive number of seconds, not {timeout:g}', code='InvalidParameter',
                              provider='cloudexec', remedy='Set command_timeout to a number of seconds above 0', retryable=False)
        wait = self.connect_timeout
        reply, data = self.request(dict(header, timeout=timeout, wait=wait), *payloads,
                                   reply_within=wait + timeout + 2 * self.connect_timeout + ABANDON_GRACE)
        if not reply.get('ok'):
            raise error_from_header(reply)
        return reply, data

    def run(self, command: str, stdin: bytes | None, timeout: float, private: int = 0) -> tuple[int, bytes, bytes]:
        """Run a command through the broker's shell: (rc, stdout, stderr). stdin is module code (the module cache may
        keep it on the target), but for its first `private` bytes."""
        payloads = [stdin] if stdin is not None else []
        reply, data = self._work({'op': 'exec', 'command': command, 'stdin': stdin is not None, 'private': private}, timeout,
                                 *payloads)
        self.last_trace = reply.get('trace') or {}
        return int(reply['rc']), data[0], data[1]

    def put_file(self, in_path: str, out_path: str, timeout: float) -> dict[str, t.Any]:
        """Copy a local file to the target (the broker reads it: it runs as this user, on this machine)."""
        return self._work({'op': 'put', 'in_path': os.path.abspath(in_path), 'out_path': out_path}, timeout)[0]['stats']

    def fetch_file(self, in_path: str, out_path: str, timeout: float) -> dict[str, t.Any]:
        """Copy a file of the target to a local file (the broker writes it)."""
        return self._work({'op': 'fetch', 'in_path': in_path, 'out_path': os.path.abspath(out_path)}, timeout)[0]['stats']

    def reset(self) -> None:
        """reset_connection: the broker ends its session (and a command that still runs), then exits."""
        self.stop()

    def stop(self) -> None:
        """Ask the broker to end its session and exit (reset_connection), ending a command that still runs."""
        sock = self._sock or self._try_connect()
        if sock is None:
            return
        self._sock = sock
        with contextlib.suppress(ConnectionError, OSError):
            sock.settimeout(STOP_WAIT + ABANDON_GRACE)
            send_message(sock, {'op': 'stop'})
            reply, _data = recv_message(sock)
            self._tell(reply)
        self.close()

    def close(self) -> None:
        """Disconnect from the broker (it keeps running)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


# --- broker side ------------------------------------------------------------------------------

class Broker:
    """The background process: one session, one shell, a Unix socket, an idle timeout.

    The main thread accepts callers; each caller gets a thread that reads its requests. One command
    at a time uses the shell (self.lock); the others queue for a bounded time, and any that wait
    while their caller leaves are dropped.
    """

    def __init__(self, kind: str, options: dict[str, t.Any], socket_path: str, log: t.Callable[[str], None]) -> None:
        self.kind = kind
        self.options = options
        self.socket_path = socket_path
        self.idle_timeout = float(options.get('idle_timeout') or 600)
        self.connect_timeout = float(options.get('connect_timeout') or 60)
        self.log = log
        self.shell: t.Any = None
        self.sessions_opened = 0
        self.requests = 0
        self.abandoned = 0
        self.dropped = 0
        self.queued = 0                        # callers waiting for the running command to end
        self.running = 0                       # commands running side by side (a `concurrent` shell's)
        self._running_lock = threading.Lock()
        self.unlinked = False
        self.lock = threading.Lock()           # held by the command that uses the shell
        self.busy_since: float | None = None   # wall-clock start of the running command
        self.last_activity = time.monotonic()
        self.stopping = threading.Event()      # no new command may start; the running one is ended
        self.retiring = False                  # no session can be had: exit after answering
        self.finished = threading.Event()      # the main loop may exit
        self._notes: list[dict[str, t.Any]] = []
        self._notes_lock = threading.Lock()
        self.history: list[str] = []           # every note, for the stats request (tests, -vvv debugging)
        self.homes: dict[str, bytes] = {}       # `echo ~user` command -> its answer: asked once per broker, not per task

    # ---- the session

    def open_shell(self) -> None:
        """Open (or reopen) the session."""
        module_name, func_name = OPENERS[self.kind].split(':')
        opener = getattr(importlib.import_module(module_name), func_name)
        self.shell = opener(self.options, self.log)
        if hasattr(self.shell, 'notify'):
            # What the transport ends on its own (a command of an earlier, interrupted run) is told to the next caller.
            self.shell.notify = lambda text, worrying: self._queue_note(self._note(text, worrying))
        self.sessions_opened += 1

    @property
    def concurrent(self) -> bool:
        """Whether commands run side by side rather than one at a time (no shared stream: Cloud Assistant)."""
        return bool(getattr(self.shell, 'concurrent', False))

    def _healthy_shell(self) -> t.Any:
        """The shell, reopened once if the session ended while idle (nothing was sent, so nothing can run twice)."""
        if self.shell is not None and not self.shell.broken:
            try:
                self.shell.idle_check()
                return self.shell
            except CloudExecError as exc:
                self.log(f'session ended while idle ({exc.code}); opening a new one')
        self._drop_shell()
        self.open_shell()
        return self.shell

    def _drop_shell(self) -> None:
        if self.shell is not None:
            with contextlib.suppress(Exception):
                self.shell.close(grace=0.5 if self.shell.broken else 2.0)
            self.shell = None

    # ---- notes about abandoned commands

    def _note(self, text: str, worrying: bool) -> dict[str, t.Any]:
        note = {'text': text, 'worrying': worrying}
        self.history.append(text)
        self.log(text)
        return note

    def _queue_note(self, note: dict[str, t.Any]) -> None:
        with self._notes_lock:
            self._notes.append(note)

    def _take_notes(self) -> list[dict[str, t.Any]]:
        with self._notes_lock:
            notes, self._notes = self._notes, []
        return notes

    # ---- requests

    def handle(self, conn: socket.socket, header: dict[str, t.Any], payloads: list[bytes]) -> tuple[dict[str, t.Any] | None, list[bytes]]:
        """Serve one request; (None, []) when there is nobody left to answer."""
        self.requests += 1
        op = header.get('op')
        if op in _WORK_OPS:
            return self._serve_work(conn, header, payloads)
        if op == 'stats':
            # target: what the open session reaches, e.g. "aws_ecs:<task id>/<container>" (no secret), so that a
            # refused new session can name the brokers holding the target's few sessions (module_utils/session_brokers.py).
            return {'ok': True, 'sessions_opened': self.sessions_opened, 'requests': self.requests, 'abandoned': self.abandoned,
                    'dropped': self.dropped, 'queued': self.queued, 'notes': [], 'history': list(self.history), 'busy': self.busy,
                    'commands': getattr(self.shell, 'commands', 0), 'pid': os.getpid(),
                    'target': f'{self.kind}:{self.shell.where}' if getattr(self.shell, 'where', None) else None}, []
        if op == 'stop':
            return self._stop(), []
        return {'ok': False, 'error': {'message': f'unknown broker request {op!r}', 'code': 'BadRequest', 'may_have_run': False}}, []

    def _serve_work(self, conn: socket.socket, header: dict[str, t.Any],
                    payloads: list[bytes]) -> tuple[dict[str, t.Any] | None, list[bytes]]:
        """A command or a file transfer: queued for the shell, dropped if its caller left, ended if abandoned."""
        timeout = float(header.get('timeout') or 0)
        if timeout <= 0:
            return _failure(f'command_timeout must be above 0 seconds, not {timeout:g}', 'InvalidParameter',
                            'Set command_timeout to a positive number of seconds', may_have_run=False), []
        if self.concurrent:
            return self._serve_side_by_side(conn, header, payloads, timeout)
        wait = max(0.0, float(header.get('wait', DEFAULT_QUEUE_WAIT)))
        if not self.lock.acquire(blocking=False):
            waited = self._queue_for_lock(conn, header, wait)
            if waited is not None:
                return (waited or None), []
        try:
            if self.stopping.is_set():
                return self._stopping_reply(), []
            if caller_left(conn):  # gone while its request sat in the socket: a cancelled command never runs
                self._drop_departed(header)
                return None, []
            self.busy_since = time.time()
            reply, data = self._work(conn, header, payloads, timeout)
            if reply is not None:
                reply['notes'] = self._take_notes() + reply.get('notes', [])
            return reply, data
        finally:
            self.busy_since = None
            self.last_activity = time.monotonic()
            self.lock.release()

    def _serve_side_by_side(self, conn: socket.socket, header: dict[str, t.Any],
                            payloads: list[bytes], timeout: float) -> tuple[dict[str, t.Any] | None, list[bytes]]:
        """A request for a `concurrent` shell: no queue, the same checks before it starts."""
        if self.stopping.is_set():
            return self._stopping_reply(), []
        if caller_left(conn):
            self._drop_departed(header)
            return None, []
        with self._running_lock:
            self.running += 1
        try:
            reply, data = self._work(conn, header, payloads, timeout)
            if reply is not None:
                reply['notes'] = self._take_notes() + reply.get('notes', [])
            return reply, data
        finally:
            with self._running_lock:
                self.running -= 1
            self.last_activity = time.monotonic()

    @property
    def busy(self) -> bool:
        """Whether a command runs now."""
        return self.busy_since is not None or self.running > 0

    def _queue_for_lock(self, conn: socket.socket, header: dict[str, t.Any], wait: float) -> dict[str, t.Any] | None:
        """Wait up to `wait` seconds for the shell; None once it is ours, else the reply (None reply: the caller left)."""
        give_up = time.monotonic() + wait
        self.queued += 1
        try:
            while not self.lock.acquire(timeout=_TICK):
                if caller_left(conn):
                    self._drop_departed(header)
                    return {}  # nobody to answer
                if self.stopping.is_set():
                    return self._stopping_reply()
                if time.monotonic() >= give_up:
                    since = time.strftime('%H:%M:%S', time.localtime(self.busy_since or time.time()))
                    return _failure(f'the session is busy with another command since {since} (waited {wait:g} s for it)', 'SessionBusy',
                                    'Another task, run or controller uses this host\'s session: retry later, raise connect_timeout to '
                                    'wait longer, or use another CLOUDEXEC_CONTROL_DIR for a separate session', may_have_run=False)
            return None
        finally:
            self.queued -= 1

    def _drop_departed(self, header: dict[str, t.Any]) -> None:
        self.dropped += 1
        self._queue_note(self._note(f'A request whose caller had left before it could run was dropped, not run: {_describe(header)}', False))

    def _stopping_reply(self) -> dict[str, t.Any]:
        return _failure('the session is being closed (reset_connection, or its last command could not be ended)', 'BrokerStopping',
                        'Retry: a new session is opened', may_have_run=False)

    def _work(self, conn: socket.socket, header: dict[str, t.Any], payloads: list[bytes],
              timeout: float) -> tuple[dict[str, t.Any] | None, list[bytes]]:
        """Do the request with the shell (the lock is held); end its command if its caller leaves or its time runs out."""
        stdin = payloads[0] if header.get('stdin') else None
        started = time.time()
        op = header.get('op')

        def work(shell: t.Any) -> tuple[dict[str, t.Any], list[bytes]]:
            if op == 'exec' and stdin is None and header['command'] in self.homes:
                # A home directory does not move while the broker lives: answered without a round trip.
                return {'ok': True, 'rc': 0, 'crlf': False, 'trace': {'round trips': 0}}, [self.homes[header['command']], b'']
            if op == 'exec':
                before = shell.counters() if hasattr(shell, 'counters') else {}
                result = shell.run(header['command'], stdin=stdin, timeout=timeout, cancelled=cancelled, cache=stdin is not None,
                                   private=int(header.get('private') or 0))
                after = shell.counters() if before else {}
                # What this exec cost on the wire (the connection shows it at -vvvv): counts only, nothing of the data.
                # A transport that counts per command (Cloud Assistant's API calls) says so in the result.
                trace = result.trace if result.trace is not None else {name: after[name] - before[name] for name in after}
                if stdin is None and result.rc == 0 and result.stdout.strip() and remote_shell.is_home_probe(header['command']):
                    self.homes[header['command']] = result.stdout
                return said({'ok': True, 'rc': result.rc, 'crlf': result.crlf, 'trace': trace}), [result.stdout, result.stderr]
            transfer = shell.put_file if op == 'put' else shell.fetch_file
            return said({'ok': True, 'stats': transfer(header['in_path'], header['out_path'], timeout=timeout, cancelled=cancelled)}), []

        def said(reply: dict[str, t.Any]) -> dict[str, t.Any]:
            # A transport that reports its steps (Cloud Assistant's staging) has them shown by the caller at -vvv.
            take = getattr(self.shell, 'take_log', None)
            if take is not None:
                reply['log'] = take()
            return reply

        def cancelled() -> str | None:
            if self.stopping.is_set():
                return 'the session was reset (reset_connection)'
            if caller_left(conn):
                return 'its caller went away (a task timeout, an interrupt or a killed worker)'
            return None

        for attempt in (1, 2):
            try:
                return work(self._healthy_shell())
            except CommandAbandoned as exc:
                self.abandoned += 1
                # A transport that ended the command itself says how (Cloud Assistant: StopInvocation and a sweep).
                ended = getattr(exc, 'ended', None)
                if not ended and self.concurrent:
                    # No session to close and no shell process to end: only the transport itself could have ended it.
                    ended = (f'The command started at {time.strftime("%H:%M:%S", time.localtime(started))} was abandoned: '
                             f'{exc.reason}; it may still be running', True)
                note = self._note(*ended) if ended else self._end_abandoned(started, exc.reason)
                if self._answer(conn, {'ok': False, 'notes': [note], 'error': {
                        'message': note['text'], 'code': 'CommandAbandoned', 'provider': 'cloudexec', 'may_have_run': True}}):
                    return None, []
                self._queue_note(note)  # the caller is gone: the next one hears of it
                return None, []
            except DeadlineExceeded as exc:
                if self.concurrent:
                    # A side-by-side transport ends its own commands at their deadline and says so; a wait of its
                    # own (an API call retried until its time ran out) leaves no session or shell to end here.
                    return error_header(exc, may_have_run=True), []
                self.abandoned += 1
                note = self._end_abandoned(started, f'its command_timeout of {timeout:g} s passed')
                exc.message = f'{exc.message}. {note["text"]}'
                return error_header(exc, may_have_run=True), []
            except CloudExecError as exc:
                if self.shell is not None and self.shell.broken:
                    self._drop_shell()
                # A session that died before the command could start (typically while idle, unnoticed until
                # we wrote to it) is reopened and the command sent once more: it cannot run twice. Side-by-side
                # commands share no session: their failures are their own, never a reason to send again.
                if attempt == 2 or self.concurrent or getattr(exc, 'may_have_run', True):
                    return error_header(exc), []
                self.log(f'session lost before the command started ({exc.code}); reopening once')
        raise AssertionError('unreachable')

    @staticmethod
    def _answer(conn: socket.socket, reply: dict[str, t.Any]) -> bool:
        """Send a reply to a caller that may have left; whether it could be sent."""
        try:
            send_message(conn, reply)
        except (ConnectionError, OSError):
            return False
        return True

    def _end_abandoned(self, started: float, why: str) -> dict[str, t.Any]:
        """End what an abandoned command left running on the target; a note that says what happened.

        The session is closed first (ECS's agent then ends the shell and its terminal hangs up the command;
        ECI leaves it running, as a kubelet does). A new session then ends the old shell's process tree,
        named by its pid and start time, and stays open for the next command.
        """
        old = self.shell
        pid, start, where = old.shell_pid, old.shell_start, old.where
        self._drop_shell()
        what = f'The command started at {time.strftime("%H:%M:%S", time.localtime(started))} in {where} was abandoned: {why}'
        if not pid:
            return self._note(f'{what}; its session was closed, but its shell did not report its process, so whether the command '
                              'still runs is not known', True)
        nonce = remote_shell.new_nonce()
        try:
            self.open_shell()
            result = self.shell.run(remote_shell.kill_tree_script(pid, start, grace=KILL_GRACE, nonce=nonce), timeout=KILL_TIMEOUT)
        except CloudExecError as exc:
            self._drop_shell()
            if not self.stopping.is_set():
                self._retire()  # no session can be had: let the next task start afresh rather than wait on this one
            return self._note(f'{what}; it may still be running (shell process {pid}): no new session could be opened to end it '
                              f'({exc.code}: {exc.message})', True)
        outcome = remote_shell.parse_kill_outcome(result.stdout, nonce)
        if outcome is not None and outcome[0] == remote_shell.KILL_GONE:
            return self._note(f'{what}; it is no longer running: it ended with its session', False)
        clause, worrying = remote_shell.describe_kill_outcome(outcome, pid)
        return self._note(f'{what}; {clause}', worrying)

    def _retire(self) -> None:
        """Stop taking commands, and exit once the current caller has its answer: waiting callers start a new broker."""
        self.retiring = True
        self.stopping.set()
        self._unlink()

    def _stop(self) -> dict[str, t.Any]:
        """reset_connection: no new command starts, the running one is ended, the session is closed."""
        self.stopping.set()
        self._unlink()  # a task that follows reset_connection must start a new broker, not reach this one
        give_up = time.monotonic() + STOP_WAIT + ABANDON_GRACE
        while self.running and time.monotonic() < give_up:  # side-by-side commands see `stopping` and end themselves
            time.sleep(_TICK)
        got = self.lock.acquire(timeout=max(0.0, give_up - time.monotonic()))
        try:
            self._drop_shell()
        finally:
            if got:
                self.lock.release()
        return {'ok': True, 'stopping': True, 'notes': self._take_notes()}

    # ---- the loop

    def serve_client(self, conn: socket.socket) -> None:
        """Read a caller's requests one after another, until it disconnects."""
        with conn:
            while not self.finished.is_set():
                try:
                    header, payloads = recv_message(conn)
                except (ConnectionError, OSError, ValueError):
                    return
                if header.get('op') != 'stats':   # being looked at is no use: it must not keep an idle session open
                    self.last_activity = time.monotonic()
                try:
                    reply, data = self.handle(conn, header, payloads)
                except Exception as exc:  # pylint: disable=broad-exception-caught
                    # A bug must not kill the broker mid-request (the client would only see it vanish and
                    # have to say the command may have run): report it, and start the next request afresh.
                    with self.lock:
                        self._drop_shell()
                    reply, data = _failure(f'the session broker failed: {type(exc).__name__}: {exc}', 'BrokerInternalError',
                                           'Check the command\'s effects, then retry; report this with -vvv output', may_have_run=True), []
                answered = reply is not None and self._answer_with(conn, reply, data)
                if header.get('op') == 'stop' or self.retiring:
                    self.finished.set()
                    return
                if not answered:
                    return

    @staticmethod
    def _answer_with(conn: socket.socket, reply: dict[str, t.Any], data: list[bytes]) -> bool:
        try:
            send_message(conn, reply, *data)
        except (ConnectionError, OSError):
            return False
        return True

    def serve(self, server: socket.socket) -> None:
        """Accept callers until idle for idle_timeout, told to stop, or retired."""
        server.settimeout(_TICK)
        while not self.finished.is_set():
            if not self.busy and not self.stopping.is_set() and time.monotonic() - self.last_activity > self.idle_timeout:
                self.log('idle timeout; ending the session')
                return
            try:
                conn, _addr = server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self.serve_client, args=(conn,), daemon=True).start()

    def _unlink(self) -> None:
        """Remove the socket path, once (a later broker may have bound the path since)."""
        if not self.unlinked:
            self.unlinked = True
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)

    def stop_listening(self, server: socket.socket) -> None:
        """Close the listening socket and remove its path."""
        server.close()
        self._unlink()


def _report(status: dict[str, t.Any]) -> None:
    """Tell the client how start-up went (one JSON line on the inherited stdout), then let go of it."""
    with contextlib.suppress(OSError):
        os.write(1, json.dumps(status).encode() + b'\n')
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


def _reader_gone(fd: int) -> bool:
    """Whether nobody reads the pipe at fd any more (the client that started us gave up or died)."""
    poller = select.poll()
    poller.register(fd, select.POLLERR | select.POLLHUP)
    return any(event & (select.POLLERR | select.POLLHUP) for _fd, event in poller.poll(0))


def _open_watched(broker: Broker) -> dict[str, t.Any] | None:
    """Open the session while watching the client: None when the client left (we then exit at once), else a status."""
    outcome: dict[str, t.Any] = {}

    def opener() -> None:
        try:
            broker.open_shell()
            outcome['status'] = {'ok': True, 'pid': os.getpid()}
        except CloudExecError as exc:
            outcome['status'] = error_header(exc, may_have_run=False)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # any start-up failure must reach the client
            outcome['status'] = {'ok': False, 'error': {'message': f'the session broker failed to start: {type(exc).__name__}: {exc}',
                                                        'code': 'BrokerStartFailed', 'may_have_run': False}}

    thread = threading.Thread(target=opener, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(_TICK)
        if thread.is_alive() and _reader_gone(1):
            return None
    return outcome['status']


def main() -> None:
    """Entry point of the broker process (started by BrokerClient._spawn)."""
    config = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    # Detach: the launcher exits so the client can reap it; the broker is adopted by init. Forking
    # before any session is opened matters: the websocket client runs a thread that fork would lose.
    if os.fork():
        os._exit(0)  # pylint: disable=protected-access
    os.setsid()
    os.umask(0o077)
    broker = Broker(config['kind'], config['options'], config['socket'], log=lambda msg: None)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(sockaddr(broker.socket_path))
        server.listen(16)
    except OSError as exc:
        server.close()
        _report({'ok': False, 'error': {'message': f'the session broker could not listen: {exc}', 'code': 'BrokerStartFailed',
                                        'may_have_run': False}})
        return
    status = _open_watched(broker)
    if status is None or not status.get('ok'):
        # The client gave up (it died, or its start timeout passed) or the session could not be opened:
        # exit now rather than keep a session nobody will use. os._exit also drops a half-open session.
        broker.stop_listening(server)
        if status is not None:
            _report(status)
        os._exit(0)  # pylint: disable=protected-access
    _report(status)
    try:
        broker.serve(server)
    finally:
        # No new client may connect while the session closes (up to a few seconds).
        broker.stop_listening(server)
        with contextlib.suppress(Exception):
            broker._drop_shell()  # pylint: disable=protected-access
        os._exit(0)  # pylint: disable=protected-access  # daemon threads may still wait on idle callers
