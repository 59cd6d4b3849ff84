# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What users do on their first day, through every connection: Ansible's ``timeout:`` keyword, Ctrl-C, a second
run queued behind a first one and killed, ``reset_connection`` while a command runs.

The emulator runs every "container" and "instance" as local processes, so a command can write its own pid
to a file of the test and the test can look whether that process still runs: an abandoned command must be
ended on the target (or the run must say why it may still run), and a cancelled command must never run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator

from helpers import BIN_DIR, ansible_env, ansible_playbook, broker_stats

DEFAULT_WORLD = Path(__file__).resolve().parents[1] / 'emulator' / 'cloudexec_emulator' / 'worlds' / 'default.yml'
AWS_TASK = 'd0000000000000000000000000000001'
HOSTS: dict[str, dict[str, Any]] = {
    'aws_ecs': {'ansible_connection': 'cloudexec.core.aws_ecs', 'ansible_aws_ecs_cluster': 'interrupt',
                'ansible_aws_ecs_task': AWS_TASK, 'ansible_aws_ecs_container': 'app'},
    'ali_eci': {'ansible_connection': 'cloudexec.core.ali_eci', 'ansible_ali_eci_container_group_id': 'eci-bp1demo00000000001',
                'ansible_ali_eci_container_name': 'web'},
    'ali_assist': {'ansible_connection': 'cloudexec.core.ali_assist', 'ansible_host': 'i-bp1demo000000000001'},
}
# Every connection has a per-host broker; on a session, commands take turns (a request can wait in a queue) and
# opening the broker calls the cloud. Cloud Assistant's broker opens nothing and runs commands side by side.
BROKERED = ('aws_ecs', 'ali_eci', 'ali_assist')
SESSIONS = ('aws_ecs', 'ali_eci')


@pytest.fixture(scope='module')
def emulator(tmp_path_factory):
    """The default world with ECS Exec's start-up cut short, plus one task of our own."""
    directory = tmp_path_factory.mktemp('interruptions')
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['aws']['exec'] = {'agent_start_ms': 10, 'output_delay_ms': 20, 'session_limit': 2}
    world['aws']['clusters'].append({'name': 'interrupt', 'tasks': [{'id': AWS_TASK, 'family': 'interrupt', 'containers': [{'name': 'app'}]}]})
    path = directory / 'world.yml'
    path.write_text(yaml.safe_dump(world))
    with start_emulator(world=path, state_dir=directory / 'state') as info:
        yield info


def inventory(tmp_path: Path, transport: str, **extra: Any) -> Path:
    path = tmp_path / 'inventory.yml'
    path.write_text(yaml.safe_dump({'target': {'hosts': {transport: {**HOSTS[transport], **extra}},
                                               'vars': {'ansible_python_interpreter': sys.executable}}}))
    return path


def playbook(tmp_path: Path, name: str, tasks: list[dict[str, Any]]) -> Path:
    path = tmp_path / f'{name}.yml'
    path.write_text(yaml.safe_dump([{'name': name, 'hosts': 'target', 'gather_facts': False, 'tasks': tasks}]))
    return path


def long_task(pid_file: Path, seconds: int, **extra: Any) -> dict[str, Any]:
    """A command that writes its pid where the test looks, then sleeps (the sleep keeps that pid)."""
    return {'name': 'long', 'ansible.builtin.shell': f'echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; exec sleep {seconds}',
            **extra}


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(') ', 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != 'Z'


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.1)


def read_pid(pid_file: Path, timeout: float = 120) -> int:
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout, f'{pid_file} to be written')
    return int(pid_file.read_text())


def kill_if_running(pid: int) -> None:
    if running(pid):
        os.kill(pid, signal.SIGKILL)


def start_playbook(emulator, path: Path, inv: Path, control: Path, log: Path, *args: str) -> subprocess.Popen:
    """ansible-playbook in a process group of its own (as a terminal would run it), output to log."""
    env = ansible_env(emulator, {'CLOUDEXEC_CONTROL_DIR': str(control)})
    env.pop('ANSIBLE_CALLBACKS_ENABLED', None)
    with open(log, 'wb') as sink:
        return subprocess.Popen([str(BIN_DIR / 'ansible-playbook'), '-i', str(inv), str(path), *args], env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_invocations(emulator) -> int:
    return emulator.admin('GET', 'calls')['calls'].get('ali-ecs', {}).get('StopInvocation', 0)


def env_for(control: Path) -> dict[str, str]:
    return {'CLOUDEXEC_CONTROL_DIR': str(control)}


@pytest.mark.parametrize('transport', sorted(HOSTS))
def test_task_timeout_ends_the_command_and_the_next_task_runs(emulator, tmp_path, control_dir, transport):
    pid_file = tmp_path / 'long.pid'
    play = playbook(tmp_path, 'timeout', [long_task(pid_file, 1000, timeout=8, ignore_errors=True),
                                          {'name': 'next', 'ansible.builtin.command': 'echo next'}])
    run = ansible_playbook(emulator, play, '-i', str(inventory(tmp_path, transport)), '-v', extra_env=env_for(control_dir), timeout=240)
    pid = read_pid(pid_file, timeout=5)
    try:
        assert run.rc == 0, run.output
        assert run.record('long')['status'] == 'failed' and 'Timed out' in run.result('long')['msg'], run.output
        assert run.result('next')['stdout'] == 'next', run.output
        # Ended on the target, and the run says so.
        wait_for(lambda: not running(pid), 10, f'the abandoned command (pid {pid}) to end')
        assert 'was abandoned' in run.output, run.output
        assert 'it was ended' in run.output or 'it is no longer running' in run.output, run.output
        assert 'may still be running' not in run.output, run.output
    finally:
        kill_if_running(pid)


@pytest.mark.parametrize('transport', sorted(HOSTS))
def test_ctrl_c_then_the_next_run_goes_on_at_once(emulator, tmp_path, control_dir, transport):
    pid_file = tmp_path / 'long.pid'
    inv = inventory(tmp_path, transport)
    stops = stop_invocations(emulator)
    first = start_playbook(emulator, playbook(tmp_path, 'interrupted', [long_task(pid_file, 600)]), inv, control_dir, tmp_path / 'first.log')
    try:
        pid = read_pid(pid_file)
        os.killpg(first.pid, signal.SIGINT)   # what Ctrl-C in a terminal does
        first.wait(60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    try:
        run = ansible_playbook(emulator, playbook(tmp_path, 'again', [{'name': 'again', 'ansible.builtin.command': 'echo again'}]),
                               '-i', str(inv), '-v', extra_env=env_for(control_dir), timeout=240)
        assert run.rc == 0 and run.result('again')['stdout'] == 'again', run.output
        # Before, the broker served the interrupted command to its end: this run waited for the whole sleep.
        assert run.duration < 120, run.output
        wait_for(lambda: not running(pid), 15, f'the interrupted command (pid {pid}) to end')
        if transport == 'ali_assist':
            # The broker saw its caller go and ended the command (StopInvocation, then a sweep of its processes).
            assert stop_invocations(emulator) == stops + 1
    finally:
        kill_if_running(pid)


@pytest.mark.parametrize('transport', SESSIONS)
def test_a_queued_request_whose_caller_was_killed_never_runs(emulator, tmp_path, control_dir, transport):
    pid_file = tmp_path / 'long.pid'
    marker = tmp_path / 'must-not-exist'
    inv = inventory(tmp_path, transport)
    first = start_playbook(emulator, playbook(tmp_path, 'busy', [long_task(pid_file, 15)]), inv, control_dir, tmp_path / 'first.log')
    second = None
    try:
        pid = read_pid(pid_file)
        # The second run's module is pipelined: its one request carries the whole command, and waits for the shell.
        second = start_playbook(emulator, playbook(tmp_path, 'queued', [{'name': 'queued', 'ansible.builtin.command': f'touch {marker}'}]),
                                inv, control_dir, tmp_path / 'second.log', '-e', 'ansible_pipelining=true')
        wait_for(lambda: any(stats.get('queued') for stats in broker_stats(control_dir)), 60, 'the second request to queue')
        os.killpg(second.pid, signal.SIGINT)   # Ctrl-C in the terminal of the second run
        second.wait(30)
        assert first.wait(120) == 0, (tmp_path / 'first.log').read_text()
        assert not running(pid)
        time.sleep(1)
        assert not marker.exists(), (tmp_path / 'second.log').read_text()
        stats = broker_stats(control_dir)
        assert [s['dropped'] for s in stats] == [1], stats
        assert any('was dropped, not run' in note for note in stats[0]['history']), stats
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize('transport', sorted(HOSTS))
def test_reset_connection_while_busy_returns_within_seconds(emulator, tmp_path, control_dir, transport):
    pid_file = tmp_path / 'long.pid'
    inv = inventory(tmp_path, transport)
    first = start_playbook(emulator, playbook(tmp_path, 'busy', [long_task(pid_file, 600)]), inv, control_dir, tmp_path / 'first.log')
    try:
        pid = read_pid(pid_file)
        reset = ansible_playbook(emulator, playbook(tmp_path, 'reset', [{'name': 'reset', 'ansible.builtin.meta': 'reset_connection'}]),
                                 '-i', str(inv), '-vvv', extra_env=env_for(control_dir), timeout=120)
        assert reset.rc == 0, reset.output
        assert reset.duration < 60, reset.output
        if transport in BROKERED:
            # The busy command was ended with the session: the first run's task fails and says why.
            first.wait(60)
            log = (tmp_path / 'first.log').read_text()
            assert first.returncode != 0 and 'reset_connection' in log, log
            wait_for(lambda: not running(pid), 10, f'the command (pid {pid}) to end')
            assert not broker_stats(control_dir)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        kill_if_running(pid)


@pytest.mark.parametrize('transport', sorted(HOSTS))
def test_command_timeout_zero_is_refused(emulator, tmp_path, control_dir, transport):
    option = {'aws_ecs': 'ansible_aws_ecs_command_timeout', 'ali_eci': 'ansible_ali_eci_command_timeout',
              'ali_assist': 'ansible_ali_assist_command_timeout'}[transport]
    play = playbook(tmp_path, 'zero', [{'name': 'zero', 'ansible.builtin.raw': 'echo hi'}])
    run = ansible_playbook(emulator, play, '-i', str(inventory(tmp_path, transport, **{option: 0})), extra_env=env_for(control_dir))
    assert run.rc != 0 and 'command_timeout must be' in run.output, run.output
    assert not broker_stats(control_dir)


def brokers_of(control: Path) -> list[int]:
    """Broker processes started for this control directory (found by their environment: it names it)."""
    found = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / 'cmdline').read_bytes()
            environ = (entry / 'environ').read_bytes()
        except OSError:
            continue
        if b'plugin_utils.broker import main' in cmdline and f'CLOUDEXEC_CONTROL_DIR={control}\0'.encode() in environ:
            if running(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize('transport', SESSIONS)
def test_a_broker_whose_caller_gave_up_while_it_started_exits_at_once(emulator, tmp_path, control_dir, transport):
    service, action = {'aws_ecs': ('aws-ecs', 'ExecuteCommand'), 'ali_eci': ('ali-eci', 'ExecContainerCommand')}[transport]
    emulator.admin('POST', 'faults', {'service': service, 'action': action, 'latency_ms': 60000})
    run = None
    try:
        run = start_playbook(emulator, playbook(tmp_path, 'starting', [{'name': 'hi', 'ansible.builtin.raw': 'echo hi'}]),
                             inventory(tmp_path, transport), control_dir, tmp_path / 'run.log')
        wait_for(lambda: brokers_of(control_dir), 60, 'a broker to start')
        os.killpg(run.pid, signal.SIGINT)
        run.wait(30)
        # Before, it went on opening the session, then kept it for idle_timeout.
        wait_for(lambda: not brokers_of(control_dir), 10, 'the broker to exit')
    finally:
        emulator.admin('DELETE', 'faults')
        if run is not None and run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
