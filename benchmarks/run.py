#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cloudexec.core benchmarks: run on demand (`make bench`), never in CI; prints one table.

Each scenario starts its own emulator, runs real ansible-playbook processes, and reads the
emulator's call counters, so the figures are end to end: Ansible, our plugins, the SDKs, the wire.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests' / 'emulator'))

from cloudexec_emulator.testing import start_emulator  # noqa: E402  pylint: disable=wrong-import-position

TASK = '1f0e1c2d3b4a59687766554433221100'


def playbook(tasks: int) -> str:
    """A play of `tasks` ordinary tasks: command, shell, a small copy, stat, file."""
    lines = ['- hosts: target', '  gather_facts: false', '  tasks:',
             '    - ansible.builtin.file: {path: "{{ work_dir }}", state: directory}']
    kinds = [
        '    - ansible.builtin.command: echo {i}',
        '    - ansible.builtin.shell: echo {i} | tr 0-9 a-j',
        '    - ansible.builtin.copy: {{content: "line {i}\\n", dest: "{{{{ work_dir }}}}/f{i}.txt"}}',
        '    - ansible.builtin.stat: {{path: "{{{{ work_dir }}}}"}}',
        '    - ansible.builtin.file: {{path: "{{{{ work_dir }}}}/d{i}", state: directory}}',
    ]
    for i in range(tasks - 1):
        lines.append(kinds[i % len(kinds)].format(i=i))
    return '\n'.join(lines) + '\n'


# How each connection reaches one target of the default world, and which API calls open its sessions.
TARGETS = {
    'aws_ecs': ({'ansible_connection': 'cloudexec.core.aws_ecs', 'ansible_aws_ecs_cluster': 'demo', 'ansible_aws_ecs_task': TASK,
                 'ansible_aws_ecs_container': 'web'}, ('aws-ecs', 'ExecuteCommand'), 'aws-ecs-exec'),
    'aws_ssm': ({'ansible_connection': 'cloudexec.core.aws_ssm', 'ansible_aws_ssm_instance_id': 'i-0a1b2c3d4e5f60701',
                 'ansible_aws_ssm_region': 'us-east-1'}, ('aws-ssm', 'StartSession'), 'aws-ssm-session'),
    'ali_eci': ({'ansible_connection': 'cloudexec.core.ali_eci', 'ansible_ali_eci_container_group_id': 'eci-bp1demo00000000001'},
                ('ali-eci', 'ExecContainerCommand'), 'ali-eci-exec'),
    'ali_assist': ({'ansible_connection': 'cloudexec.core.ali_assist', 'ansible_ali_assist_instance_id': 'i-bp1demo000000000001'},
                   ('ali-ecs', 'RunCommand'), None),
}


def inventory(connection: str, work_dir: str) -> str:
    """One host, `target`, through the given connection."""
    host = {'work_dir': work_dir, 'ansible_python_interpreter': sys.executable}
    if connection == 'local':
        host['ansible_connection'] = 'local'
    else:
        host.update(TARGETS[connection][0], work_dir='bench')
    return json.dumps({'all': {'hosts': {'target': host}}})


def run_play(emu, tmp: Path, connection: str, tasks: int, pipelining: bool, warm: bool = False) -> float:
    """Wall time of one ansible-playbook run."""
    (tmp / 'play.yml').write_text(playbook(tasks))
    work_dir = tmp / 'local-work'
    work_dir.mkdir(exist_ok=True)
    (tmp / 'inv.json').write_text(inventory(connection, str(work_dir)))
    env = dict(os.environ, **emu.env, ANSIBLE_PIPELINING='1' if pipelining else '0', ANSIBLE_HOST_KEY_CHECKING='0',
               ANSIBLE_COLLECTIONS_PATH=os.environ.get('ANSIBLE_COLLECTIONS_PATH', str(ROOT / '.cache' / 'collections')),
               CLOUDEXEC_CONTROL_DIR=str(tmp / 'cp'), CLOUDEXEC_WARM_PYTHON='1' if warm else '0')
    env.setdefault('ANSIBLE_LOCALHOST_WARNING', '0')
    ansible_playbook = str(Path(sys.executable).with_name('ansible-playbook'))
    start = time.monotonic()
    proc = subprocess.run([ansible_playbook, '-i', str(tmp / 'inv.json'), str(tmp / 'play.yml')], env=env, cwd=tmp,
                          capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f'{connection} play failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    # End the broker so the next run starts cold and its session is counted.
    subprocess.run([str(Path(sys.executable).with_name('ansible')), '-i', str(tmp / 'inv.json'), 'target', '-m', 'meta',
                    '-a', 'reset_connection'], env=env, cwd=tmp, capture_output=True, check=False)
    return elapsed


def scenario_play(tasks: int, latency_ms: int, pipelining: bool, connection: str = 'aws_ecs', warm: bool = False) -> list[dict]:
    """A play of N tasks through a connection vs -c local, with API calls and websocket frames per task (warm: with
    the connection's warm_python option)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmpname, start_emulator() as emu:
        tmp = Path(tmpname)
        local = run_play(emu, tmp, 'local', tasks, pipelining)
        if latency_ms:
            emu.admin('POST', 'faults', {'service': 'ws', 'message_latency_ms': latency_ms})
        emu.admin('POST', 'calls/reset')
        remote = run_play(emu, tmp, connection, tasks, pipelining, warm)
        calls = emu.admin('GET', 'calls')
        (service, opener), ws_name = TARGETS[connection][1], TARGETS[connection][2]
        ws = calls.get('ws', {}).get(ws_name, {}) if ws_name else {}
        api_calls = sum(sum(actions.values()) for actions in calls['calls'].values())
        rows.append({
            'scenario': f'{tasks}-task play, {connection}{" warm_python" if warm else ""} vs local, '
                        f'pipelining {"on" if pipelining else "off"}, {latency_ms} ms/msg latency',
            'local s': f'{local:.1f}', 'remote s': f'{remote:.1f}', 'ratio': f'{remote / local:.2f}x',
            f'{opener} per play': calls['calls'].get(service, {}).get(opener, 0),
            'API calls/task': f'{api_calls / tasks:.1f}',
            # Round trips the play waited for, per task: on a session, the client's input after the agent's output
            # (the emulated agent counts these "turns"); on Cloud Assistant, each call is one (RunCommand, each poll).
            'round trips/task': f'{ws.get("turns", 0) / tasks:.1f}' if ws_name else f'{api_calls / tasks:.1f}',
            'ws frames/task': f'{(ws.get("frames_in", 0) + ws.get("frames_out", 0)) / tasks:.0f}' if ws_name else '-',
        })
    return rows


def scenario_transfer(size_mb: int) -> list[dict]:
    """put_file then fetch_file of a random file through aws_ecs, MB/s each way."""
    with tempfile.TemporaryDirectory() as tmpname, start_emulator() as emu:
        tmp = Path(tmpname)
        src = tmp / 'big.bin'
        src.write_bytes(os.urandom(size_mb * 1024 * 1024))
        (tmp / 'inv.json').write_text(inventory('aws_ecs', 'bench'))
        env = dict(os.environ, **emu.env, CLOUDEXEC_CONTROL_DIR=str(tmp / 'cp'),
                   ANSIBLE_COLLECTIONS_PATH=os.environ.get('ANSIBLE_COLLECTIONS_PATH', str(ROOT / '.cache' / 'collections')))
        ansible = str(Path(sys.executable).with_name('ansible'))
        base = [ansible, '-i', str(tmp / 'inv.json'), 'target']
        subprocess.run(base + ['-m', 'raw', '-a', 'true'], env=env, cwd=tmp, capture_output=True, check=True)  # warm session
        timings = {}
        for name, args in (('put', ['-m', 'copy', '-a', f'src={src} dest=big.bin']),
                           ('fetch', ['-m', 'fetch', '-a', f'src=big.bin dest={tmp}/back.bin flat=true'])):
            emu.admin('POST', 'calls/reset')
            start = time.monotonic()
            proc = subprocess.run(base + args, env=env, cwd=tmp, capture_output=True, text=True, check=False)
            timings[name] = time.monotonic() - start
            if proc.returncode != 0:
                raise SystemExit(f'{name} failed: {proc.stdout[-2000:]}')
            timings[name + '_ws'] = emu.admin('GET', 'calls').get('ws', {}).get('aws-ecs-exec', {})
        same = (tmp / 'back.bin').read_bytes() == src.read_bytes()
        subprocess.run(base + ['-m', 'meta', '-a', 'reset_connection'], env=env, cwd=tmp, capture_output=True, check=False)
    return [{'scenario': f'{size_mb} MB file through aws_ecs (copy, then fetch){"" if same else " MISMATCH"}',
             'put MB/s': f'{size_mb / timings["put"]:.2f}', 'fetch MB/s': f'{size_mb / timings["fetch"]:.2f}',
             'put resends': timings['put_ws'].get('resends', 0), 'put dup in': timings['put_ws'].get('duplicates_in', 0)}]


def scenario_poll(counts: tuple[int, ...] = (1, 100, 1000)) -> list[dict]:
    """ali_ecs_command across N instances running `sleep 3`: API calls per poll round must grow with pages, not instances."""
    import yaml  # pylint: disable=import-outside-toplevel
    from cloudexec_emulator.world import DEFAULT_WORLD  # pylint: disable=import-outside-toplevel

    rows = []
    for count in counts:
        world = yaml.safe_load(DEFAULT_WORLD.read_text())
        world['alicloud']['instances'] = [{'count': count, 'id_pattern': 'i-bench{index:05d}', 'name_pattern': 'bench-{index:05d}'}]
        with tempfile.TemporaryDirectory() as tmpname:
            tmp = Path(tmpname)
            (tmp / 'world.yml').write_text(yaml.safe_dump(world))
            ids = [f'i-bench{index:05d}' for index in range(1, count + 1)]  # generator indexes start at 1
            (tmp / 'play.yml').write_text(yaml.safe_dump([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [
                {'cloudexec.core.ali_ecs_command': {'instance_ids': ids, 'content': 'sleep 3; echo done', 'timeout': 120,
                                                    'wait_timeout': 600}, 'register': 'run'},
                {'ansible.builtin.debug': {'var': 'run.api_calls'}}]}]))
            with start_emulator(world=tmp / 'world.yml') as emu:
                env = dict(os.environ, **emu.env,
                           ANSIBLE_COLLECTIONS_PATH=os.environ.get('ANSIBLE_COLLECTIONS_PATH', str(ROOT / '.cache' / 'collections')),
                           ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
                start = time.monotonic()
                proc = subprocess.run([str(Path(sys.executable).with_name('ansible-playbook')), str(tmp / 'play.yml'),
                                       '-e', f'ansible_python_interpreter={sys.executable}'],
                                      env=env, cwd=tmp, capture_output=True, text=True, check=False)
                elapsed = time.monotonic() - start
                if proc.returncode != 0:
                    raise SystemExit(f'poll scenario failed for {count}: {proc.stdout[-3000:]}')
                calls = emu.admin('GET', 'calls')['calls'].get('ali-ecs', {})
        rounds = calls.get('DescribeInvocations', 0)
        batches = (count + 99) // 100
        rows.append({'scenario': f'ali_ecs_command on {count} instances (sleep 3)', 'seconds': f'{elapsed:.1f}',
                     'RunCommand': calls.get('RunCommand', 0), 'DescribeInvocations': rounds,
                     'poll rounds': f'{rounds / batches:.0f}', 'calls per round': batches,
                     'DescribeInvocationResults pages': calls.get('DescribeInvocationResults', 0)})
    return rows


def scenario_warm(tasks: int) -> list[dict]:
    """The play with warm_python on: the session connections at 0, 20 and 50 ms (aws_ssm at 0), and ali_assist."""
    rows = []
    for connection, latencies in (('aws_ecs', (0, 20, 50)), ('ali_eci', (0, 20, 50)), ('aws_ssm', (0,))):
        for latency_ms in latencies:
            rows += scenario_play(tasks, latency_ms, True, connection, warm=True)
    return rows + scenario_play(min(tasks, 20), 0, True, 'ali_assist', warm=True)


SCENARIOS = {
    'play': lambda a: scenario_play(a.tasks, 0, False) + scenario_play(a.tasks, 0, True),
    'latency': lambda a: [row for ms in (20, 50) for connection in ('aws_ecs', 'ali_eci')
                          for row in scenario_play(a.tasks, ms, True, connection)],
    'transfer': lambda a: scenario_transfer(a.size_mb),
    'eci': lambda a: scenario_play(a.tasks, 0, True, 'ali_eci'),
    'ssm': lambda a: [row for ms in (0, 20) for pipelining in (False, True) for row in scenario_play(a.tasks, ms, pipelining, 'aws_ssm')],
    'assist': lambda a: scenario_play(min(a.tasks, 20), 0, True, 'ali_assist'),
    'warm': lambda a: scenario_warm(a.tasks),
    'poll': lambda a: scenario_poll(),
}


def print_table(rows: list[dict]) -> None:
    """Each row's own columns, as a Markdown table per distinct column set."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    for columns, members in groups.items():
        widths = [max(len(str(c)), *(len(str(m[c])) for m in members)) for c in columns]
        print('| ' + ' | '.join(str(c).ljust(w) for c, w in zip(columns, widths)) + ' |')
        print('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
        for member in members:
            print('| ' + ' | '.join(str(member[c]).ljust(w) for c, w in zip(columns, widths)) + ' |')
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('scenarios', nargs='*', default=list(SCENARIOS), choices=[*SCENARIOS, []], metavar='SCENARIO',
                        help=f'which to run (default all): {", ".join(SCENARIOS)}')
    parser.add_argument('--tasks', type=int, default=50)
    parser.add_argument('--size-mb', type=int, default=32)
    args = parser.parse_args()
    if not shutil.which('ansible-playbook', path=str(Path(sys.executable).parent)):
        raise SystemExit('run with the Python of a venv that has ansible-core (make bench does)')
    rows = []
    for name in args.scenarios:
        rows += SCENARIOS[name](args)
    print_table(rows)


if __name__ == '__main__':
    main()
