# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What the controller remembers about a Cloud Assistant target between tasks: small files in the private control
directory (each task runs in its own worker process, and ali_assist keeps no broker).

- PieceMemory: which pieces of module code the target keeps in its piece cache (ali_assist_pieces.py);
- QuotaMemory: the output quota the service was found to keep on the target;
- RunLedger: the commands in flight, so that the next task ends those of a run interrupted by Ctrl-C.

Every one is a hint: a wrong or lost file costs a resend, never a wrong result.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import typing as t


class PieceMemory:
    """Which pieces of module code one target keeps: a file in the private control directory.

    Tasks run in separate worker processes, so this file is what lets one task know what an earlier one sent. It is
    a hint: a kept piece the target lost is reported, and sent again. (Lines `seen NAME` of earlier releases, which
    kept a piece only on its second sight, are ignored.)
    """

    LIMIT = 8192    # lines kept; past it the memory starts again (the target keeps its pieces until they expire)

    def __init__(self, path: str | None) -> None:
        self.path = path

    def load(self) -> set[str]:
        """The names of the pieces the target keeps."""
        kept: set[str] = set()
        if not self.path:
            return kept
        try:
            with open(self.path, encoding='ascii') as source:
                for line in source:
                    state, dummy, name = line.strip().partition(' ')
                    if state == 'kept' and len(name) == 32:
                        kept.add(name)
        except (OSError, UnicodeDecodeError):
            pass
        return kept

    def remember(self, kept: list[str]) -> None:
        if not self.path or not kept:
            return
        lines = [f'kept {name}\n' for name in kept]
        try:
            size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if size > self.LIMIT * 38 else os.O_APPEND)
            with os.fdopen(os.open(self.path, flags, 0o600), 'w', encoding='ascii') as sink:
                sink.write(''.join(lines))
        except OSError:
            pass    # only a hint: the next task sends the pieces again

    def forget(self) -> None:
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass


class QuotaMemory:
    """The output quota learned on one target: a file in the private control directory, so later tasks (worker
    processes of their own) start from it instead of learning it again. Forgotten after a day (a quota may change)."""

    MAX_AGE = 86400
    # A remembered quota below this is not believed (the transport learns no smaller one either).
    FLOOR = 1024

    def __init__(self, path: str | None) -> None:
        self.path = path

    def load(self) -> int | None:
        if not self.path:
            return None
        try:
            if time.time() - os.path.getmtime(self.path) > self.MAX_AGE:
                return None
            with open(self.path, encoding='ascii') as source:
                value = int(source.read().strip())
        except (OSError, ValueError):
            return None
        return value if value >= self.FLOOR else None

    def save(self, quota: int) -> None:
        if not self.path:
            return
        try:
            with os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w', encoding='ascii') as sink:
                sink.write(f'{quota}\n')
        except OSError:
            pass    # only a hint: the next task learns it again


class RunLedger:
    """Commands this controller started on one target and has not seen end: one small file each, in the control directory.

    A worker killed by Ctrl-C dies at once (ansible-core's worker exits from its signal handler), so it cannot
    end the command it was waiting for. Its file stays, naming the command; the next task on that target
    finds it, sees that its writer is gone, and ends the command (see AssistTransport.end_command).
    """

    def __init__(self, directory: str | None, key: str) -> None:
        self.directory = directory
        self.key = key

    def _path(self, nonce: str) -> str:
        return os.path.join(t.cast(str, self.directory), f'assist-{self.key}-{nonce}.run')

    def add(self, nonce: str, invoke_id: str | None = None) -> None:
        """Note a command about to start (and, once known, its invocation)."""
        if not self.directory:
            return
        record = json.dumps({'pid': os.getpid(), 'invoke_id': invoke_id, 'started': time.time()})
        try:
            with os.fdopen(os.open(self._path(nonce), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w', encoding='ascii') as sink:
                sink.write(record)
        except OSError:
            pass    # only a safety net

    def remove(self, nonce: str) -> None:
        """The command ended, or was ended."""
        if self.directory:
            with contextlib.suppress(OSError):
                os.unlink(self._path(nonce))

    def orphans(self) -> list[tuple[str, str | None, float]]:
        """(nonce, invoke id, start time) of the commands whose writer process is gone."""
        found: list[tuple[str, str | None, float]] = []
        prefix = f'assist-{self.key}-'
        try:
            names = [name for name in os.listdir(t.cast(str, self.directory)) if name.startswith(prefix) and name.endswith('.run')]
        except (OSError, TypeError):
            return found
        for name in names:
            nonce = name[len(prefix):-len('.run')]
            try:
                with open(os.path.join(t.cast(str, self.directory), name), encoding='ascii') as source:
                    record = json.load(source)
                pid = int(record['pid'])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if pid != os.getpid() and not _process_exists(pid):
                found.append((nonce, record.get('invoke_id'), float(record.get('started') or 0)))
        return found


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True     # it exists, as another user's
    return True
