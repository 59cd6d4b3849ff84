# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Module code kept on the target between tasks, for the session transports (aws_ecs, ali_eci, aws_ssm).

Every task of a play sends its module as ~200 KB of AnsiballZ, almost all of it the same from one task to the
next. The stdin of a pipelined module (and a module file copied without pipelining) is cut where its content says
(chunking.module_chunks): pieces of module code are written, on first sight, to a private directory on the target
(0700, by default ~/.cache/cloudexec-pieces) and from then on only named: the command's stdin is joined there from
the kept pieces and the ones sent inline. The lines that hold the task's arguments (which may be secret), a become
password before them (the `private` prefix), and any stdin that is not Ansible's module code travel inline and are
never written anywhere on the target.

The session remembers which pieces its target keeps. A kept piece the target lost, or one that no longer hashes to
its name, is found before the command starts (the script ends with the outcome `evicted` before its OUT marker): the command has not run, and it is sent
again whole. Pieces unused for a day are removed from the target.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field

from ansible_collections.cloudexec.core.plugins.module_utils import remote_shell
from ansible_collections.cloudexec.core.plugins.plugin_utils import chunking

DEFAULT_DIRECTORY = '~/.cache/cloudexec-pieces'
# Smaller stdin goes inline as before: the cache would save little and cost the directory checks.
MIN_CACHED = 32 * 1024
# Larger data (a file copy) goes inline in chunks: the cache is for module code.
MAX_CACHED = 4 * 1024 * 1024
MAX_PIECE = 64 * 1024
EXPIRE_MINUTES = 24 * 60


def directory_word(directory: str) -> str:
    """A cache directory as one shell word ('~/' is the remote user's HOME)."""
    if directory.startswith('~/'):
        return '"${HOME:-/root}"/' + shlex.quote(directory[2:])
    return shlex.quote(directory)


@dataclass
class StdinPlan:
    """How one command's stdin reaches it through the cache."""

    prelude: list[str]                                  # sh lines before the command: check kept pieces, write new ones
    feed: list[str]                                     # sh lines whose output, in order, is the command's stdin
    keep: list[str] = field(default_factory=list)       # names kept on the target once this command ran
    inline_bytes: int = 0                               # piece bytes the script carries


class ModuleCache:
    """What one session knows of its target's piece cache, and how a command's stdin uses it."""

    def __init__(self, directory: str = DEFAULT_DIRECTORY) -> None:
        self.directory = directory
        self.word = directory_word(directory)
        self.kept: set[str] = set()
        self.hits = 0
        self.sent = 0
        # warm_python: seconds the target's warm interpreter may stay idle (0: modules run in a fresh interpreter).
        self.warm_idle = 0

    @staticmethod
    def wanted(stdin: bytes | None) -> bool:
        """Whether stdin is worth the cache."""
        return stdin is not None and MIN_CACHED <= len(stdin) <= MAX_CACHED

    def plan(self, stdin: bytes, nonce: str, private: int = 0) -> StdinPlan:
        """The script lines that feed stdin to a command through the cache; the first `private` bytes are never kept."""
        plan = StdinPlan(prelude=[], feed=[])
        known: list[str] = []
        if private:
            self._inline(plan, stdin[:private], nonce)
        for piece, may_keep in chunking.module_chunks(stdin[private:], MAX_PIECE):
            name = chunking.piece_name(piece)
            if may_keep and (name in self.kept or name in plan.keep):
                if name in self.kept and name not in known:
                    known.append(name)
                self.hits += 1
                plan.feed.append(f'cat "$__ce_c"/{name}')
            elif may_keep:
                # Module code: from now on the target keeps it.
                plan.keep.append(name)
                plan.prelude += self._write(piece, name, nonce)
                plan.inline_bytes += len(piece)
                plan.feed.append(f'cat "$__ce_c"/{name}')
            else:
                self._inline(plan, piece, nonce)
        head = [f'__ce_c={self.word}']
        if known or plan.keep:
            # Only a directory of our own is trusted; one that cannot be made or used counts as a lost cache.
            head.append('[ -d "$__ce_c" ] || ( umask 077; mkdir -p "$__ce_c" ) 2>/dev/null')
            head.append('[ -d "$__ce_c" ] && [ -O "$__ce_c" ] || __ce_end evicted 0')
        if known:
            # Each kept piece must still hash to its name: a lost or damaged one ends the script before the command
            # starts (evicted), and the controller sends everything inline.
            names = ' '.join(known)
            head += [f'( cd "$__ce_c" && sha256sum {names} ) 2>/dev/null | {{ __ce_k=0; while read -r __ce_h __ce_p; do',
                     '  case "$__ce_h" in "$__ce_p"*) __ce_k=$((__ce_k + 1));; esac; done',
                     f'  [ "$__ce_k" = {len(known)} ]; }} || __ce_end evicted 0',
                     f'( cd "$__ce_c" && touch -c {names} ) 2>/dev/null']
        if plan.keep:
            plan.prelude.append(f'find "$__ce_c" -type f -mmin +{EXPIRE_MINUTES} -exec rm -f {{}} + 2>/dev/null')
        plan.prelude = head + plan.prelude
        return plan

    def _inline(self, plan: StdinPlan, data: bytes, nonce: str) -> None:
        """Feed data from the script itself (a here-document), written nowhere."""
        delimiter = f'@@CE{nonce}:P{len(plan.feed)}@@'
        if chunking.is_text(data) and delimiter.encode() not in data:
            plan.feed += [f"head -c {len(data)} <<'{delimiter}'", data.decode('latin-1') + '\n' + delimiter]
        else:
            plan.feed += [f"base64 -d <<'{delimiter}'", base64.encodebytes(data).decode('ascii') + delimiter]
        plan.inline_bytes += len(data)

    def _write(self, piece: bytes, name: str, nonce: str) -> list[str]:
        """sh lines that write a piece into the cache, whole or not at all."""
        delimiter = f'@@CE{nonce}:K{name[:8]}@@'
        partial = f'"$__ce_c"/.{name}.{nonce}'
        if chunking.is_text(piece) and delimiter.encode() not in piece:
            body = [f"( umask 077; head -c {len(piece)} > {partial} <<'{delimiter}'", piece.decode('latin-1') + '\n' + delimiter]
        else:
            body = [f"( umask 077; base64 -d > {partial} <<'{delimiter}'", base64.encodebytes(piece).decode('ascii') + delimiter]
        return body + [f') && mv -f {partial} "$__ce_c"/{name} || __ce_end evicted 0']

    def ran(self, plan: StdinPlan, outcome: str) -> None:
        """After the command: remember what the target now keeps, or forget it all when it had lost pieces."""
        if outcome == remote_shell.EVICTED:
            self.forget()
            return
        self.kept.update(plan.keep)
        self.sent += plan.inline_bytes

    def forget(self) -> None:
        """The target lost pieces: send everything again."""
        self.kept.clear()
