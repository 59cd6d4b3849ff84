# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Module code kept on the target (module_cache.py, chunking.py) through a persistent shell on a real local `sh`."""

from __future__ import annotations

import base64
import os
import random
import subprocess

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import remote_shell
from ansible_collections.cloudexec.core.plugins.plugin_utils import chunking
from ansible_collections.cloudexec.core.plugins.plugin_utils.module_cache import ModuleCache
from ansible_collections.cloudexec.core.plugins.plugin_utils.persistent_shell import PersistentShell

SECRET = 'S3cret-' + os.urandom(6).hex()


def module_payload(args: str) -> bytes:
    """Shaped as ansible-core 2.19 writes AnsiballZ: code, the call's keyword lines (time, arguments), the zip."""
    zip_data = base64.b64encode(random.Random(3).randbytes(150 * 1024)).decode()
    params = '{"ANSIBLE_MODULE_ARGS": ' + args + '}'
    return (f'#!/usr/bin/python\ndef _ansiballz_main(**kw):\n    pass\n\n\nif __name__ == "__main__":\n    _ansiballz_main(\n'
            f"ansible_module='command',\ndate_time=datetime.datetime(2026, 12, 6, {random.randrange(24)}, 0),\n"
            f'params={params!r},\nzip_data={zip_data!r},\n)\n').encode()


def test_module_segments_cut_out_the_per_task_lines_exactly():
    data = (b"code\n    _ansiballz_main(\ndate_time=dt(1),\nparams='{\"ANSIBLE_MODULE_ARGS\": {\"a\": 1}}',\n"
            b"zip_data='UEsDB',\n)\n")
    assert chunking.module_segments(data) == [
        (b'code\n    _ansiballz_main(\n', True),
        (b"date_time=dt(1),\nparams='{\"ANSIBLE_MODULE_ARGS\": {\"a\": 1}}',\n", False),
        (b"zip_data='UEsDB',\n)\n", True),
    ]
    # Not Ansible's module code (a user's stdin or file): nothing of it may be kept.
    assert chunking.module_segments(b'date_time=1\nplain data\n') == [(b'date_time=1\nplain data\n', False)]
    assert chunking.module_segments(b'') == []


def test_two_tasks_share_every_piece_but_their_arguments():
    first = list(chunking.module_chunks(module_payload('{"cmd": "echo 1"}'), 64 * 1024))
    second = list(chunking.module_chunks(module_payload('{"cmd": "echo two", "password": "x"}'), 64 * 1024))
    kept_first = [piece for piece, may_keep in first if may_keep]
    assert kept_first == [piece for piece, may_keep in second if may_keep] and len(kept_first) > 5
    assert [piece for piece, may_keep in first if not may_keep][0].startswith(b'date_time=')


@pytest.fixture
def cached_shell(local_channel, tmp_path):
    """A ready PersistentShell with a module cache in tmp_path/cache, and the sizes of what it sends."""
    nonce = remote_shell.new_nonce()
    channel = local_channel(nonce)
    sends: list[int] = []
    real_send = channel.send

    def send(data: bytes) -> None:
        sends.append(len(data))
        real_send(data)

    channel.send = send
    shell = PersistentShell(channel, nonce, where='local', module_cache=ModuleCache(str(tmp_path / 'cache')))
    shell.wait_ready(10)
    assert shell.module_cache is not None   # base64, head and sha256sum are there
    yield shell, sends
    channel.close()
    if channel.proc.poll() is None:
        channel.proc.kill()


def _task(shell: PersistentShell, tmp_path, number: int, private: bytes = b'') -> None:
    """One pipelined 'module': its stdin must arrive whole, and it must run exactly once."""
    payload = module_payload(f'{{"password": "{SECRET}", "n": {number}}}')
    stdin = private + payload
    result = shell.run(f'tail -c {len(payload)} | cksum; echo ran >> {tmp_path}/runs', stdin=stdin, cache=True, private=len(private))
    expected = subprocess.run(['cksum'], input=payload, capture_output=True, check=True).stdout
    assert (result.rc, result.stdout) == (0, expected)


def _kept_files(tmp_path) -> list:
    cache = tmp_path / 'cache'
    return sorted(cache.iterdir()) if cache.exists() else []


def test_module_code_is_kept_arguments_and_passwords_never(cached_shell, tmp_path):
    shell, sends = cached_shell
    _task(shell, tmp_path, 1, private=b'become-' + SECRET.encode() + b'\n')
    first = sends[-1]
    assert oct((tmp_path / 'cache').stat().st_mode & 0o777) == '0o700'
    kept = _kept_files(tmp_path)
    assert kept and all(path.stat().st_mode & 0o777 == 0o600 for path in kept)
    _task(shell, tmp_path, 2, private=b'become-' + SECRET.encode() + b'\n')
    # The second task sends its arguments and names the rest: a small fraction of the first.
    assert sends[-1] * 20 < first
    assert _kept_files(tmp_path) == kept
    assert not [path for path in kept if SECRET.encode() in path.read_bytes()]
    assert (tmp_path / 'runs').read_text() == 'ran\n' * 2


@pytest.mark.parametrize('damage', ['removed', 'changed'])
def test_a_lost_or_damaged_piece_is_found_before_the_command_and_sent_again(cached_shell, tmp_path, damage):
    shell, sends = cached_shell
    _task(shell, tmp_path, 1)
    victim = _kept_files(tmp_path)[len(_kept_files(tmp_path)) // 2]
    if damage == 'removed':
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:-1] + b'#')
    _task(shell, tmp_path, 2)
    # The damaged script ended before its command (evicted), and the command went again inline: it ran once.
    assert (tmp_path / 'runs').read_text() == 'ran\n' * 2
    _task(shell, tmp_path, 3)
    assert (tmp_path / 'runs').read_text() == 'ran\n' * 3
    assert victim.exists() and chunking.piece_name(victim.read_bytes()) == victim.name


def test_stdin_that_is_not_module_code_is_never_kept(cached_shell, tmp_path):
    shell, dummy = cached_shell
    data = os.urandom(100 * 1024)
    for dummy in range(2):
        result = shell.run('cksum', stdin=data, cache=True)
        assert result.stdout == subprocess.run(['cksum'], input=data, capture_output=True, check=True).stdout
    assert _kept_files(tmp_path) == []
