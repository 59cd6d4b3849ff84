# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Content-defined chunking of Ansible's module payloads, for the piece caches of every transport.

A module payload (AnsiballZ: the wrapper's code, the task's arguments, the module's zip in base64) is cut
where its content says, by a rolling hash of the last 32 bytes (a "gear" hash): the same run of bytes gives
the same pieces wherever it sits, so a new task with the same module changes only the pieces around its
arguments, and the others can stay on the target, named by their SHA-256.

Which pieces may stay is decided here, once for every transport (module_chunks): only a payload recognised as
Ansible's module code, and never the lines that hold the task's arguments (they may be secret). Ansible writes the
arguments as one Python literal, on one line, that names ANSIBLE_MODULE_ARGS (ansible-core's module_common.py, 2.16
to 2.19: `repr()` of the JSON parameters): the payload is cut before and after each such line, so the code around
it gives the same pieces from one task to the next, and the argument lines are pieces of their own, never kept.
ansible-core 2.19 also passes the task's start time on a line of its own (`date_time=...`, next to the arguments):
not secret, but never the same twice, so it is cut out the same way rather than fill the cache with one piece per
task.
"""

from __future__ import annotations

import hashlib
import re
import typing as t

# A boundary every ~8 KB past the minimum: pieces of ~12 KB on average.
MIN_PIECE = 4096
BOUNDARY_MASK = (1 << 13) - 1
# The gear table: 256 fixed pseudo-random 32-bit values (any fixed table works; this one must never change, or
# every piece kept on the targets is missed once).
_GEAR = tuple(int.from_bytes(hashlib.sha256(b'cloudexec-gear-%d' % i).digest()[:4], 'big') for i in range(256))


def content_chunks(data: bytes, max_piece: int) -> t.Iterator[bytes]:
    """data cut at content-defined boundaries, each piece at most max_piece bytes, never inside a UTF-8 character."""
    size = len(data)
    start = 0
    while start < size:
        end = min(size, start + max_piece)
        cut = end
        rolling = 0
        for pos in range(start, end):
            rolling = ((rolling << 1) + _GEAR[data[pos]]) & 0xFFFFFFFF
            # Cut after pos when the hash says so, but never inside a UTF-8 character (a text piece stays text).
            if pos + 1 - start >= MIN_PIECE and not rolling & BOUNDARY_MASK and (pos + 1 == size or data[pos + 1] & 0xC0 != 0x80):
                cut = pos + 1
                break
        yield data[start:cut]
        start = cut


ARGS_MARK = b'ANSIBLE_MODULE_ARGS'
_PER_TASK = re.compile(rb'^[^\n]*ANSIBLE_MODULE_ARGS[^\n]*(?:\n|$)|^date_time=[^\n]*(?:\n|$)', re.M)


def module_segments(data: bytes) -> list[tuple[bytes, bool]]:
    """data as (segment, may_keep) in order: the per-task lines (arguments, time) may never be kept, the rest may.

    Data without ARGS_MARK is not a module payload Ansible built (a user's file or stdin): none of it may be kept.
    """
    if ARGS_MARK not in data:
        return [(data, False)] if data else []
    segments: list[tuple[bytes, bool]] = []
    pos = 0
    for line in _PER_TASK.finditer(data):
        if line.start() > pos:
            segments.append((data[pos:line.start()], True))
        if segments and not segments[-1][1]:
            segments[-1] = (segments[-1][0] + line.group(), False)   # adjacent per-task lines: one run
        else:
            segments.append((line.group(), False))
        pos = line.end()
    if pos < len(data):
        segments.append((data[pos:], True))
    return segments


def module_chunks(data: bytes, max_piece: int) -> t.Iterator[tuple[bytes, bool]]:
    """data cut as content_chunks does, within each of its module_segments: (piece, may_keep)."""
    for segment, may_keep in module_segments(data):
        for piece in content_chunks(segment, max_piece):
            yield piece, may_keep


def is_text(piece: bytes) -> bool:
    """Whether a piece can travel as text in a shell here-document: UTF-8, no NUL, no CR."""
    if b'\0' in piece or b'\r' in piece:
        return False
    try:
        piece.decode('utf-8')
    except UnicodeDecodeError:
        return False
    return True


def piece_name(piece: bytes) -> str:
    """A piece's name on the target: the start of its SHA-256."""
    return hashlib.sha256(piece).hexdigest()[:32]
