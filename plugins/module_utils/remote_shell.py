# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run one command through a remote POSIX shell and get stdout, stderr and rc back exactly.

The exec APIs we speak give us one merged byte stream, often from a PTY (ECS Exec), and no exit code.
So the command runs inside a small sh wrapper that:
- switches the terminal to raw mode without echo (no CRLF rewriting, no echoed input, no line limit);
- prints a marker, runs the command with stderr going to a private temp file, prints a second marker
  and the temp file, then a last marker carrying $?;
- handles chdir/creates/removes in the target, so idempotence checks look at the container's files.
Markers carry a random nonce, so command output cannot fake them. OutputParser reads them back.
"""

from __future__ import annotations

import re
import secrets
import shlex
import typing as t
from dataclasses import dataclass

# What the wrapper reports in its last marker besides the exit code.
RAN = 'ran'
SKIPPED_CREATES = 'creates'
SKIPPED_REMOVES = 'removes'
CHDIR_FAILED = 'chdir'


def new_nonce() -> str:
    """A random marker id, unguessable by the command's own output."""
    return secrets.token_hex(8)


def command_text(command: str | t.Sequence[str]) -> str:
    """A shell command line from a string (used as written) or an argv list (each item quoted)."""
    if isinstance(command, str):
        return command
    return ' '.join(shlex.quote(str(arg)) for arg in command)


def marker(nonce: str, kind: str) -> bytes:
    """The exact bytes of a marker line (without its leading newline)."""
    return f'@@CE{nonce}:{kind}@@'.encode('ascii')


def wrap(command: str | t.Sequence[str], nonce: str, *, chdir: str | None = None, creates: str | None = None,
         removes: str | None = None, stdin_from_null: bool = True) -> str:
    """The sh script that runs command and frames its results with markers."""
    q = shlex.quote
    start = f'@@CE{nonce}:'
    lines = [
        # Raw mode: output bytes pass untouched, input is not echoed. Harmless without a terminal.
        'stty raw -echo 2>/dev/null',
        f"__ce_end() {{ printf '\\n{start}END:%s:%s@@\\n' \"$1\" \"$2\"; exit 0; }}",
    ]
    if chdir:
        lines.append(f'cd -- {q(chdir)} 2>/dev/null || __ce_end {CHDIR_FAILED} 1')
    if creates:
        lines.append(f'[ -e {q(creates)} ] && __ce_end {SKIPPED_CREATES} 0')
    if removes:
        lines.append(f'[ -e {q(removes)} ] || __ce_end {SKIPPED_REMOVES} 0')
    # stderr goes to a temp file we own; if no temp dir is writable, stderr joins stdout and we say so.
    lines += [
        '__ce_e=""',
        'for __ce_d in "${TMPDIR:-/tmp}" /tmp /var/tmp "$HOME"; do',
        f'  if ( umask 077; : > "$__ce_d/.cloudexec-{nonce}.err" ) 2>/dev/null; then __ce_e="$__ce_d/.cloudexec-{nonce}.err"; break; fi',
        'done',
        f"printf '\\n{start}OUT@@\\n'",
        f'if [ -n "$__ce_e" ]; then ( {command_text(command)}\n) {"</dev/null " if stdin_from_null else ""}2>"$__ce_e"; __ce_rc=$?',
        f'else ( {command_text(command)}\n) {"</dev/null " if stdin_from_null else ""}2>&1; __ce_rc=$?; fi',
        f"printf '\\n{start}ERR@@\\n'",
        'if [ -n "$__ce_e" ]; then cat "$__ce_e"; rm -f "$__ce_e"; else printf "%s" "(stderr merged into stdout)"; fi',
        f'__ce_end {RAN} "$__ce_rc"',
    ]
    return '\n'.join(lines) + '\n'


@dataclass
class CommandResult:
    """What the wrapper reported."""

    rc: int
    stdout: bytes
    stderr: bytes
    outcome: str = RAN
    crlf: bool = False  # the terminal could not be put in raw mode; line endings were converted back


class OutputParser:
    """Reads the wrapper's framed output incrementally from a merged byte stream."""

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce
        self._buffer = bytearray()
        self._end = re.compile(rb'\r?\n@@CE' + nonce.encode() + rb':END:([a-z]+):(-?\d+)@@')
        self.result: CommandResult | None = None

    def feed(self, data: bytes) -> CommandResult | None:
        """Add bytes from the stream; returns the result once the end marker has arrived."""
        if self.result is not None:
            return self.result
        self._buffer += data
        match = self._end.search(self._buffer)
        if match is None:
            return None
        self.result = self._parse(bytes(self._buffer[:match.start()]), match.group(1).decode(), int(match.group(2)))
        return self.result

    @property
    def started(self) -> bool:
        """Whether the command itself has started (its OUT marker was seen): a retry might run it twice."""
        return marker(self.nonce, 'OUT') in self._buffer

    def _parse(self, framed: bytes, outcome: str, rc: int) -> CommandResult:
        out_mark, err_mark = marker(self.nonce, 'OUT'), marker(self.nonce, 'ERR')
        if outcome != RAN:
            return CommandResult(rc=rc, stdout=b'', stderr=b'', outcome=outcome)
        crlf = b'\r\n' + out_mark in framed
        nl = b'\r\n' if crlf else b'\n'
        head, _sep, rest = framed.partition(nl + out_mark + nl)
        del head  # whatever the session printed before our command started
        stdout, _sep, stderr = rest.partition(nl + err_mark + nl)
        if crlf:
            # Without raw mode the terminal turned every \n into \r\n: undo it (best effort, documented).
            stdout, stderr = stdout.replace(b'\r\n', b'\n'), stderr.replace(b'\r\n', b'\n')
        return CommandResult(rc=rc, stdout=stdout, stderr=stderr, outcome=RAN, crlf=crlf)
