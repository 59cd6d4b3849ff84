# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import socket

import pytest

from ansible_collections.cloudexec.core.plugins.plugin_utils import broker


def test_short_paths_are_used_as_they_are(tmp_path):
    path = '/tmp/x/abc.sock'
    assert broker.sockaddr(path) == path


def test_long_control_dir_still_gets_a_working_private_socket(tmp_path):
    deep = tmp_path / ('d' * 60) / ('e' * 60)
    deep.mkdir(parents=True, mode=0o700)
    path = str(deep / (('f' * 32) + '.sock'))
    assert len(path) > 108
    address = broker.sockaddr(path)
    assert len(address) <= 100
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    server.listen(1)
    # The socket file is in the deep directory itself, where its permissions protect it.
    assert os.path.exists(path)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(broker.sockaddr(path))
    client.close()
    server.close()


def test_control_dir_must_be_private(tmp_path, monkeypatch):
    shared = tmp_path / 'shared'
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    monkeypatch.setenv('CLOUDEXEC_CONTROL_DIR', str(shared))
    with pytest.raises(broker.BrokerError) as info:
        broker.control_dir()
    assert info.value.code == 'InsecureControlDir'


def test_broker_key_hides_secrets_and_separates_targets():
    one = broker.broker_key('aws_ecs', {'task': 'a', 'secret_key': 's3cr3t'})
    assert 's3cr3t' not in one and len(one) == 32
    assert one != broker.broker_key('aws_ecs', {'task': 'b', 'secret_key': 's3cr3t'})
    assert one != broker.broker_key('aws_ecs', {'task': 'a', 'secret_key': 'other'})


def test_messages_round_trip_with_payloads():
    left, right = socket.socketpair()
    broker.send_message(left, {'op': 'exec', 'command': 'true'}, b'\x00binary', b'')
    header, payloads = broker.recv_message(right)
    assert header['op'] == 'exec' and header['payloads'] == [7, 0]
    assert payloads == [b'\x00binary', b'']
    left.close()
    right.close()
