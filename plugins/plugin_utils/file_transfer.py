# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""put_file/fetch_file over a command runner, in fixed-size chunks, with checksums.

Files travel over the same exec session as commands (no S3, no second channel): uploads as the stdin
of `cat` (base64 on the wire when the target has it), downloads as the exact stdout of `dd`. The whole
file is never held in memory, and a transfer is only declared done when the target's SHA-256 (or,
without sha256sum, its size) matches ours.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, RemoteFileNotFound

CHUNK_SIZE = 4 * 1024 * 1024
# The smallest chunk worth a round trip, whatever a transport's ceiling says.
MIN_CHUNK_SIZE = 64 * 1024

# A runner: (command line, stdin or None) -> (rc, stdout, stderr). The connection plugin passes one
# that goes through its session broker.
Runner = t.Callable[[str, t.Optional[bytes]], t.Tuple[int, bytes, bytes]]

_REMOTE_SHA256 = ('if command -v sha256sum >/dev/null 2>&1; then sha256sum < {path} | cut -c1-64; '
                  'elif command -v shasum >/dev/null 2>&1; then shasum -a 256 < {path} | cut -c1-64; '
                  'elif command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 < {path} | sed "s/.*= *//"; '
                  'else printf "size:"; wc -c < {path} | tr -d " "; fi')


class TransferError(CloudExecError):
    """A file could not be moved, or arrived different from what was sent."""


def _check(result: tuple[int, bytes, bytes], what: str) -> bytes:
    rc, out, err = result
    if rc != 0:
        raise TransferError(f'{what} failed (rc={rc}): {err.decode("utf-8", "replace").strip() or out.decode("utf-8", "replace").strip()}',
                            code='TransferFailed', provider='cloudexec', retryable=False)
    return out


def _matches(remote: bytes, digest: str, size: int) -> bool:
    text = remote.decode('ascii', 'replace').strip()
    if text.startswith('size:'):
        return text[5:].strip() == str(size)
    return text.lower() == digest


def chunk_size(max_stdin: int | None) -> int:
    """The upload chunk for a transport whose commands carry at most max_stdin bytes of stdin (None: no limit)."""
    if max_stdin is None:
        return CHUNK_SIZE
    return max(MIN_CHUNK_SIZE, min(CHUNK_SIZE, max_stdin))


def put_file(run: Runner, in_path: str, out_path: str, chunk_size: int = CHUNK_SIZE,  # pylint: disable=redefined-outer-name
             where: str = 'the target') -> dict[str, t.Any]:
    """Copy a local file to out_path on the target through a temporary file renamed into place.

    The last chunk travels with the check and the rename in one command, so a file that fits one
    chunk (every module Ansible copies) costs one round trip.
    """
    partial = f'{out_path}.cloudexec-part'
    quoted, quoted_partial = shlex.quote(out_path), shlex.quote(partial)
    digest = hashlib.sha256()
    size = 0
    chunks = 0
    with open(in_path, 'rb') as source:
        current = source.read(chunk_size)
        while True:
            following = source.read(chunk_size)
            digest.update(current)
            size += len(current)
            redirect = '>' if chunks == 0 else '>>'
            chunks += 1
            if not following:
                break
            _check(run(f'cat {redirect} {quoted_partial}', current), f'Writing {out_path} on {where}')
            current = following
    # A mismatch exits 97, which no step of this command can produce on its own.
    final = (f'cat {redirect} {quoted_partial} || exit 1; d=$({_REMOTE_SHA256.format(path=quoted_partial)}); '
             f'case "$d" in {digest.hexdigest()}|size:{size}) mv -f {quoted_partial} {quoted};; '
             f'*) rm -f {quoted_partial}; echo "checksum mismatch: $d" >&2; exit 97;; esac')
    rc, out, err = run(final, current)
    if rc == 97:
        raise TransferError(f'{out_path} arrived on {where} different from {in_path} (checksum mismatch)', code='ChecksumMismatch',
                            provider='cloudexec', remedy='Retry; if it persists, report it with -vvv output', retryable=False)
    _check((rc, out, err), f'Writing {out_path} on {where}')
    return {'bytes': size, 'chunks': chunks, 'sha256': digest.hexdigest()}


def fetch_file(run: Runner, in_path: str, out_path: str, chunk_size: int = CHUNK_SIZE,  # pylint: disable=redefined-outer-name
               where: str = 'the target') -> dict[str, t.Any]:
    """Copy in_path from the target to a local file, chunk by chunk, and verify it."""
    quoted = shlex.quote(in_path)
    rc, out, err = run(f'test -f {quoted} && test -r {quoted} && wc -c < {quoted}', None)
    if rc != 0:
        raise RemoteFileNotFound.of(in_path, where)
    del err
    size = int(out.decode().strip() or 0)
    block = 1024 * 1024
    blocks_per_chunk = max(chunk_size // block, 1)
    digest = hashlib.sha256()
    received = 0
    # A name of our own: several hosts may fetch to the same destination at once.
    partial = f'{out_path}.cloudexec-{os.getpid()}-{secrets.token_hex(4)}.part'
    with open(partial, 'wb') as target:
        index = 0
        while received < size:
            data = _check(run(f'dd if={quoted} bs={block} skip={index * blocks_per_chunk} count={blocks_per_chunk} 2>/dev/null', None),
                          f'Reading {in_path}')
            if not data:
                break
            target.write(data)
            digest.update(data)
            received += len(data)
            index += 1
    remote = _check(run(_REMOTE_SHA256.format(path=quoted), None), f'Checksumming {in_path}')
    if received != size or not _matches(remote, digest.hexdigest(), received):
        os.unlink(partial)
        raise TransferError(f'{in_path} changed or arrived damaged while fetching ({received} of {size} bytes)', code='ChecksumMismatch',
                            provider='cloudexec', remedy='Retry when the file is no longer being written', retryable=False)
    os.replace(partial, out_path)
    return {'bytes': received, 'sha256': digest.hexdigest()}
