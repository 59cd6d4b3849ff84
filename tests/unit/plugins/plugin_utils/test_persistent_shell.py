# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The persistent shell on a real local `sh -s`: files in chunks below what one command may carry on the channel."""

from __future__ import annotations

import os

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import RemoteFileNotFound
from ansible_collections.cloudexec.core.plugins.plugin_utils import file_transfer
from ansible_collections.cloudexec.core.plugins.plugin_utils.persistent_shell import PersistentShell


@pytest.fixture
def shell_on(local_channel):
    """A ready PersistentShell over a local channel that refuses any send above max_send bytes (as the SSM channel does)."""
    opened = []

    def make(max_send=None, base64=True):
        nonce = remote_shell.new_nonce()
        channel = local_channel(nonce)
        sends = []
        real_send = channel.send

        def send(data):
            sends.append(len(data))
            if max_send is not None and len(data) > max_send:
                raise AssertionError(f'a send of {len(data)} bytes, above the channel limit of {max_send}')
            real_send(data)

        channel.send = send
        if max_send is not None:
            channel.max_send = max_send
        shell = PersistentShell(channel, nonce, where='local')
        shell.wait_ready(10)
        shell.have_base64 = base64 and shell.have_base64
        opened.append(channel)
        return shell, sends

    yield make
    for channel in opened:
        channel.close()
        if channel.proc.poll() is None:
            channel.proc.kill()


@pytest.mark.parametrize('base64', [True, False], ids=['base64', 'printf'])
def test_uploads_are_cut_below_the_channel_ceiling(shell_on, tmp_path, base64):
    # The SSM channel takes at most 10,000 messages of 1,024 bytes in one send; binary stdin grows on the wire
    # (base64 by 4/3, printf escapes up to four times). Here a ceiling of 300 KB stands for it.
    shell, sends = shell_on(max_send=300_000, base64=base64)
    data = os.urandom(700_000)
    source = tmp_path / 'source.bin'
    source.write_bytes(data)
    stats = shell.put_file(str(source), str(tmp_path / 'copy.bin'), timeout=60)
    assert (tmp_path / 'copy.bin').read_bytes() == data
    ceiling = shell.max_stdin()
    assert ceiling == (300_000 - 8192) * 57 // 77 if base64 else (300_000 - 8192) // 4
    assert stats['chunks'] == -(-len(data) // file_transfer.chunk_size(ceiling)) and max(sends) <= 300_000
    shell.fetch_file(str(tmp_path / 'copy.bin'), str(tmp_path / 'back.bin'), timeout=60)
    assert (tmp_path / 'back.bin').read_bytes() == data


def test_a_channel_without_a_ceiling_uses_whole_chunks(shell_on, tmp_path):
    shell, _sends = shell_on()
    assert shell.max_stdin() is None and file_transfer.chunk_size(None) == file_transfer.CHUNK_SIZE
    (tmp_path / 'empty').write_bytes(b'')
    assert shell.put_file(str(tmp_path / 'empty'), str(tmp_path / 'empty-copy'), timeout=30)['bytes'] == 0
    assert (tmp_path / 'empty-copy').read_bytes() == b''
    with pytest.raises(RemoteFileNotFound) as caught:
        shell.fetch_file(str(tmp_path / 'missing'), str(tmp_path / 'x'), timeout=30)
    assert 'does not exist' in str(caught.value) and 'local' in str(caught.value)
