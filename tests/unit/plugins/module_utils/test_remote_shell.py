# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import subprocess
import time

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import remote_shell as rs


def run_wrapped(command, tmp_path, chunk=7, **kwargs):
    """Run the wrapper in a real sh (no terminal) and feed its output to the parser in small chunks."""
    nonce = rs.new_nonce()
    script = rs.wrap(command, nonce, **kwargs).encode('latin-1')
    proc = subprocess.run([b'sh', b'-c', script], capture_output=True, cwd=tmp_path, env={'PATH': os.environ['PATH'], 'HOME': str(tmp_path)},
                          check=False)
    assert proc.stderr == b''  # everything, stderr included, travels on the one stream
    parser = rs.OutputParser(nonce)
    result = None
    data = proc.stdout
    for i in range(0, len(data), chunk):
        result = parser.feed(data[i:i + chunk])
    return result


def test_stdout_stderr_and_rc_come_back_exactly(tmp_path):
    result = run_wrapped("printf 'a\\nb'; printf 'warn\\n' >&2; exit 3", tmp_path)
    assert (result.rc, result.stdout, result.stderr, result.outcome) == (3, b'a\nb', b'warn\n', rs.RAN)


def test_binary_and_trailing_newlines_survive(tmp_path):
    result = run_wrapped(r"printf '\000\001\377\n\n\n'", tmp_path)
    assert result.stdout == b'\x00\x01\xff\n\n\n' and result.rc == 0


def test_argv_list_is_quoted(tmp_path):
    result = run_wrapped(['printf', '%s|', 'a b', "it's", '$HOME', ';rm -rf x'], tmp_path)
    assert result.stdout == b"a b|it's|$HOME|;rm -rf x|"


def test_fake_marker_from_command_output_is_not_taken(tmp_path):
    result = run_wrapped("printf '\\n@@CEdeadbeefdeadbeef:END:ran:0@@\\n'; exit 5", tmp_path)
    assert result.rc == 5
    assert b'deadbeef' in result.stdout


def test_creates_skips_and_removes_skips(tmp_path):
    (tmp_path / 'there').write_text('x')
    assert run_wrapped('touch ran', tmp_path, creates='there').outcome == rs.SKIPPED_CREATES
    assert run_wrapped('touch ran', tmp_path, removes='missing').outcome == rs.SKIPPED_REMOVES
    assert not (tmp_path / 'ran').exists()
    assert run_wrapped('touch ran', tmp_path, creates='missing').outcome == rs.RAN
    assert (tmp_path / 'ran').exists()


def test_chdir_and_bad_chdir(tmp_path):
    (tmp_path / 'sub dir').mkdir()
    assert run_wrapped('pwd', tmp_path, chdir=str(tmp_path / 'sub dir')).stdout == str(tmp_path / 'sub dir').encode() + b'\n'
    result = run_wrapped('pwd', tmp_path, chdir=str(tmp_path / 'nope'))
    assert (result.outcome, result.rc) == (rs.CHDIR_FAILED, 1)


def test_stdin_is_not_inherited(tmp_path):
    # A command reading stdin must not hang on the session's terminal.
    assert run_wrapped('cat; echo done', tmp_path).stdout == b'done\n'


def test_crlf_terminal_output_is_converted_back():
    nonce = '0123456789abcdef'
    stream = (b'banner\r\n\r\n@@CE' + nonce.encode() + b':OUT@@\r\nline1\r\nline2\r\n@@CE' + nonce.encode()
              + b':ERR@@\r\noops\r\n\r\n@@CE' + nonce.encode() + b':END:ran:2@@\r\n')
    result = rs.OutputParser(nonce).feed(stream)
    assert (result.stdout, result.stderr, result.rc, result.crlf) == (b'line1\nline2', b'oops\n', 2, True)


def test_parser_reports_start_before_end():
    parser = rs.OutputParser('00ff00ff00ff00ff')
    assert parser.feed(b'\n@@CE00ff00ff00ff00ff:OUT@@\npartial') is None
    assert parser.started


@pytest.mark.parametrize('command, expected', [('echo hi', 'echo hi'), (['ls', '-l', 'a b'], "ls -l 'a b'")])
def test_command_text(command, expected):
    assert rs.command_text(command) == expected


def test_exact_output_through_a_real_pty(tmp_path):
    """On a terminal (as ECS Exec gives), raw mode keeps \\n as \\n and stderr apart."""
    import pty  # pylint: disable=import-outside-toplevel
    import select  # pylint: disable=import-outside-toplevel

    nonce = rs.new_nonce()
    script = rs.wrap("printf 'x\\ny\\n'; printf 'e\\n' >&2; exit 7", nonce)
    master, slave = pty.openpty()
    proc = subprocess.Popen(['sh', '-c', script], stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path,  # pylint: disable=consider-using-with
                            start_new_session=True)
    os.close(slave)
    parser = rs.OutputParser(nonce)
    result = None
    while result is None:
        ready, _w, _x = select.select([master], [], [], 10)
        assert ready, 'no output from the wrapped command within 10 s'
        try:
            result = parser.feed(os.read(master, 4096))
        except OSError:
            break
    proc.wait(10)
    os.close(master)
    assert (result.stdout, result.stderr, result.rc, result.crlf) == (b'x\ny\n', b'e\n', 7, False)


@pytest.mark.parametrize('data, method', [
    (b'print("hello")\nprint(1)\n', rs.STDIN_HEREDOC),
    (b'no newline at the end', rs.STDIN_BASE64),
    (b'\x00\x01\xfe\xff binary\n', rs.STDIN_BASE64),
    (b'\x00\x01\xfe\xff binary\n\'quote" \\ $x %s', rs.STDIN_PRINTF),
    (b'-\\x starts like an option', rs.STDIN_PRINTF),   # printf would take "-\\..." for an option and print nothing
    ('ünïcödé\n'.encode(), rs.STDIN_HEREDOC),
])
def test_stdin_reaches_the_command_exactly(tmp_path, data, method):
    if method != rs.STDIN_PRINTF:
        assert rs.stdin_method(data, '0' * 16) == method
    result = run_wrapped('cat; printf "|%s" "$?"', tmp_path, stdin=data, stdin_via=method)
    assert result.stdout == data + b'|0'


def test_scripts_run_one_after_another_in_a_long_lived_shell(tmp_path):
    """The connection plugins keep one `sh -s` per session; every script must leave it usable."""
    proc = subprocess.Popen(['sh', '-s'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tmp_path)  # pylint: disable=consider-using-with
    results = []
    for command, kwargs in [('cd /; exit 4', {}), ('pwd; x=1', {'stdin': b'in\n'}), ('echo "x=${x:-unset}"', {})]:
        nonce = rs.new_nonce()
        proc.stdin.write(rs.wrap(command, nonce, **kwargs).encode('latin-1'))
        proc.stdin.flush()
        parser = rs.OutputParser(nonce)
        result = None
        while result is None:
            chunk = proc.stdout.read1(65536)
            assert chunk, 'the long-lived shell ended'
            result = parser.feed(chunk)
        results.append(result)
    proc.stdin.close()
    proc.wait(10)
    assert [r.rc for r in results] == [4, 0, 0]
    # cd, variables and exit stayed inside each script's subshell.
    assert results[1].stdout == str(tmp_path).encode() + b'\n'
    assert results[2].stdout == b'x=unset\n'


# --- the kill script, run by the local sh on real processes -------------------------------------

def _stat_fields(pid):
    return open(f'/proc/{pid}/stat', encoding='ascii').read().rsplit(') ', 1)[1].split()


def _ppid(pid):
    try:
        return int(_stat_fields(pid)[1])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid):
    try:
        return _stat_fields(pid)[0] != 'Z'
    except (OSError, IndexError):
        return False


def test_kill_tree_ends_a_whole_tree_even_a_child_that_ignores_sigterm():
    tree = subprocess.Popen(['sh', '-c', 'sleep 300 & sh -c "trap \\"\\" TERM; sleep 301 & wait" & wait'])
    try:
        time.sleep(0.5)
        children = [int(entry.name) for entry in os.scandir('/proc') if entry.name.isdigit() and _ppid(int(entry.name)) == tree.pid]
        script = rs.kill_tree_script(str(tree.pid), _stat_fields(tree.pid)[19], grace=0.5, nonce='0123456789abcdef')
        output = subprocess.run(['sh', '-c', script], capture_output=True, check=True).stdout
        assert rs.parse_kill_outcome(output, '0123456789abcdef') == (rs.KILL_ENDED, 4)
        tree.wait(5)
        assert children and not any(_alive(pid) for pid in children)
    finally:
        if tree.poll() is None:
            tree.kill()


def test_kill_tree_leaves_a_reused_pid_alone():
    victim = subprocess.Popen(['sleep', '300'])
    try:
        wrong_start = str(int(_stat_fields(victim.pid)[19]) + 1)   # the recorded process was another one
        script = rs.kill_tree_script(str(victim.pid), wrong_start, nonce='0123456789abcdef')
        output = subprocess.run(['sh', '-c', script], capture_output=True, check=True).stdout
        assert rs.parse_kill_outcome(output, '0123456789abcdef') == (rs.KILL_GONE, 0)
        assert _alive(victim.pid)
    finally:
        victim.kill()


@pytest.mark.parametrize('pid', ['', 'not-a-pid', '999999999'])
def test_kill_tree_of_nothing_says_gone(pid):
    output = subprocess.run(['sh', '-c', rs.kill_tree_script(repr(pid), "''", nonce='0123456789abcdef')],
                            capture_output=True, check=True).stdout
    assert rs.parse_kill_outcome(output, '0123456789abcdef') == (rs.KILL_GONE, 0)
