# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.cloudexec.core.plugins.plugin_utils import file_transfer


class LocalRunner:
    """Runs each command in a real local sh, as the target's shell would, and counts round trips."""

    def __init__(self, cwd, corrupt: bool = False) -> None:
        self.cwd = cwd
        self.corrupt = corrupt
        self.calls: list[str] = []

    def __call__(self, command, stdin):
        self.calls.append(command)
        if self.corrupt and stdin:
            stdin = stdin[:-1] + bytes([stdin[-1] ^ 1])
        proc = subprocess.run(['sh', '-c', command], input=stdin, capture_output=True, cwd=self.cwd, check=False)
        return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize('size, chunk, round_trips', [(0, 16, 1), (10, 16, 1), (16, 16, 1), (50, 16, 4)])
def test_put_file_is_exact_and_costs_one_round_trip_per_chunk(tmp_path, size, chunk, round_trips):
    src = tmp_path / 'src.bin'
    src.write_bytes(os.urandom(size))
    remote = tmp_path / 'remote'
    remote.mkdir()
    run = LocalRunner(remote)
    stats = file_transfer.put_file(run, str(src), 'dest file', chunk_size=chunk)
    assert (remote / 'dest file').read_bytes() == src.read_bytes()
    assert not (remote / 'dest file.cloudexec-part').exists()
    assert len(run.calls) == round_trips and stats['chunks'] == round_trips and stats['bytes'] == size


def test_put_file_refuses_a_damaged_upload(tmp_path):
    src = tmp_path / 'src.bin'
    src.write_bytes(b'important bytes')
    remote = tmp_path / 'remote'
    remote.mkdir()
    (remote / 'dest').write_bytes(b'old content')
    with pytest.raises(file_transfer.TransferError) as info:
        file_transfer.put_file(LocalRunner(remote, corrupt=True), str(src), 'dest')
    assert info.value.code == 'ChecksumMismatch'
    # The old file stays; no partial file is left behind.
    assert (remote / 'dest').read_bytes() == b'old content'
    assert not (remote / 'dest.cloudexec-part').exists()


def test_put_file_reports_a_write_failure(tmp_path):
    src = tmp_path / 'src.bin'
    src.write_bytes(b'x')
    with pytest.raises(file_transfer.TransferError) as info:
        file_transfer.put_file(LocalRunner(tmp_path), str(src), 'no/such/dir/dest')
    assert info.value.code == 'TransferFailed'


def test_fetch_file_round_trip_in_chunks(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / 'remote.bin').write_bytes(data)
    run = LocalRunner(tmp_path)
    stats = file_transfer.fetch_file(run, 'remote.bin', str(tmp_path / 'local.bin'), chunk_size=1024 * 1024)
    assert (tmp_path / 'local.bin').read_bytes() == data
    assert stats['bytes'] == len(data)
    assert sum('dd if=' in call for call in run.calls) == 4


def test_fetch_missing_file(tmp_path):
    with pytest.raises(file_transfer.RemoteFileNotFound):
        file_transfer.fetch_file(LocalRunner(tmp_path), 'missing', str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()
