# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A local stand-in for an exec session: the real bootstrap and `sh -s`, over pipes."""

from __future__ import annotations

import os
import select
import subprocess

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.plugin_utils.persistent_shell import bootstrap_command


class LocalChannel:
    """A ByteChannel over a local shell's pipes; close() lets the shell run on (stdin at EOF)."""

    def __init__(self, nonce: str) -> None:
        self.proc = subprocess.Popen(['sh', '-c', bootstrap_command(nonce)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise CloudExecError('the local shell is gone', code='SessionClosed') from None

    def read(self, timeout: float) -> bytes:
        ready, _w, _x = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return b''
        data = os.read(self.proc.stdout.fileno(), 65536)
        if not data:
            raise CloudExecError('the local shell ended', code='SessionClosed')
        return data

    def close(self) -> None:
        if not self.proc.stdin.closed:
            self.proc.stdin.close()


@pytest.fixture
def local_channel():
    """The LocalChannel class: LocalChannel(nonce) starts a local session running the bootstrap for that nonce."""
    return LocalChannel
