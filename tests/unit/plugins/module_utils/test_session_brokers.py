# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""session_brokers against real Unix sockets answering in the broker's wire format, and not_connected_error."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import typing as t

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import aws_ecs, session_brokers
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError

TARGET = 'aws_ecs:0123456789abcdef0123456789abcdef/app'


def _serve(path: str, reply: dict[str, t.Any] | None, seen: list[dict[str, t.Any]]) -> socket.socket:
    """A broker stand-in: answers one request with reply (None: reads it and never answers)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)

    def run() -> None:
        with server:
            conn, _addr = server.accept()
            with conn:
                size = struct.unpack('>I', conn.recv(4))[0]
                seen.append(json.loads(conn.recv(size)))
                if reply is None:
                    conn.recv(1)   # until the client gives up
                    return
                raw = json.dumps(dict(reply, payloads=[])).encode()
                conn.sendall(struct.pack('>I', len(raw)) + raw)

    threading.Thread(target=run, daemon=True).start()
    return server


@pytest.fixture
def control(tmp_path):
    directory = tmp_path / 'cp'
    directory.mkdir(mode=0o700)
    return directory


def test_holders_are_the_brokers_serving_the_target(control):
    seen: list[dict[str, t.Any]] = []
    _serve(str(control / 'a.sock'), {'ok': True, 'pid': 11, 'busy': False, 'target': TARGET}, seen)
    _serve(str(control / 'b.sock'), {'ok': True, 'pid': 12, 'busy': True, 'target': 'aws_ecs:other/app'}, seen)
    _serve(str(control / 'c.sock'), None, seen)   # a broker still opening its session: no answer
    (control / 'not-a-socket.lock').write_text('')
    found = session_brokers.holders(TARGET, str(control))
    assert [(b['pid'], b['socket']) for b in found] == [(11, str(control / 'a.sock'))]
    assert session_brokers.describe(found[0]) == 'pid 11 (idle, a.sock)'
    assert sorted(request['op'] for request in seen) == ['stats'] * 3


def test_a_directory_others_can_enter_is_not_believed(control):
    seen: list[dict[str, t.Any]] = []
    _serve(str(control / 'a.sock'), {'ok': True, 'pid': 11, 'target': TARGET}, seen)
    os.chmod(control, 0o755)
    assert session_brokers.broker_stats(str(control)) == [] and seen == []
    assert session_brokers.broker_stats(str(control / 'missing')) == []


def test_control_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv('CLOUDEXEC_CONTROL_DIR', str(tmp_path))
    assert session_brokers.control_dir() == str(tmp_path)


class _Ecs:
    """DescribeTasks of one task whose container's exec agent has the given status."""

    def __init__(self, status: str) -> None:
        self.status = status

    def describe_tasks(self, **_kwargs: t.Any) -> dict[str, t.Any]:
        return {'tasks': [{'taskArn': 'arn:aws:ecs:us-east-1:1:task/c/0123456789abcdef0123456789abcdef', 'containers': [
            {'name': 'app', 'managedAgents': [{'name': 'ExecuteCommandAgent', 'lastStatus': self.status}]}]}]}


TARGET_OBJ = aws_ecs.EcsTarget(cluster_arn='arn:aws:ecs:us-east-1:1:cluster/c', task_arn='arn:aws:ecs:us-east-1:1:task/c/'
                               '0123456789abcdef0123456789abcdef', container_name='app', runtime_id='r', launch_type='FARGATE',
                               platform_version='1.4.0')


def _refusal() -> CloudExecError:
    return CloudExecError('ExecuteCommand failed: The execute command failed due to an internal error. Try again later.',
                          code='TargetNotConnectedException', provider='aws', remedy='check enableExecuteCommand', status=400)


def test_not_connected_with_a_running_agent_names_our_brokers(monkeypatch, control):
    monkeypatch.setenv('CLOUDEXEC_CONTROL_DIR', str(control))
    _serve(str(control / 'a.sock'), {'ok': True, 'pid': 11, 'busy': False, 'target': TARGET}, [])
    error = aws_ecs.not_connected_error(_Ecs('RUNNING'), TARGET_OBJ, _refusal(), 60)
    assert error.code == 'TargetNotConnectedException' and not error.retryable
    assert error.message.startswith('ExecuteCommand on 0123456789abcdef0123456789abcdef/app was refused for 60 seconds '
                                    '("The execute command failed due to an internal error. Try again later") although')
    assert 'sessions may all be in use' in error.message and 'pid 11 (idle, a.sock)' in error.message
    assert 'meta: reset_connection' in error.remedy and 'idle_timeout' in error.remedy


def test_not_connected_with_an_agent_that_is_not_running_keeps_aws_advice(monkeypatch, control):
    monkeypatch.setenv('CLOUDEXEC_CONTROL_DIR', str(control))
    error = aws_ecs.not_connected_error(_Ecs('STOPPED'), TARGET_OBJ, _refusal(), 12)
    assert 'sessions may all be in use' not in error.message and 'kept failing for 12 seconds' in error.message
    assert error.remedy.startswith('The ECS Exec agent in the container is STOPPED now. check enableExecuteCommand')
