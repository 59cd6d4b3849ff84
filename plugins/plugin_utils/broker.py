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
import time
import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, DeadlineExceeded

# Where each transport's session opener lives: "module:function" taking (options, log) and returning
# a ready PersistentShell. Imported lazily so a broker loads only its own cloud's SDK.
OPENERS = {
    'aws_ecs': 'ansible_collections.cloudexec.core.plugins.plugin_utils.aws_ecs_shell:open_shell',
    'ali_eci': 'ansible_collections.cloudexec.core.plugins.plugin_utils.ali_eci_shell:open_shell',
}

_HEADER = struct.Struct('>I')
_MAX_HEADER = 1 << 20
# The collection root's parent: what a fresh Python needs on sys.path to import this collection.
# Not resolved: the collection may be reached through a symlinked ansible_collections tree.
_COLLECTIONS_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))))


class BrokerError(CloudExecError):
    """The broker could not be started or reached, or it reported a failure."""


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


def error_header(exc: CloudExecError) -> dict[str, t.Any]:
    """A failure as the broker reports it (never any secret: messages are built without them)."""
    return {'ok': False, 'error': {'message': exc.message, 'code': exc.code, 'provider': exc.provider, 'remedy': exc.remedy,
                                   'may_have_run': bool(getattr(exc, 'may_have_run', False)),
                                   'deadline': isinstance(exc, DeadlineExceeded)}}


def error_from_header(header: dict[str, t.Any]) -> BrokerError:
    """The CloudExecError a broker failure header describes."""
    error = header.get('error') or {}
    exc = BrokerError(error.get('message') or 'the session broker failed', code=error.get('code'), provider=error.get('provider'),
                      remedy=error.get('remedy'), retryable=False)
    exc.may_have_run = error.get('may_have_run', False)  # type: ignore[attr-defined]
    exc.deadline = error.get('deadline', False)  # type: ignore[attr-defined]
    return exc


# --- client side (in the connection plugin) -----------------------------------------------------

class BrokerClient:
    """Talks to the broker of one target, starting it when it is not running."""

    def __init__(self, kind: str, options: dict[str, t.Any], *, key_options: dict[str, t.Any] | None = None,
                 start_timeout: float = 120.0, log: t.Callable[[str], None] | None = None) -> None:
        self.kind = kind
        self.options = options
        self.key = broker_key(kind, key_options if key_options is not None else options)
        self.start_timeout = start_timeout
        self._log = log or (lambda msg: None)
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
                fcntl.flock(lock, fcntl.LOCK_EX)
                sock = self._try_connect()
                if sock is None:
                    self._spawn()
                    sock = self._try_connect()
            if sock is None:
                raise BrokerError('The session broker started but cannot be reached', code='BrokerUnreachable', provider='cloudexec',
                                  remedy=f'Check {control_dir()} and retry', retryable=False)
        self._sock = sock

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

    def request(self, header: dict[str, t.Any], *payloads: bytes) -> tuple[dict[str, t.Any], list[bytes]]:
        """One request/response round trip; a broker that vanished is restarted once."""
        for attempt in (1, 2):
            self.connect()
            sock = t.cast(socket.socket, self._sock)  # connect() raises rather than leave it unset
            try:
                send_message(sock, header, *payloads)
                return recv_message(sock)
            except (ConnectionError, OSError) as exc:
                self.close()
                if attempt == 2 or header.get('op') == 'exec' and self._sent_to_live_broker(exc):
                    raise BrokerError('The session broker went away during the request', code='BrokerLost', provider='cloudexec',
                                      remedy='The command may have run: check before repeating it', retryable=False) from None
        raise AssertionError('unreachable')

    @staticmethod
    def _sent_to_live_broker(exc: BaseException) -> bool:
        # A broker that had already exited refuses or resets at once: safe to start a new one.
        return not isinstance(exc, (ConnectionRefusedError, BrokenPipeError, FileNotFoundError))

    def exec(self, command: str, stdin: bytes | None, timeout: float) -> tuple[int, bytes, bytes]:
        """Run a command through the broker's shell."""
        payloads = [stdin] if stdin is not None else []
        header, data = self.request({'op': 'exec', 'command': command, 'stdin': stdin is not None, 'timeout': timeout}, *payloads)
        if not header.get('ok'):
            raise error_from_header(header)
        return int(header['rc']), data[0], data[1]

    def stop(self) -> None:
        """Ask the broker to end its session and exit (reset_connection)."""
        sock = self._sock or self._try_connect()
        if sock is None:
            return
        self._sock = sock
        with contextlib.suppress(ConnectionError, OSError):
            send_message(sock, {'op': 'stop'})
            recv_message(sock)
        self.close()

    def close(self) -> None:
        """Disconnect from the broker (it keeps running)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


# --- broker side ------------------------------------------------------------------------------

class Broker:
    """The background process: one session, one shell, a Unix socket, an idle timeout."""

    def __init__(self, kind: str, options: dict[str, t.Any], socket_path: str, log: t.Callable[[str], None]) -> None:
        self.kind = kind
        self.options = options
        self.socket_path = socket_path
        self.idle_timeout = float(options.get('idle_timeout') or 600)
        self.log = log
        self.shell: t.Any = None
        self.sessions_opened = 0
        self.requests = 0
        self.unlinked = False

    def open_shell(self) -> None:
        """Open (or reopen) the session."""
        module_name, func_name = OPENERS[self.kind].split(':')
        opener = getattr(importlib.import_module(module_name), func_name)
        self.shell = opener(self.options, self.log)
        self.sessions_opened += 1

    def _healthy_shell(self) -> t.Any:
        """The shell, reopened once if the session ended while idle (nothing was sent, so nothing can run twice)."""
        if self.shell is not None and not self.shell.broken:
            try:
                self.shell.channel.read(0.001)
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

    def handle(self, header: dict[str, t.Any], payloads: list[bytes]) -> tuple[dict[str, t.Any], list[bytes]]:
        """Serve one request."""
        self.requests += 1
        op = header.get('op')
        if op == 'exec':
            stdin = payloads[0] if header.get('stdin') else None
            timeout = float(header.get('timeout') or 3600)
            for attempt in (1, 2):
                try:
                    result = self._healthy_shell().run(header['command'], stdin=stdin, timeout=timeout)
                    break
                except CloudExecError as exc:
                    if self.shell is not None and self.shell.broken:
                        self._drop_shell()
                    # A session that died before the command could start (typically while idle, unnoticed until
                    # we wrote to it) is reopened and the command sent once more: it cannot run twice.
                    if attempt == 2 or isinstance(exc, DeadlineExceeded) or getattr(exc, 'may_have_run', True):
                        return error_header(exc), []
                    self.log(f'session lost before the command started ({exc.code}); reopening once')
            return {'ok': True, 'rc': result.rc, 'crlf': result.crlf}, [result.stdout, result.stderr]
        if op == 'stats':
            return {'ok': True, 'sessions_opened': self.sessions_opened, 'requests': self.requests,
                    'commands': getattr(self.shell, 'commands', 0), 'pid': os.getpid()}, []
        if op == 'stop':
            return {'ok': True, 'stopping': True}, []
        return {'ok': False, 'error': {'message': f'unknown broker request {op!r}', 'code': 'BadRequest'}}, []

    def serve(self, server: socket.socket) -> None:
        """Accept clients one after another until idle for idle_timeout or told to stop."""
        server.settimeout(self.idle_timeout)
        while True:
            try:
                conn, _addr = server.accept()
            except socket.timeout:
                self.log('idle timeout; ending the session')
                return
            with conn:
                conn.settimeout(None)
                while True:
                    try:
                        header, payloads = recv_message(conn)
                    except (ConnectionError, OSError, ValueError):
                        break
                    try:
                        reply, data = self.handle(header, payloads)
                    except Exception as exc:  # pylint: disable=broad-exception-caught
                        # A bug must not kill the broker mid-request (the client would only see it vanish and
                        # have to say the command may have run): report it, and start the next request afresh.
                        self._drop_shell()
                        reply, data = {'ok': False, 'error': {'message': f'the session broker failed: {type(exc).__name__}: {exc}',
                                                              'code': 'BrokerInternalError', 'may_have_run': True,
                                                              'remedy': 'Check the command\'s effects, then retry; report this with -vvv output'}}, []
                    if header.get('op') == 'stop':
                        # Stop listening before answering: a task that follows reset_connection must start a new
                        # broker, not reach this one while it closes its session.
                        self.stop_listening(server)
                    with contextlib.suppress(ConnectionError, OSError):
                        send_message(conn, reply, *data)
                    if header.get('op') == 'stop':
                        return

    def stop_listening(self, server: socket.socket) -> None:
        """Close the listening socket and remove its path, once (a later broker may have bound the path since)."""
        server.close()
        if not self.unlinked:
            self.unlinked = True
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)


def _report(status: dict[str, t.Any]) -> None:
    """Tell the client how start-up went (one JSON line on the inherited stdout), then let go of it."""
    with contextlib.suppress(OSError):
        os.write(1, json.dumps(status).encode() + b'\n')
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


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
        server.listen(8)
        broker.open_shell()
    except CloudExecError as exc:
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(broker.socket_path)
        _report(error_header(exc))
        return
    except Exception as exc:  # pylint: disable=broad-exception-caught  # any start-up failure must reach the client
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(broker.socket_path)
        _report({'ok': False, 'error': {'message': f'the session broker failed to start: {type(exc).__name__}: {exc}',
                                        'code': 'BrokerStartFailed'}})
        return
    _report({'ok': True, 'pid': os.getpid()})
    try:
        broker.serve(server)
    finally:
        # No new client may connect while the session closes (up to a few seconds).
        broker.stop_listening(server)
        broker._drop_shell()  # pylint: disable=protected-access
