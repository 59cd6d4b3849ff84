# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The aws_ssm connection's bootstrap of a Standard_Stream shell, on real interactive shells on a real terminal.

The agent starts `sh` on a PTY (echo on, CR LF out, its own session and controlling terminal: pty.Start), types the
shell profile into it, and forwards what the terminal prints (amazon-ssm-agent shell.go executeCommandsWithPty,
shell_unix.go runShellProfile). Here pty.fork() does the same with dash (Debian's sh), bash (Amazon Linux's sh, with
readline's echo and bracketed paste) and a profile that starts another shell; then the opener's steps run on it
(first output, the typed line, the READY marker) and the bytes after READY are checked to be framed output only.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import termios
import time

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, SessionClosed
from ansible_collections.cloudexec.core.plugins.plugin_utils import aws_ssm_shell
from ansible_collections.cloudexec.core.plugins.plugin_utils.persistent_shell import PersistentShell

NONCE = '0123456789abcdef'
BANNER = b'*** node banner: authorized use only ***'


def test_typed_bootstrap_exact_bytes():
    line = aws_ssm_shell.typed_bootstrap(NONCE)
    assert line == (b"cd 2>/dev/null; stty raw -echo 2>/dev/null; __ce_t=; { read -r __ce_l </proc/$$/stat; } 2>/dev/null && "
                    b"set -- ${__ce_l##*[)] } && __ce_t=${20}; printf '\\n@@CE%s:READY:%s:%s@@\\n' 0123456789abcdef $$ "
                    b"\"$__ce_t\"; exec /bin/sh -s 2>/dev/null\n")
    # One line (the terminal's canonical mode takes it whole), and its echo cannot pass for the marker: printf joins
    # the format and the nonce, the line holds them apart.
    assert line.count(b'\n') == 1 and line.endswith(b'\n') and len(line) < 1024
    assert remote_shell.marker(NONCE, 'READY')[:-2] not in line
    assert aws_ssm_shell.typed_bootstrap(NONCE, '/bin/bash').endswith(b'exec /bin/bash -s 2>/dev/null\n')


class TerminalShell:
    """An interactive shell on a terminal of its own, as the agent starts one: a ByteChannel over the PTY's master."""

    def __init__(self, argv: list[str], home: str, profile: bytes = b'', cols: int = 40) -> None:
        pid, master = pty.fork()
        if pid == 0:  # pragma: no cover - the child
            os.chdir(home)
            env = {'HOME': home, 'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'TERM': 'xterm-256color', 'LANG': 'C.UTF-8'}
            os.execvpe(argv[0], argv, env)
        self.pid, self.master = pid, master
        # A narrow terminal: readline redraws a long typed line with carriage returns.
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack('HHHH', 24, cols, 0, 0))
        self.seen = bytearray()
        self.sent: list[bytes] = []
        self.closed = False
        if profile:
            os.write(master, profile + b'\n')  # runShellProfile: the profile typed in, newline added

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        os.write(self.master, data)

    def read(self, timeout: float) -> bytes:
        ready, _w, _x = select.select([self.master], [], [], timeout)
        if not ready:
            return b''
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the shell and its terminal are gone
            data = b''
        if not data:
            raise SessionClosed('the shell ended')
        self.seen += data
        return data

    def exited(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.read(0.05)
            except SessionClosed:
                pass
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                return True
        return False

    def close(self) -> None:
        """The channel's close: recorded only, so that a test sees whether the shell ended by itself (a closed master
        would hang it up)."""
        self.closed = True

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.master)


SHELLS = {
    # Debian's sh: no line editing, the terminal itself echoes the typed line (CR LF), the prompt is "$ ".
    'dash': (['dash'], b"echo '%s'" % BANNER, (b'\r\n',)),
    # Amazon Linux's sh is bash: readline echoes, with bracketed paste around the line and redraws on a narrow terminal.
    'bash': (['bash', '--norc', '--noprofile'], b"echo '%s'; PS1='[ssm-user@node]$ '" % BANNER, (b'\r\n', b'\x1b[?2004h')),
    # A profile that starts another shell (sudo su - ec2-user, bash): the typed line goes to that one.
    'dash-then-bash': (['dash'], b"echo '%s'; exec bash --norc --noprofile" % BANNER, (b'\r\n', b'\x1b[?2004h')),
}


@pytest.fixture
def terminal_shell(tmp_path):
    opened = []

    def start(name: str) -> TerminalShell:
        argv, profile, _noise = SHELLS[name]
        if not shutil.which(argv[0]) or (name.endswith('bash') and not shutil.which('bash')):
            pytest.skip(f'{argv[0]} is not installed')
        shell = TerminalShell(argv, str(tmp_path), profile)
        opened.append(shell)
        return shell

    yield start
    for shell in opened:
        shell.kill()


def bootstrap(shell: TerminalShell, nonce: str) -> PersistentShell:
    """The opener's steps once the session is open (aws_ssm_shell._open_once): first output, the line, READY."""
    logs: list[str] = []
    aws_ssm_shell._wait_first_output(shell, 10, logs.append)  # pylint: disable=protected-access
    assert logs and logs[0].startswith('the session shell started'), logs
    shell.send(aws_ssm_shell.typed_bootstrap(nonce))
    persistent = PersistentShell(shell, nonce, where='node')
    persistent.wait_ready(15)
    return persistent


@pytest.mark.parametrize('name', sorted(SHELLS))
def test_bootstrap_leaves_only_framed_output_after_ready(terminal_shell, name):
    shell = terminal_shell(name)
    nonce = remote_shell.new_nonce()
    persistent = bootstrap(shell, nonce)
    assert persistent.shell_pid == str(shell.pid) and persistent.have_base64
    ready = remote_shell.marker(nonce, 'READY')[:-2]
    before, after = bytes(shell.seen).split(ready, 1)
    # What the terminal printed before READY: the profile's echo and banner, the prompt, the typed line's echo and the
    # line discipline's CR LF (and readline's bracketed-paste switches) - all dropped.
    assert before.count(BANNER) >= 1 and b'stty raw -echo' in before
    for noise in SHELLS[name][2]:
        assert noise in before, (noise, before)

    start = len(shell.seen)
    result = persistent.run("printf 'one\\ntwo\\n'; printf 'err\\n' >&2; : unique-probe-word; exit 3", timeout=10)
    assert (result.rc, result.stdout, result.stderr) == (3, b'one\ntwo\n', b'err\n')
    result = persistent.run('cat', stdin=b'line\r\nraw \x1b[?2004h bytes\n', timeout=10)
    assert (result.rc, result.stdout) == (0, b'line\r\nraw \x1b[?2004h bytes\n')
    # After READY the terminal is raw and silent: no echo of what was sent, no CR added, no bracketed paste, no prompt.
    later = bytes(shell.seen[start:])
    assert b'unique-probe-word' not in after + later
    assert b'\x1b[?2004' not in after + later.replace(b'raw \x1b[?2004h bytes', b'')
    assert b'\r' not in after + later.replace(b'line\r\n', b'')
    assert b'$ ' not in after + later and b'ssm-user@node' not in after + later


def test_exit_ends_the_shell(terminal_shell):
    """PersistentShell.close types `exit` (one line, LF: the terminal is raw) and the session's shell ends."""
    shell = terminal_shell('dash')
    persistent = bootstrap(shell, remote_shell.new_nonce())
    sent = len(shell.sent)
    persistent.close(grace=5)
    assert shell.sent[sent:] == [b'exit\n'] and shell.closed
    assert shell.exited(5)


class FakeSession:
    def __init__(self, state: str) -> None:
        self.state = state
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize('state, terminated', [('ended', 0), ('open', 1), ('failed', 1)])
def test_node_channel_terminates_only_a_session_the_agent_did_not_end(state, terminated):
    calls: list[str] = []
    session = FakeSession(state)
    channel = aws_ssm_shell.NodeChannel(session, lambda: calls.append('TerminateSession'))  # type: ignore[arg-type]
    channel.close()
    assert session.closed == 1 and len(calls) == terminated


def test_failures_before_ready_say_what_to_check():
    run_as = aws_ssm_shell._explain(  # pylint: disable=protected-access
        SessionClosed('the agent closed the session: Unable to start command: failed to start pty since RunAs user deploy '
                      'does not exist'), 'i-0a1b2c3d4e5f60705', 'My-RunAsShell', '/bin/sh')
    assert 'SSMSessionRunAs' in run_as.remedy and 'runAsDefaultUser' in run_as.remedy
    ended = aws_ssm_shell._explain(SessionClosed('closed'), 'i-0a1b2c3d4e5f60705', None, '/bin/sh')  # pylint: disable=protected-access
    assert 'SSM-SessionManagerRunShell' in ended.remedy and 'Standard_Stream' in ended.remedy and '/bin/sh' in ended.remedy
    assert aws_ssm_shell._retryable(CloudExecError('x', code='ConnectionError'))  # pylint: disable=protected-access
    assert not aws_ssm_shell._retryable(CloudExecError('x', code='TargetNotConnected'))  # pylint: disable=protected-access
