# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The warm interpreter (warm_python.py) for real: its sh line, its client and server, with this Python as the target's.

The scripts stand in for AnsiballZ: like it, they carry their module_utils as a zip in `zip_data='...'`, put it first
on sys.path and import ansible.module_utils.basic from it. Their basic.py notes the process that imported it, so a
script can tell whether it ran in a warm child (imported by the server) or in a fresh interpreter.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from ansible_collections.cloudexec.core.plugins.plugin_utils import warm_python

PIPELINED = f"/bin/sh -c '{sys.executable} && sleep 0'"


def module_zip(basic_version: str = '1') -> bytes:
    files = {
        'ansible/__init__.py': '',
        'ansible/module_utils/__init__.py': '',
        'ansible/module_utils/basic.py': f'import os\nVERSION = {basic_version!r}\nLOADED_BY = os.getpid()\n',
        'ansible/module_utils/_internal/__init__.py': '',
        'ansible/module_utils/_internal/_ansiballz/__init__.py': '',
        'ansible/module_utils/_internal/_ansiballz/_loader.py': 'from ansible.module_utils import basic\n',
        'ansible/modules/__init__.py': '',
        'ansible/modules/probe.py': 'import os\nfrom ansible.module_utils import basic\nWARM = basic.LOADED_BY != os.getpid()\n',
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def script(body: str, basic_version: str = '1') -> bytes:
    """A module script: its zip first on sys.path (as AnsiballZ does), then body; `probe` says warm or not."""
    data = base64.b64encode(module_zip(basic_version)).decode()
    return f'''import base64, json, os, sys, tempfile
zip_data='{data}'
where = os.path.join(tempfile.mkdtemp(), 'payload.zip')
with open(where, 'wb') as sink:
    sink.write(base64.b64decode(zip_data))
sys.path.insert(0, where)
from ansible.modules import probe
from ansible.module_utils import basic
{body}
'''.encode()


@pytest.fixture
def cache(tmp_path):
    """A piece cache directory with the server file written by its sh line; the server is stopped afterwards."""
    directory = tmp_path / 'pieces'
    subprocess.run(['sh', '-c', warm_python.server_file(str(directory))], check=True)
    yield directory
    for pid in servers(directory):
        os.kill(pid, signal.SIGTERM)


def servers(directory: Path) -> list[int]:
    found = []
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                if str(directory).encode() in (entry / 'cmdline').read_bytes() and b'warm-server' in (entry / 'cmdline').read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def run(cache: Path, stdin: bytes, **kwargs) -> subprocess.CompletedProcess:
    command = warm_python.rewrite(PIPELINED, str(cache), 30)
    assert command is not None
    return subprocess.run(['sh', '-c', command], input=stdin, capture_output=True, timeout=60, check=False, **kwargs)


def run_warm(cache: Path, stdin: bytes, **kwargs) -> subprocess.CompletedProcess:
    """Run until the server is up and warm (the first runs start it, and run in a fresh interpreter)."""
    deadline = time.monotonic() + 30
    while True:
        done = run(cache, stdin, **kwargs)
        if b'"warm": true' in done.stdout or time.monotonic() > deadline:
            return done
        time.sleep(0.2)


def test_only_plain_pipelined_modules_are_rewritten():
    assert warm_python.rewrite("/bin/sh -c '/usr/bin/python3 && sleep 0'", '"$HOME"/c', 600) == (
        f'if [ -f "$HOME"/c/warm/warm-client-{warm_python.CLIENT_SHA}.py ]; then /usr/bin/python3 -S '
        f'"$HOME"/c/warm/warm-client-{warm_python.CLIENT_SHA}.py "$HOME"/c/warm 600; else /usr/bin/python3; fi')
    for other in ("/bin/sh -c 'sudo -H -S -n -u root /bin/sh -c '\"'\"'echo BECOME-SUCCESS-x ; /usr/bin/python3'\"'\"' && sleep 0'",
                  "/bin/sh -c 'LANG=C /usr/bin/python3 && sleep 0'", "/bin/sh -c '/usr/bin/python3 /tmp/AnsiballZ_ping.py && sleep 0'",
                  "/bin/sh -c 'echo ~ && sleep 0'"):
        assert warm_python.rewrite(other, '"$HOME"/c', 600) is None, other


def test_a_module_runs_warm_with_its_own_streams_status_directory_environment_and_umask(cache, tmp_path):
    body = ('sys.stdout.write(json.dumps({"warm": probe.WARM, "cwd": os.getcwd(), "env": os.environ.get("CE_TEST"), '
            '"umask": os.umask(0), "stdin": sys.stdin.read(), "argv": sys.argv}) + "\\n"); sys.stderr.write("to stderr\\n"); sys.exit(3)')
    (tmp_path / 'work').mkdir()
    done = run_warm(cache, script(body), cwd=tmp_path / 'work', env=dict(os.environ, CE_TEST='é value'), preexec_fn=lambda: os.umask(0o027))
    assert done.returncode == 3 and done.stderr == b'to stderr\n', done
    assert json.loads(done.stdout) == {'warm': True, 'cwd': str(tmp_path / 'work'), 'env': 'é value', 'umask': 0o027, 'stdin': '',
                                       'argv': ['']}
    cold = subprocess.run([sys.executable], input=script(body), capture_output=True, cwd=tmp_path / 'work', check=False,
                          env=dict(os.environ, CE_TEST='é value'), preexec_fn=lambda: os.umask(0o027))
    assert {**json.loads(cold.stdout), 'warm': True} == json.loads(done.stdout) and cold.returncode == 3


def test_module_utils_that_differ_from_the_servers_run_in_a_fresh_interpreter(cache):
    assert b'"warm": true' in run_warm(cache, script('print(json.dumps({"warm": probe.WARM}))')).stdout
    other = run(cache, script('print(json.dumps({"warm": probe.WARM, "version": basic.VERSION}))', basic_version='2'))
    assert other.returncode == 0 and json.loads(other.stdout) == {'warm': False, 'version': '2'}


def test_a_script_without_a_module_zip_runs_in_a_fresh_interpreter(cache):
    done = run(cache, b'import os, sys\nprint("plain", file=sys.stderr)\nsys.exit(5)\n')
    assert done.returncode == 5 and done.stderr == b'plain\n'


def test_without_the_client_file_the_interpreter_reads_the_script_itself(tmp_path):
    done = run(tmp_path / 'nothing-here', script('print(json.dumps({"warm": probe.WARM}))'))
    assert done.returncode == 0 and json.loads(done.stdout) == {'warm': False}


def test_a_module_whose_client_goes_away_is_ended(cache, tmp_path):
    run_warm(cache, script('print(json.dumps({"warm": probe.WARM}))'))
    pid_file = tmp_path / 'pid'
    body = f'open({str(pid_file)!r}, "w").write(str(os.getpid())); import time; time.sleep(300)'
    command = warm_python.rewrite(PIPELINED, str(cache), 30)
    client = subprocess.Popen(['sh', '-c', command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    client.stdin.write(script(body))
    client.stdin.close()
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    module = int(pid_file.read_text())
    os.killpg(client.pid, signal.SIGKILL)   # a task timeout: the broker ends the shell's process tree
    client.wait()
    deadline = time.monotonic() + 10
    while Path(f'/proc/{module}').exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f'/proc/{module}').exists() or ' Z ' in Path(f'/proc/{module}/stat').read_text()


def test_a_long_home_still_gets_its_warm_interpreter(tmp_path):
    # A Unix socket path holds about 100 bytes; the emulator's sandboxes (and some HOMEs) are longer.
    directory = tmp_path / ('deep-' * 30) / 'pieces'
    subprocess.run(['sh', '-c', warm_python.server_file(str(directory))], check=True)
    try:
        assert b'"warm": true' in run_warm(directory, script('print(json.dumps({"warm": probe.WARM}))')).stdout
    finally:
        for pid in servers(directory):
            os.kill(pid, signal.SIGTERM)


def test_a_session_with_warm_python_runs_pipelined_modules_warm_and_nothing_else(local_channel, tmp_path):
    # PersistentShell: the first pipelined module writes the server's file and starts it; later ones run warm. A
    # command that is not a plain pipelined module (become, here) runs as it is.
    from ansible_collections.cloudexec.core.plugins.module_utils import remote_shell  # pylint: disable=import-outside-toplevel
    from ansible_collections.cloudexec.core.plugins.plugin_utils import persistent_shell  # pylint: disable=import-outside-toplevel
    PersistentShell, module_cache_for = persistent_shell.PersistentShell, persistent_shell.module_cache_for

    nonce = remote_shell.new_nonce()
    channel = local_channel(nonce)
    cache = module_cache_for({'piece_cache': str(tmp_path / 'pieces'), 'warm_python': True, 'idle_timeout': 30})
    assert cache is not None and cache.warm_idle == 30
    shell = PersistentShell(channel, nonce, where='local', module_cache=cache)
    try:
        shell.wait_ready(10)
        stdin = script('print(json.dumps({"warm": probe.WARM}))') + b'#' * 40000   # module-sized: the cache takes it
        seen = []
        deadline = time.monotonic() + 30
        while True not in seen and time.monotonic() < deadline:
            result = shell.run(PIPELINED, stdin=stdin, cache=True)
            assert result.rc == 0, result
            seen.append(json.loads(result.stdout)['warm'])
            time.sleep(0.2)
        assert seen[0] is False and seen[-1] is True, seen
        other = shell.run(f"/bin/sh -c 'echo become; {sys.executable}'", stdin=stdin, cache=True)
        assert other.rc == 0 and json.loads(other.stdout.split(b'\n', 1)[1]) == {'warm': False}
    finally:
        channel.close()
        if channel.proc.poll() is None:
            channel.proc.kill()
        for pid in servers(tmp_path / 'pieces'):
            os.kill(pid, signal.SIGTERM)


def test_the_server_file_and_its_directories_are_private(tmp_path):
    directory = tmp_path / 'new' / 'pieces'
    subprocess.run(['sh', '-c', f'umask 022; {warm_python.server_file(str(directory))}'], check=True)
    for path in (tmp_path / 'new', directory, directory / 'warm'):
        assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)
    assert (directory / 'warm' / f'warm-server-{warm_python.SERVER_SHA}.py').read_text() == warm_python.SERVER
    assert 'SERVER_SHA' not in (directory / 'warm' / f'warm-client-{warm_python.CLIENT_SHA}.py').read_text()


def test_a_warm_directory_others_can_enter_is_not_used(cache):
    # Someone else's socket in a directory they can write to must never receive a module (its arguments may be secret).
    (cache / 'warm').chmod(0o777)
    try:
        for _attempt in range(3):
            done = run(cache, script('print(json.dumps({"warm": probe.WARM}))'))
            assert done.returncode == 0 and json.loads(done.stdout) == {'warm': False}
            time.sleep(0.3)
        assert not list((cache / 'warm').glob('*.sock')) and not servers(cache)
    finally:
        (cache / 'warm').chmod(0o700)
