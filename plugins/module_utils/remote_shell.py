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

import base64
import re
import secrets
import shlex
import time
import typing as t
from dataclasses import dataclass, field

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CommandAbandoned

# What the wrapper reports in its last marker besides the exit code.
RAN = 'ran'
SKIPPED_CREATES = 'creates'
SKIPPED_REMOVES = 'removes'
CHDIR_FAILED = 'chdir'
EVICTED = 'evicted'     # the module cache of the target lost a piece: nothing ran (plugin_utils/module_cache.py)


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


# How command stdin travels inside the script: a quoted here-document for text, decoded base64 or
# printf octal escapes (POSIX, needs no tool at all) for anything else.
STDIN_HEREDOC = 'heredoc'
STDIN_BASE64 = 'base64'
STDIN_PRINTF = 'printf'


# Ansible asks where a user's home is (`echo ~`, `echo ~user`) before every task that needs a temporary directory
# (action plugins' _make_tmp_path, _remote_expand_user); the answer cannot change while a session lasts.
_HOME_PROBE = re.compile(r"^(?:/bin/sh -c |\S+ -c )?'?echo ~[A-Za-z0-9_.-]*(?: && sleep 0)?'?$")


def is_home_probe(command: str) -> bool:
    """Whether command only prints a user's home directory (the same answer for the whole session)."""
    return bool(_HOME_PROBE.match(command))


def _printf_escape(data: bytes) -> str:
    """Bytes as a single-quoted printf format that prints exactly them (octal escapes for all but safe ASCII)."""
    safe = set(b'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.:/=+-_@')
    # A format that starts with '-' is an option to printf (dash: "Illegal option"): the first byte is always escaped.
    return "'" + ''.join(chr(b) if b in safe and index else f'\\{b:03o}' for index, b in enumerate(data)) + "'"


def stdin_method(data: bytes, nonce: str, have_base64: bool = True) -> str:
    """The cheapest way to carry data exactly: a here-document when it is plain text ending in a newline."""
    delimiter = f'@@CE{nonce}:IN@@'.encode()
    if data.endswith(b'\n') and b'\0' not in data and delimiter not in data:
        return STDIN_HEREDOC
    return STDIN_BASE64 if have_base64 else STDIN_PRINTF


def _stdin_parts(data: bytes | None, nonce: str, method: str | None) -> tuple[list[str], str, list[str]]:
    """(lines before the command, its stdin redirection, lines after it) that feed data to its stdin.

    A here-document's body starts on the line after its `<<`, so for base64 the decoder and its
    here-document sit in a group of their own, piped into the command.
    """
    if data is None:
        return [], '</dev/null ', []
    delimiter = f'@@CE{nonce}:IN@@'
    method = method or stdin_method(data, nonce)
    if method == STDIN_HEREDOC:
        return [], f"<<'{delimiter}' ", [data.decode('latin-1') + delimiter]
    if method == STDIN_BASE64:
        encoded = base64.encodebytes(data).decode('ascii')
        return [f"{{ base64 -d <<'{delimiter}'", encoded + delimiter, '} | '], '', []
    return [f'printf {_printf_escape(data)} | '], '', []


def wrap(command: str | t.Sequence[str], nonce: str, *, chdir: str | None = None, creates: str | None = None,
         removes: str | None = None, stdin: bytes | None = None, stdin_via: str | None = None,
         prelude: t.Sequence[str] = (), stdin_feed: t.Sequence[str] | None = None) -> str:
    """The sh script that runs command and frames its results with markers.

    The whole script is one subshell, so it can run in a long-lived shell too: its cd, variables and
    exits stay inside. Non-ASCII bytes of stdin travel as latin-1 text (the script is sent as latin-1).
    prelude: lines that run before the command may start (they may `__ce_end OUTCOME 0`); stdin_feed: lines of a
    group whose output is the command's stdin, instead of `stdin` (the module cache builds both).
    """
    q = shlex.quote
    start = f'@@CE{nonce}:'
    if stdin_feed is not None:
        before, redirect, after = ['{', *stdin_feed, '} | '], '', []
    else:
        before, redirect, after = _stdin_parts(stdin, nonce, stdin_via)
    lines = [
        '(',
        # Raw mode: output bytes pass untouched, input is not echoed. Harmless without a terminal.
        'stty raw -echo 2>/dev/null',
        f"__ce_end() {{ printf '\\n{start}END:%s:%s@@\\n' \"$1\" \"$2\"; exit 0; }}",
        *prelude,
    ]
    if chdir:
        lines.append(f'cd -- {q(chdir)} 2>/dev/null || __ce_end {CHDIR_FAILED} 1')
    if creates:
        lines.append(f'[ -e {q(creates)} ] && __ce_end {SKIPPED_CREATES} 0')
    if removes:
        lines.append(f'[ -e {q(removes)} ] || __ce_end {SKIPPED_REMOVES} 0')
    # stderr goes to a temp file we own; if no temp dir is writable, stderr joins stdout and we say so.
    err_file = f'.cloudexec-{nonce}.err'
    lines += [
        '__ce_e=""',
        'for __ce_d in "${TMPDIR:-/tmp}" /tmp /var/tmp "$HOME"; do',
        f'  if ( umask 077; : > "$__ce_d/{err_file}" ) 2>/dev/null; then __ce_e="$__ce_d/{err_file}"; break; fi',
        'done',
        '[ -n "$__ce_e" ] || __ce_e=/dev/stdout',
        f"printf '\\n{start}OUT@@\\n'",
    ]
    # The command sits on lines of its own so a trailing comment or a missing newline in it cannot eat our framing.
    pipe_in = before.pop() if before and before[-1].endswith('| ') else ''
    lines += before
    lines += [f'{pipe_in}( {command_text(command)}', f') {redirect}2>"$__ce_e"']
    lines += after
    lines += [
        '__ce_rc=$?',
        f"printf '\\n{start}ERR@@\\n'",
        'if [ "$__ce_e" != /dev/stdout ]; then cat "$__ce_e"; rm -f "$__ce_e"; else printf "%s" "(stderr merged into stdout)"; fi',
        f'__ce_end {RAN} "$__ce_rc"',
        ')',
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
    # What the command cost, when the transport counts it per command (Cloud Assistant: API calls by name).
    trace: t.Optional[dict] = field(default=None, compare=False, repr=False)


class OutputParser:
    """Reads the wrapper's framed output incrementally from a merged byte stream."""

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce
        self._buffer = bytearray()
        self._started = False
        self._searched = 0  # bytes already searched for the end marker (it cannot start before this)
        self._end = re.compile(rb'\r?\n@@CE' + nonce.encode() + rb':END:([a-z]+):(-?\d+)@@')
        self.result: CommandResult | None = None

    def feed(self, data: bytes) -> CommandResult | None:
        """Add bytes from the stream; returns the result once the end marker has arrived."""
        if self.result is not None:
            return self.result
        self._buffer += data
        # Search only what is new (plus room for a marker cut in two): output can be megabytes.
        match = self._end.search(self._buffer, max(0, self._searched - 96))
        self._searched = len(self._buffer)
        if match is None:
            return None
        self.result = self._parse(bytes(self._buffer[:match.start()]), match.group(1).decode(), int(match.group(2)))
        return self.result

    @property
    def started(self) -> bool:
        """Whether the command itself has started (its OUT marker was seen): a retry might run it twice."""
        if not self._started:
            self._started = marker(self.nonce, 'OUT') in self._buffer
        return self._started

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


# How often a command that waits for its output asks whether its caller is still there.
CANCEL_CHECK_INTERVAL = 0.2


def read_result(read: t.Callable[[float], bytes], parser: OutputParser, *, deadline: float,
                clock: t.Callable[[], float] = time.monotonic,
                cancelled: t.Callable[[], str | None] | None = None) -> CommandResult | None:
    """The one read loop of every exec transport: feed parser from read(seconds) until the END marker.

    Returns the result, or None when the deadline passed first (the caller says what that means and ends the
    command). A reason from cancelled(), asked a few times a second, raises CommandAbandoned at once. Whatever
    read() raises (the session ended or was lost) goes to the caller, which knows what it means for its transport;
    parser.started then tells whether the command could have run.
    """
    while parser.result is None:
        remaining = deadline - clock()
        if remaining <= 0:
            return None
        if cancelled is not None:
            reason = cancelled()
            if reason:
                raise CommandAbandoned(reason, started=parser.started)
            remaining = min(remaining, CANCEL_CHECK_INTERVAL)
        data = read(min(remaining, 1.0))
        if data:
            parser.feed(data)
    return parser.result


# --- ending an abandoned command -----------------------------------------------------------------
#
# A command whose caller went away (Ansible's `timeout:` keyword, Ctrl-C, a killed worker) must not
# keep running on the target. The exec APIs give no way to signal a process (and closing an ECI exec
# stream leaves it running, as a kubelet does), so the target ends it itself: a short script walks
# /proc from a recorded shell process down through its descendants and signals them all. A process is
# named by its pid AND its start time (field 22 of /proc/PID/stat), so a recycled pid is never hit.

KILL_GONE = 'gone'
KILL_ENDED = 'ended'
KILL_SURVIVED = 'survived'

STAT_READER = (
    # __ce_st PID: read /proc/PID/stat; sets __ce_state, __ce_pp (parent pid) and __ce_t (start time).
    # The command name (field 2) may hold spaces and parentheses: everything up to the last ") " goes.
    # The braces matter: a redirection that fails is reported by the shell, not by read.
    '__ce_st() { __ce_l=; { read -r __ce_l < "/proc/$1/stat"; } 2>/dev/null || return 1; [ -n "$__ce_l" ] || return 1; '
    'set -- ${__ce_l##*[)] }; __ce_state=$1; __ce_pp=$2; __ce_t=${20}; }'
)


def kill_tree_script(pid_word: str, start_word: str, *, grace: float = 2.0, nonce: str | None = None) -> str:
    """A sh script that ends process pid_word and every descendant, then prints one marker with the outcome.

    pid_word and start_word are shell words (a literal number, or an expansion such as "$p"). When the
    process is gone, or its start time differs (the pid was reused), nothing is signalled: KILL_GONE.
    Otherwise the whole tree gets SIGTERM, and SIGKILL after `grace` seconds: KILL_ENDED with the count,
    or KILL_SURVIVED when some process outlived SIGKILL (a zombie is counted as ended).
    """
    nonce = nonce or new_nonce()
    report = f"printf '\\n@@CE{nonce}:KILL:%s:%s@@\\n'"
    ticks = max(1, int(grace / 0.2))
    return '\n'.join([
        STAT_READER,
        f'__ce_root={pid_word}; __ce_start={start_word}',
        f'case "$__ce_root" in ""|*[!0-9]*) {report} {KILL_GONE} 0; exit 0;; esac',
        'if ! __ce_st "$__ce_root" || [ "$__ce_state" = Z ] || { [ -n "$__ce_start" ] && [ "$__ce_t" != "$__ce_start" ]; }; then',
        f'  {report} {KILL_GONE} 0; exit 0',
        'fi',
        # Collect the tree first (a parent killed first would hand its children to init), level by level.
        '__ce_all=$__ce_root; __ce_new=$__ce_root',
        'while [ -n "$__ce_new" ]; do',
        '  __ce_next=',
        '  for __ce_s in /proc/[0-9]*/stat; do',
        '    __ce_p=${__ce_s#/proc/}; __ce_p=${__ce_p%/stat}',
        '    __ce_st "$__ce_p" || continue',
        '    case " $__ce_new " in *" $__ce_pp "*) __ce_next="$__ce_next $__ce_p";; esac',
        '  done',
        '  __ce_all="$__ce_all$__ce_next"; __ce_new=$__ce_next',
        'done',
        '__ce_n=0; for __ce_p in $__ce_all; do __ce_n=$((__ce_n + 1)); done',
        'kill -TERM $__ce_all 2>/dev/null',
        '__ce_alive() { for __ce_p in $__ce_all; do __ce_st "$__ce_p" && [ "$__ce_state" != Z ] && return 0; done; return 1; }',
        f'__ce_w=0; while __ce_alive && [ "$__ce_w" -lt {ticks} ]; do sleep 0.2 2>/dev/null || sleep 1; __ce_w=$((__ce_w + 1)); done',
        'if __ce_alive; then kill -KILL $__ce_all 2>/dev/null; sleep 0.2 2>/dev/null || sleep 1; fi',
        f'if __ce_alive; then {report} {KILL_SURVIVED} "$__ce_n"; else {report} {KILL_ENDED} "$__ce_n"; fi',
    ]) + '\n'


def find_by_nonce_script(nonce: str) -> str:
    """sh lines that set __ce_r and __ce_rt to the pid and start time of the outermost process whose argv holds nonce.

    A one-shot exec carries its nonce in its argv (ECS Exec's `sh -c <script>`, ECI's Sync wrapper and stream shell),
    and its subshells inherit that argv, so /proc/PID/cmdline finds them even when none of their output arrived. grep's own argv holds the pattern
    `<nonce minus its last character>[<last character>]`, which does not match itself. Without /proc or grep
    nothing can be looked at: the script then exits printing no outcome, which the caller reports as "may
    still be running", never as "gone".
    """
    if not re.fullmatch(r'[0-9a-f]{8,64}', nonce):
        raise ValueError('a nonce is hex digits')
    pattern = f'{nonce[:-1]}[{nonce[-1]}]'
    return '\n'.join([
        STAT_READER,
        '{ [ -r /proc/$$/cmdline ] && command -v grep; } >/dev/null 2>&1 || exit 0',
        '__ce_m=',
        f"for __ce_f in $(grep -l -- '{pattern}' /proc/[0-9]*/cmdline 2>/dev/null); do "
        '__ce_f=${__ce_f#/proc/}; __ce_m="$__ce_m ${__ce_f%/cmdline}"; done',
        '__ce_r=; __ce_rt=',
        'for __ce_p in $__ce_m; do',
        '  __ce_st "$__ce_p" || continue',
        '  case " $__ce_m " in *" $__ce_pp "*) continue;; esac',  # a subshell of another match: not the outermost
        '  __ce_r=$__ce_p; __ce_rt=$__ce_t; break',
        'done',
    ]) + '\n'


def parse_kill_outcome(output: bytes, nonce: str) -> tuple[str, int] | None:
    """(KILL_GONE | KILL_ENDED | KILL_SURVIVED, processes signalled) from a kill_tree_script's output, or None."""
    match = re.search(rb'@@CE' + nonce.encode() + rb':KILL:([a-z]+):(\d+)@@', output)
    if match is None:
        return None
    return match.group(1).decode(), int(match.group(2))


def describe_kill_outcome(outcome: tuple[str, int] | None, pid: str | None = None) -> tuple[str, bool]:
    """(a clause about what a kill_tree_script did, worrying); worrying when the command may still run."""
    where = f' (process {pid})' if pid else ''
    if outcome is None:
        return f'it may still be running{where}: the check for it printed no result', True
    kind, count = outcome
    if kind == KILL_GONE:
        return 'it is no longer running', False
    if kind == KILL_ENDED:
        return f'it was ended: {count} process(es) stopped (SIGTERM, then SIGKILL for any left)', False
    return f'some of its {count} process(es) outlived SIGKILL{where}', True
