# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sandbox process helper: clean env, HOME/cwd, PTY, timeouts, process-tree kills."""
from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from cloudexec_emulator.sandbox import SandboxRunner, prepare_sandboxes, sandbox_dir
from cloudexec_emulator.world import load_world


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(name='box')
def box_fixture(tmp_path):
    path = sandbox_dir(tmp_path, 'ali-ecs', 'i-test')
    path.mkdir(parents=True)
    return path


def test_home_cwd_and_clean_env(box, monkeypatch):
    monkeypatch.setenv('CLOUDEXEC_LEAK_CHECK', 'leaked')
    result = run(SandboxRunner().run(box, ['sh', '-c', 'echo "$HOME|$(pwd)|${CLOUDEXEC_LEAK_CHECK:-clean}|$PATH"']))
    home, cwd, leak, path = result.stdout.decode().strip().split('|')
    assert home == cwd == str(box)
    assert leak == 'clean'
    assert path.endswith('/usr/bin:/sbin:/bin')
    assert result.exit_code == 0 and not result.timed_out


def test_exit_code_and_separate_streams(box):
    result = run(SandboxRunner().run(box, ['sh', '-c', 'echo out; echo err >&2; exit 7']))
    assert result.exit_code == 7
    assert result.stdout == b'out\n' and result.stderr == b'err\n'
    assert sorted(result.output.splitlines()) == [b'err', b'out']


def test_stdin_and_extra_env(box):
    result = run(SandboxRunner().run(box, ['sh', '-c', 'cat; echo "$GREETING"'], stdin=b'from stdin\n', env={'GREETING': 'hi'}))
    assert result.stdout == b'from stdin\nhi\n'


def test_timeout_kills_the_process_tree(box):
    started = time.monotonic()
    result = run(SandboxRunner().run(box, ['sh', '-c', 'sleep 30 & sleep 30; echo never'], timeout=0.5))
    assert result.timed_out and result.exit_code == 137
    assert b'never' not in result.output
    assert time.monotonic() - started < 5


def test_background_children_do_not_hold_the_call(box):
    started = time.monotonic()
    result = run(SandboxRunner().run(box, ['sh', '-c', 'sleep 30 & echo started'], timeout=10))
    assert result.stdout == b'started\n' and result.exit_code == 0
    assert time.monotonic() - started < 5


def test_pty_merges_streams_with_terminal_line_endings(box):
    result = run(SandboxRunner().run(box, ['sh', '-c', 'test -t 0 && test -t 1 && echo tty; echo oops >&2; echo "$TERM"; exit 3'],
                                     tty=True, timeout=10))
    assert result.exit_code == 3
    assert result.output == b'tty\r\noops\r\nxterm-256color\r\n'
    assert result.stderr == b''


def test_files_stay_in_their_sandbox(tmp_path):
    one, two = sandbox_dir(tmp_path, 'ali-eci', 'g', 'a'), sandbox_dir(tmp_path, 'ali-eci', 'g', 'b')
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    runner = SandboxRunner()
    run(runner.run(one, ['sh', '-c', 'echo secret > note.txt']))
    assert (one / 'note.txt').read_text() == 'secret\n'
    assert run(runner.run(two, ['sh', '-c', 'cat note.txt'])).exit_code != 0


def test_interactive_pty_session(box):
    async def session():
        runner = SandboxRunner()
        proc = await runner.start(box, ['sh'], tty=True, rows=30, cols=100)
        assert proc.has_pty and runner.live == 1
        proc.write(b'stty size; echo "marker-$((6*7))"\n')
        seen = b''
        while b'marker-42' not in seen:
            item = await asyncio.wait_for(proc.read(), 5)
            assert item is not None
            seen += item[1]
        assert b'30 100' in seen
        proc.resize(40, 120)
        proc.write(b'stty size; exit 5\n')
        while (item := await asyncio.wait_for(proc.read(), 5)) is not None:
            seen += item[1]
        assert b'40 120' in seen
        assert await proc.wait() == 5
        proc.close()
        return runner.live
    assert run(session()) == 0


def test_kill_all(box):
    async def scenario():
        runner = SandboxRunner()
        procs = [await runner.start(box, ['sleep', '60']) for _index in range(2)]
        procs.append(await runner.start(box, ['sleep', '60'], tty=True))
        assert runner.live == 3
        await runner.kill_all()
        return [p.returncode for p in procs], runner.live
    codes, live = run(scenario())
    assert codes == [-9, -9, -9] and live == 0


def test_start_refuses_missing_sandbox(tmp_path):
    with pytest.raises(FileNotFoundError):
        run(SandboxRunner().run(tmp_path / 'absent', ['true']))


def test_prepare_sandboxes_for_default_world(tmp_path):
    world = load_world()
    prepare_sandboxes(world, tmp_path)
    api = next(t for t in world.aws.all_tasks() if t.family == 'api')
    assert [c.sandbox for c in api.containers] == [tmp_path / 'sandboxes' / 'aws-ecs' / api.task_id / name for name in ('app', 'sidecar')]
    assert all(c.sandbox.is_dir() for t in world.aws.all_tasks() for c in t.containers)
    assert sorted(os.listdir(tmp_path / 'sandboxes')) == ['ali-eci', 'ali-ecs', 'aws-ecs', 'aws-ssm']
    assert len(os.listdir(tmp_path / 'sandboxes' / 'ali-ecs')) == 5
    assert sorted(os.listdir(tmp_path / 'sandboxes' / 'ali-eci' / 'eci-bp1demo00000000002')) == ['app', 'sidecar']


def test_become_password_of_every_kind_of_target(tmp_path):
    """An ECS container, an ECI container and an ECS instance may each have a become password for the fake sudo: its
    SHA-256 lies next to the sandbox (never inside it), and sudo without it is refused there."""
    from cloudexec_emulator.world import parse_world  # pylint: disable=import-outside-toplevel

    containers = [{'name': 'pw', 'become_password': 'ecs-pass'}, {'name': 'open'}]
    eci_containers = [{'name': 'pw', 'become_password': 'eci-pass'}, {'name': 'open'}]
    instances = [{'id': 'i-pw', 'become_password': 'instance-pass'}, {'id': 'i-open'}]
    world = parse_world({
        'aws': {'clusters': [{'name': 'c', 'tasks': [{'id': 'a' * 32, 'family': 'f', 'containers': containers}]}]},
        'alicloud': {'container_groups': [{'id': 'eci-test', 'name': 'g', 'containers': eci_containers}], 'instances': instances},
    })
    prepare_sandboxes(world, tmp_path)
    boxes = {sandbox_dir(tmp_path, 'aws-ecs', 'a' * 32, 'pw'): 'ecs-pass', sandbox_dir(tmp_path, 'aws-ecs', 'a' * 32, 'open'): None,
             sandbox_dir(tmp_path, 'ali-eci', 'eci-test', 'pw'): 'eci-pass', sandbox_dir(tmp_path, 'ali-eci', 'eci-test', 'open'): None,
             sandbox_dir(tmp_path, 'ali-ecs', 'i-pw'): 'instance-pass', sandbox_dir(tmp_path, 'ali-ecs', 'i-open'): None}
    for box, password in boxes.items():
        digest = box.parent / f'{box.name}.become-sha256'
        assert not list(box.iterdir()), box
        result = run(SandboxRunner().run(box, ['sh', '-c', 'sudo -n true && echo ran']))
        if password is None:
            assert not digest.exists() and result.stdout == b'ran\n', box
        else:
            assert digest.read_text().strip() == hashlib.sha256(password.encode()).hexdigest(), box
            assert result.exit_code == 1 and result.stderr == b'sudo: a password is required\n', box
