# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Getting data onto a target through RunCommand scripts alone: pieces, the piece cache, and the joining lines.

A Cloud Assistant script may be at most 24 KB after Base64, so data larger than that (a pipelined module, a copied
file) is cut into pieces that each fit one RunCommand (text as a quoted here-document, anything else as base64),
written as part files by scripts started in parallel, then joined and checked with SHA-256 by the command that
needs them. Ansible's module code is cut where its content says (a rolling hash), so the same code gives the same
pieces wherever a task's arguments push it, and the pieces seen twice are kept on the target by their SHA-256.
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass, field

from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant as ca
from ansible_collections.cloudexec.core.plugins.plugin_utils import chunking

# Room left in a RunCommand script for our own lines around a staged piece (bytes before Base64).
SCRIPT_LIMIT = ca.CONTENT_LIMIT // 4 * 3          # 18432 bytes of script fit 24 KB of Base64
PIECE_OVERHEAD = 640
TEXT_PIECE = SCRIPT_LIMIT - PIECE_OVERHEAD        # raw bytes of a text piece (here-document)
BINARY_PIECE = (TEXT_PIECE // 77) * 57            # raw bytes of a base64 piece (76 characters + newline per 57 bytes)
# How long a command waits for its staged parts (they are started just before it).
STAGE_WAIT = 120
# Piece cache: data up to CACHE_MAX bytes (Ansible's module payloads) is cut at content-defined boundaries and its
# pieces are kept on the target by SHA-256, so the next task that sends the same module sends only what changed.
CACHE_MAX = 1024 * 1024
CACHE_EXPIRE_MINUTES = 24 * 60                # pieces unused this long are removed from the target
_STAGE = re.compile(rb'@@CE([0-9a-f]+):STAGE:([a-z]+)@@')


def split_pieces(data: bytes) -> list[tuple[str, bytes]]:
    """data cut into (kind, bytes) pieces that each fit one RunCommand: 'text' (here-document) or 'b64'."""
    pieces: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(data):
        chunk = data[pos:pos + TEXT_PIECE]
        text = _text_prefix(chunk, at_end=pos + len(chunk) >= len(data))
        if text:
            pieces.append(('text', text))
            pos += len(text)
        else:
            chunk = data[pos:pos + BINARY_PIECE]
            pieces.append(('b64', chunk))
            pos += len(chunk)
    return pieces


def _text_prefix(chunk: bytes, at_end: bool) -> bytes:
    """The longest prefix of chunk that travels as text in a here-document (UTF-8, no NUL or CR), or b''."""
    if b'\0' in chunk or b'\r' in chunk:
        return b''
    try:
        chunk.decode('utf-8')
    except UnicodeDecodeError as exc:
        # A character cut by the chunk boundary ends the piece early; anything else is binary.
        if not at_end and exc.start >= len(chunk) - 3 and exc.start > 0:
            cut = chunk[:exc.start]
            try:
                cut.decode('utf-8')
            except UnicodeDecodeError:
                return b''
            return cut
        return b''
    return chunk


def content_pieces(data: bytes) -> list[tuple[str, bytes]]:
    """data cut where its content says (chunking.content_chunks), into pieces that each fit one RunCommand."""
    pieces: list[tuple[str, bytes]] = []
    for chunk in chunking.content_chunks(data, TEXT_PIECE):
        if chunking.is_text(chunk):
            pieces.append(('text', chunk))
        else:
            pieces.extend(('b64', chunk[at:at + BINARY_PIECE]) for at in range(0, len(chunk), BINARY_PIECE))
    return pieces


def cache_dir_word(piece_cache: str) -> str:
    """The piece cache directory as one shell word ('~/' is the remote user's HOME)."""
    if piece_cache.startswith('~/'):
        return '"${HOME:-/root}"/' + shlex.quote(piece_cache[2:])
    return shlex.quote(piece_cache)


def piece_script(directory: str, name: str, kind: str, data: bytes, nonce: str) -> str:
    """The RunCommand script that writes one piece to directory/name (a shell word and a plain name), whole or not at all."""
    part = f'"$__ce_d"/{shlex.quote(name)}'
    temporary = f'"$__ce_d"/{shlex.quote(f".{name}.{nonce}.tmp")}'   # hidden: no glob of the joining command sees it
    delimiter = f'@@CE{nonce}:PIECE@@'
    lines = ['umask 077', f'__ce_d={directory}', 'mkdir -p "$__ce_d" 2>/dev/null; [ -d "$__ce_d" ] && [ -O "$__ce_d" ] || exit 90']
    if kind == 'text':
        body = data.decode('utf-8')
        lines += [f"head -c {len(data)} > {temporary} <<'{delimiter}'", body + '\n' + delimiter]
    else:
        encoded = base64.encodebytes(data).decode('ascii')
        lines += [f"base64 -d > {temporary} <<'{delimiter}'", encoded + delimiter]
    lines.append(f'mv -f {temporary} {part}')
    return '\n'.join(lines) + '\n'


SHA256_SCRIPT = ('if command -v sha256sum >/dev/null 2>&1; then sha256sum < {path} | cut -c1-64; '
                 'elif command -v shasum >/dev/null 2>&1; then shasum -a 256 < {path} | cut -c1-64; '
                 'elif command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 < {path} | sed "s/.*= *//"; '
                 'else echo size; fi')


@dataclass
class Staged:
    """Data on its way to the target: the part files to join, in order, and what to check, remember or clean up.

    Parts are shell words: "$__ce_c"/NAME in the piece cache, "$__ce_s"/NAME in this transfer's stage directory.
    """

    parts: list[str]                    # in order (a piece used twice appears twice)
    fresh: list[str]                    # parts being written now: wait for them
    known: list[str]                    # parts the target should already have in its cache: check, never wait
    digest: str                         # SHA-256 of the whole data
    stage_dir: str = ''                 # the per-transfer directory, removed once joined (shell word)
    cache_dir: str = ''                 # the piece cache directory (shell word); '' when the cache is not used
    glob: bool = False                  # parts are p00000, p00001... in stage_dir, joined by a glob (any number fits)
    seen: list[str] = field(default_factory=list)   # names to remember as seen once the join succeeded
    kept: list[str] = field(default_factory=list)   # names to remember as kept in the cache


def assemble_lines(staged: Staged, target: str, nonce: str) -> list[str]:
    """sh lines that join the staged parts into target and check their SHA-256 (or report STAGE:<why> and stop).

    Known parts are checked at once ('evicted' when one is gone: the controller sends them again); fresh ones are
    waited for, up to STAGE_WAIT seconds ('missing'). The stage directory goes in every case.
    """
    fail = f"printf '\\n@@CE{nonce}:STAGE:%s@@\\n'"
    lines = [f'__ce_s={staged.stage_dir}']
    if staged.cache_dir:
        lines.append(f'__ce_c={staged.cache_dir}')
    if staged.known or staged.kept:
        # Only a cache directory of our own is trusted (or one the piece scripts are about to create).
        lines.append('[ ! -e "$__ce_c" ] || [ -O "$__ce_c" ] || { ' + fail + ' evicted; rm -rf "$__ce_s"; exit 0; }')
    if staged.known:
        known = ' '.join(staged.known)
        lines += [f'for __ce_p in {known}; do [ -f "$__ce_p" ] || {{ {fail} evicted; rm -rf "$__ce_s"; exit 0; }}; done',
                  f'touch -c {known} 2>/dev/null']
    if staged.glob:
        parts = '"$__ce_s"/p[0-9]*'
        ready = f'set -- {parts}; [ -f "$1" ] && [ "$#" -ge {len(staged.parts)} ]'
    else:
        parts = ' '.join(staged.parts)
        ready = f'__ce_m=0; for __ce_p in {" ".join(staged.fresh)}; do [ -f "$__ce_p" ] || __ce_m=1; done; [ "$__ce_m" = 0 ]'
    if staged.fresh:
        lines += [
            '__ce_w=0',
            f'while :; do {ready} && break',
            f'  __ce_w=$((__ce_w + 1)); [ "$__ce_w" -gt {STAGE_WAIT * 5} ] && {{ {fail} missing; rm -rf "$__ce_s"; exit 0; }}',
            '  sleep 0.2 2>/dev/null || sleep 1; done',
        ]
    # No part at all (empty data): the target is created empty (a join would find nothing to join, or read stdin).
    join = f'cat {parts}' if staged.parts else ':'
    lines += [f'( umask 077; {join} > {shlex.quote(target)} ) || {{ {fail} write; rm -rf "$__ce_s"; exit 0; }}',
              'rm -rf "$__ce_s"']
    if staged.kept:
        lines.append(f'find "$__ce_c" -type f -mmin +{CACHE_EXPIRE_MINUTES} -exec rm -f {{}} + 2>/dev/null')
    lines += [f'__ce_h=$({SHA256_SCRIPT.format(path=shlex.quote(target))})',
              f'[ "$__ce_h" = size ] || [ "$__ce_h" = {staged.digest} ] || {{ {fail} checksum; rm -f {shlex.quote(target)}; exit 0; }}']
    return lines


def fits(script: str) -> bool:
    """Whether a script fits one RunCommand (the limit counts its Base64)."""
    return len(base64.b64encode(script.encode('utf-8', 'surrogateescape'))) <= ca.CONTENT_LIMIT


def parse_stage_failure(output: bytes, nonce: str) -> str | None:
    """Why staging failed ('missing', 'write', 'checksum'), or None."""
    for match in _STAGE.finditer(output):
        if match.group(1).decode() == nonce:
            return match.group(2).decode()
    return None
