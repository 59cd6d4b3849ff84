# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which session brokers of this controller hold a session to a target (for error messages).

The connection plugins keep one background broker per host and credentials (plugin_utils/broker.py), each
holding one exec session open until its idle_timeout. A container's agent takes few sessions at a time, so
when a new one is refused, the brokers of this user's control directory are the first suspects: each is asked
for its 'stats' (pid, busy, and the non-secret target it serves) over its Unix socket. This lives in
module_utils so that task modules, not only connection plugins, can name them. The wire format is the
broker's: a 4-byte big-endian length, a JSON header, then the payloads the header lists.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import typing as t

_HEADER = struct.Struct('>I')
_MAX_HEADER = 1 << 20
# A Unix socket path may hold at most 107 bytes on Linux (104 on some BSDs): longer ones are reached
# through the directory's descriptor, as the broker itself does.
_MAX_SOCKET_PATH = 100
# Per broker: a broker still opening its own session does not answer yet.
STATS_TIMEOUT = 0.5


def control_dir() -> str:
    """The control directory the connection plugins use (CLOUDEXEC_CONTROL_DIR, else ~/.ansible/cp/cloudexec)."""
    return os.environ.get('CLOUDEXEC_CONTROL_DIR') or os.path.join(os.path.expanduser('~'), '.ansible', 'cp', 'cloudexec')


def _private(directory: str) -> bool:
    """Only a directory of ours that nobody else can enter holds brokers worth believing."""
    try:
        info = os.stat(directory)
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o077


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b''
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError('the broker closed its socket')
        data += chunk
    return data


def _ask(path: str, header: dict[str, t.Any], timeout: float) -> dict[str, t.Any] | None:
    """One request to the broker listening at path; None when it does not answer in time."""
    directory, name = os.path.split(path)
    dir_fd = None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            if len(path.encode()) > _MAX_SOCKET_PATH:
                dir_fd = os.open(directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
                path = f'/proc/self/fd/{dir_fd}/{name}'
            sock.connect(path)
            raw = json.dumps(dict(header, payloads=[])).encode()
            sock.sendall(_HEADER.pack(len(raw)) + raw)
            (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
            if size > _MAX_HEADER:
                return None
            reply = json.loads(_recv_exact(sock, size))
        except (OSError, ValueError):
            return None
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
    return reply if isinstance(reply, dict) else None


def broker_stats(directory: str | None = None, timeout: float = STATS_TIMEOUT) -> list[dict[str, t.Any]]:
    """The 'stats' of every broker with a socket in the control directory that answers, each with its 'socket'."""
    directory = directory or control_dir()
    if not _private(directory):
        return []
    found = []
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(directory)):
            if name.endswith('.sock'):
                path = os.path.join(directory, name)
                stats = _ask(path, {'op': 'stats'}, timeout)
                if stats is not None and stats.get('ok'):
                    found.append(dict(stats, socket=path))
    return found


def holders(target: str, directory: str | None = None) -> list[dict[str, t.Any]]:
    """The brokers whose open session is to target (their stats 'target', e.g. "aws_ecs:<task id>/<container>")."""
    return [stats for stats in broker_stats(directory) if stats.get('target') == target]


def describe(stats: dict[str, t.Any]) -> str:
    """A broker as a user can find it: its pid, whether a command runs, and its socket's name."""
    state = 'running a command' if stats.get('busy') else 'idle'
    return f'pid {stats.get("pid")} ({state}, {os.path.basename(str(stats.get("socket", "")))})'
