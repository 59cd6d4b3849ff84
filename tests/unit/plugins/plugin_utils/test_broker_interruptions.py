# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The broker when callers go away, on a real local shell.

The "session" is a local `sh -s` started with the real bootstrap, over pipes. Closing it leaves the shell
running, as an ECI exec stream does when its client goes away, so the broker's way of ending an abandoned
command (a new session that kills the old shell's process tree) is exercised for real.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import errors, remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError
from ansible_collections.cloudexec.core.plugins.plugin_utils import broker
from ansible_collections.cloudexec.core.plugins.plugin_utils.persistent_shell import PersistentShell


def running(pid: int) -> bool:
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(') ', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def written(path: Path) -> bool:
    """The file exists and holds a line (`echo $$ > file` creates it before it writes it)."""
    try:
        return path.read_text().endswith('\n')
    except OSError:
        return False


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def serving(kind: str, path: str):
    """A Broker (its open_shell patched by the caller) with its session open, serving path in a thread."""
    instance = broker.Broker(kind, {'idle_timeout': 60, 'connect_timeout': 10}, path, log=lambda msg: None)
    instance.open_shell()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    thread = threading.Thread(target=instance.serve, args=(server,), daemon=True)
    thread.start()
    try:
        yield instance
    finally:
        instance.finished.set()
        thread.join(5)
        server.close()


@pytest.fixture
def served(tmp_path, monkeypatch, local_channel):
    """A Broker on a local shell, serving a Unix socket in a thread; yields (broker, socket path, channels opened)."""
    channels: list = []

    def open_shell(self):
        nonce = remote_shell.new_nonce()
        channel = local_channel(nonce)
        channels.append(channel)
        shell = PersistentShell(channel, nonce, where='local')
        shell.wait_ready(10)
        self.shell = shell
        self.sessions_opened += 1

    monkeypatch.setattr(broker.Broker, 'open_shell', open_shell)
    monkeypatch.setattr(broker, 'STOP_WAIT', 10.0)
    path = str(tmp_path / 'b.sock')
    with serving('local', path) as instance:
        yield instance, path, channels
    for channel in channels:
        if channel.proc.poll() is None:
            channel.proc.kill()


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def exec_request(sock: socket.socket, command: str, timeout: float = 30, wait: float = 10) -> None:
    broker.send_message(sock, {'op': 'exec', 'command': command, 'stdin': False, 'timeout': timeout, 'wait': wait})


def test_the_shell_reports_its_process(served):
    instance, _path, channels = served
    assert instance.shell.shell_pid == str(channels[0].proc.pid) and instance.shell.shell_start.isdigit()


def test_a_caller_that_goes_away_has_its_command_ended_and_hears_how(served, tmp_path):
    instance, path, channels = served
    pid_file = tmp_path / 'pid'
    sock = connect(path)
    exec_request(sock, f'sleep 300 & echo $! > {pid_file}; wait')
    assert wait_for(lambda: written(pid_file))
    sleeper = int(pid_file.read_text())
    sock.shutdown(socket.SHUT_WR)   # what BrokerClient does when Ansible's task timeout interrupts it
    sock.settimeout(30)
    reply, _data = broker.recv_message(sock)
    sock.close()
    assert reply['error']['code'] == 'CommandAbandoned' and 'it was ended' in reply['error']['message'], reply
    # The old shell (left running by its closed session, as on ECI) and the command's processes are gone.
    assert wait_for(lambda: not running(sleeper)) and wait_for(lambda: channels[0].proc.poll() is not None)
    assert instance.abandoned == 1 and instance.sessions_opened == 2
    # The new session serves the next caller at once.
    sock = connect(path)
    exec_request(sock, 'echo next')
    reply, data = broker.recv_message(sock)
    assert reply['ok'] and data[0] == b'next\n' and not reply['notes']


def test_a_caller_that_dies_leaves_a_note_for_the_next_one(served, tmp_path):
    instance, path, _channels = served
    pid_file = tmp_path / 'pid'
    sock = connect(path)
    exec_request(sock, f'echo $$ > {pid_file}; exec sleep 300')
    assert wait_for(lambda: written(pid_file))
    sock.close()   # a killed worker
    assert wait_for(lambda: instance.abandoned == 1 and not running(int(pid_file.read_text())))
    sock = connect(path)
    exec_request(sock, 'echo after')
    reply, data = broker.recv_message(sock)
    assert reply['ok'] and data[0] == b'after\n'
    assert len(reply['notes']) == 1 and 'was abandoned' in reply['notes'][0]['text'] and not reply['notes'][0]['worrying']


def test_a_queued_request_whose_caller_left_is_dropped_never_run(served, tmp_path):
    instance, path, _channels = served
    marker = tmp_path / 'ran'
    busy = connect(path)
    exec_request(busy, 'sleep 5; echo done')
    assert wait_for(lambda: instance.busy_since is not None)
    queued = connect(path)
    exec_request(queued, f'touch {marker}')
    assert wait_for(lambda: instance.queued == 1)
    queued.close()
    reply, data = broker.recv_message(busy)
    assert reply['ok'] and data[0] == b'done\n'
    time.sleep(0.5)
    assert not marker.exists() and instance.dropped == 1


def test_a_request_already_gone_when_its_turn_comes_never_runs(served, tmp_path):
    instance, path, _channels = served
    marker = tmp_path / 'ran'
    busy = connect(path)
    exec_request(busy, 'sleep 3')
    assert wait_for(lambda: instance.busy_since is not None)
    # Sent and closed before the broker even read it: it sits in the socket.
    late = connect(path)
    exec_request(late, f'touch {marker}')
    late.close()
    broker.recv_message(busy)
    assert wait_for(lambda: instance.dropped == 1)
    assert not marker.exists()


def test_a_waiting_caller_is_told_the_session_is_busy(served):
    instance, path, _channels = served
    busy = connect(path)
    exec_request(busy, 'sleep 3')
    assert wait_for(lambda: instance.busy_since is not None)
    other = connect(path)
    exec_request(other, 'echo hi', wait=0.5)
    reply, _data = broker.recv_message(other)
    assert reply['error']['code'] == 'SessionBusy' and 'busy with another command since' in reply['error']['message']
    assert reply['error']['may_have_run'] is False
    assert broker.recv_message(busy)[0]['ok']


def test_reset_while_busy_ends_the_command_and_the_session(served, tmp_path):
    instance, path, channels = served
    pid_file = tmp_path / 'pid'
    busy = connect(path)
    exec_request(busy, f'echo $$ > {pid_file}; exec sleep 300')
    assert wait_for(lambda: written(pid_file))
    started = time.monotonic()
    stopper = connect(path)
    broker.send_message(stopper, {'op': 'stop'})
    stopper.settimeout(30)
    reply, _data = broker.recv_message(stopper)
    assert reply['ok'] and reply['stopping'] and time.monotonic() - started < 15
    answer, _data = broker.recv_message(busy)
    assert answer['error']['code'] == 'CommandAbandoned' and 'reset_connection' in answer['error']['message']
    assert not running(int(pid_file.read_text()))
    assert instance.shell is None and not os.path.exists(path)
    assert all(wait_for(lambda channel=channel: channel.proc.poll() is not None) for channel in channels)


def test_a_command_past_its_timeout_is_ended(served, tmp_path):
    _instance, path, _channels = served
    pid_file = tmp_path / 'pid'
    sock = connect(path)
    exec_request(sock, f'echo $$ > {pid_file}; exec sleep 300', timeout=1)
    reply, _data = broker.recv_message(sock)
    assert reply['error']['code'] == 'DeadlineExceeded' and reply['error']['may_have_run'] is True
    assert 'did not finish within 1 seconds' in reply['error']['message'] and 'it was ended' in reply['error']['message']
    assert not running(int(pid_file.read_text()))


def test_zero_timeouts_are_refused(served):
    _instance, path, _channels = served
    sock = connect(path)
    exec_request(sock, 'echo hi', timeout=0)
    reply, _data = broker.recv_message(sock)
    assert reply['error']['code'] == 'InvalidParameter' and 'command_timeout' in reply['error']['message']
    with pytest.raises(broker.BrokerError) as info:
        broker.BrokerClient('local', {}).run('echo hi', None, 0)
    assert info.value.code == 'InvalidParameter'


def test_the_client_abandons_on_interruption_and_reports(served, tmp_path, monkeypatch):
    # BrokerClient side of the task timeout: a BaseException while it waits says "abandon", hears the outcome, re-raises.
    _instance, path, _channels = served
    pid_file = tmp_path / 'pid'
    monkeypatch.setenv('CLOUDEXEC_CONTROL_DIR', str(tmp_path / 'cp'))
    notes = []
    client = broker.BrokerClient('local', {'connect_timeout': 5}, notify=lambda text, worrying: notes.append((text, worrying)))
    client._sock = connect(path)  # pylint: disable=protected-access

    class Interrupted(BaseException):
        pass

    real_recv = broker.recv_message
    calls = []

    def interrupted_recv(sock):
        calls.append(1)
        if len(calls) == 1:
            assert wait_for(lambda: written(pid_file))
            raise Interrupted()
        return real_recv(sock)

    monkeypatch.setattr(broker, 'recv_message', interrupted_recv)
    with pytest.raises(Interrupted):
        client.run(f'echo $$ > {pid_file}; exec sleep 300', None, 60)
    assert notes and 'was abandoned' in notes[0][0] and not notes[0][1], notes
    assert not running(int(pid_file.read_text()))


def test_when_no_new_session_can_be_had_the_broker_says_so_and_retires(served, tmp_path, monkeypatch):
    instance, path, channels = served
    pid_file = tmp_path / 'pid'
    sock = connect(path)
    exec_request(sock, f'echo $$ > {pid_file}; exec sleep 300')
    assert wait_for(lambda: written(pid_file))

    def no_session(self):
        raise CloudExecError('the cloud is unreachable', code='EndpointConnectionError')

    monkeypatch.setattr(broker.Broker, 'open_shell', no_session)
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(30)
    reply, _data = broker.recv_message(sock)
    note = reply['notes'][0]
    assert note['worrying'] and 'may still be running' in note['text'] and 'EndpointConnectionError' in note['text'], note
    # It exits rather than keep serving without a session: the next task starts a new broker.
    assert wait_for(instance.finished.is_set) and not os.path.exists(path)
    os.kill(int(pid_file.read_text()), 9)
    channels[0].proc.kill()


class SideBySideHost:
    """A `concurrent` shell like Cloud Assistant's AssistHost: each command waits until released or cancelled."""

    concurrent = True
    broken = False
    where = 'fake instance'

    def __init__(self):
        self.running = 0
        self.most = 0
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.notify = None

    def idle_check(self):
        pass

    def run(self, command, *, stdin=None, timeout=30, cancelled=None, cache=True, private=0):
        del stdin, cache, private
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            deadline = time.monotonic() + timeout
            while not self.release.wait(0.05):
                reason = cancelled()
                if reason:
                    exc = errors.CommandAbandoned(reason, started=True)
                    exc.ended = (f'{command} was abandoned: {reason}; it was ended', False)
                    raise exc
                assert time.monotonic() < deadline
            return remote_shell.CommandResult(0, command.encode(), b'', trace={'RunCommand': 1})
        finally:
            with self.lock:
                self.running -= 1

    def take_log(self):
        return ['ALI ASSIST: a line for -vvv']

    def close(self, grace=0.0):
        pass


@pytest.fixture
def side_by_side(tmp_path, monkeypatch):
    host = SideBySideHost()

    def open_shell(self):
        self.shell = host
        self.sessions_opened += 1

    monkeypatch.setattr(broker.Broker, 'open_shell', open_shell)
    path = str(tmp_path / 's.sock')
    with serving('fake', path) as instance:
        yield instance, path, host
        host.release.set()


def test_commands_of_a_concurrent_host_run_side_by_side(side_by_side):
    instance, path, host = side_by_side
    first, second = connect(path), connect(path)
    exec_request(first, 'one', wait=0)   # no queue: a wait of 0 would fail at once on a session
    exec_request(second, 'two', wait=0)
    assert wait_for(lambda: host.running == 2), host.running
    assert instance.busy and instance.queued == 0
    host.release.set()
    replies = [broker.recv_message(sock) for sock in (first, second)]
    assert [(reply['ok'], data[0]) for reply, data in replies] == [(True, b'one'), (True, b'two')], replies
    assert all(reply['trace'] == {'RunCommand': 1} and reply['log'] == ['ALI ASSIST: a line for -vvv'] for reply, _data in replies)
    assert host.most == 2 and not instance.busy


def test_a_concurrent_hosts_abandoned_command_is_told_as_the_host_ended_it(side_by_side):
    instance, path, host = side_by_side
    stays, leaves = connect(path), connect(path)
    exec_request(stays, 'stays')
    exec_request(leaves, 'leaves')
    assert wait_for(lambda: host.running == 2)
    leaves.shutdown(socket.SHUT_WR)   # its task timed out
    leaves.settimeout(10)
    reply, _data = broker.recv_message(leaves)
    assert reply['error']['code'] == 'CommandAbandoned' and reply['error']['message'] == 'leaves was abandoned: its caller went away ' \
        '(a task timeout, an interrupt or a killed worker); it was ended', reply
    # The other command goes on; the host (no session) is neither dropped nor reopened.
    assert host.running == 1 and instance.sessions_opened == 1 and instance.shell is host
    host.release.set()
    reply, data = broker.recv_message(stays)
    assert reply['ok'] and data[0] == b'stays'


def test_a_concurrent_hosts_own_deadline_or_bare_abandon_never_touches_a_session(side_by_side, monkeypatch):
    # An API call retried until its time ran out (DeadlineExceeded), or an abandon the host did not end itself: there is
    # no session to close nor shell process to end; the host stays, and the caller hears what is known.
    instance, path, host = side_by_side

    def deadline(command, **kwargs):
        raise errors.DeadlineExceeded('Gave up waiting for RunCommand after 5 seconds; last error: Throttling.User')

    monkeypatch.setattr(host, 'run', deadline)
    sock = connect(path)
    exec_request(sock, 'x')
    reply, _data = broker.recv_message(sock)
    assert reply['error']['deadline'] and reply['error']['may_have_run'] and 'Throttling.User' in reply['error']['message'], reply
    assert instance.shell is host and instance.sessions_opened == 1 and instance.abandoned == 0

    def abandoned(command, **kwargs):
        raise errors.CommandAbandoned('its caller went away', started=True)

    monkeypatch.setattr(host, 'run', abandoned)
    exec_request(sock, 'y')
    reply, _data = broker.recv_message(sock)
    assert reply['error']['code'] == 'CommandAbandoned' and reply['notes'][0]['worrying'], reply
    assert 'it may still be running' in reply['error']['message'] and instance.shell is host and instance.sessions_opened == 1
