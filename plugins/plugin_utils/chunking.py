# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Content-defined chunking of Ansible's module payloads, for the piece caches of every transport.

A module payload (AnsiballZ: the wrapper's code, the task's arguments, the module's zip in base64) is cut
where its content says, by a rolling hash of the last 32 bytes (a "gear" hash): the same run of bytes gives
the same pieces wherever it sits, so a new task with the same module changes only the pieces around its
arguments, and the others can stay on the target, named by their SHA-256.
"""

from __future__ import annotations

import hashlib
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
