# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a task costs once its module is on the target, pinned in counts that do not depend on load (issue 13).

A play warms each module (its first task sends the module's code, which the target keeps), resets the emulator's
counters from the controller, then runs TASKS more tasks. The counts of those tasks are pinned:
- session transports (aws_ecs, aws_ssm, ali_eci): no new session, one round trip per task (a "turn": the client's input after
  the agent's output, counted by the emulated agent), at most 40 websocket frames per task (ECS Exec counts acks);
- ali_assist: one RunCommand per task, its argument piece inside it.
A change that adds a round trip, a frame-heavy resend of module code or a RunCommand fails here. The wall time is
measured by `make bench`, never here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import ansible_playbook

TASKS = 6
SECRET = 'Task-Cost-Secret-7f3a'
TARGETS: dict[str, dict[str, Any]] = {
    'aws_ecs': {'ansible_connection': 'cloudexec.core.aws_ecs', 'ansible_aws_ecs_cluster': 'demo',
                'ansible_aws_ecs_task': '1f0e1c2d3b4a59687766554433221100', 'ansible_aws_ecs_container': 'web'},
    'aws_ssm': {'ansible_connection': 'cloudexec.core.aws_ssm', 'ansible_aws_ssm_instance_id': 'i-0a1b2c3d4e5f60701',
                'ansible_aws_ssm_region': 'us-east-1'},
    'ali_eci': {'ansible_connection': 'cloudexec.core.ali_eci', 'ansible_ali_eci_container_group_id': 'eci-bp1demo00000000001'},
    'ali_assist': {'ansible_connection': 'cloudexec.core.ali_assist', 'ansible_ali_assist_instance_id': 'i-bp1demo000000000001'},
}


def _play(tmp_path: Path, connection: str, admin_url: str) -> Path:
    tasks: list[dict[str, Any]] = [
        # Warm-up: the first task of each module sends its code; the same secret argument twice (a loop that repeats
        # its arguments) must still never leave it on the target.
        {'ansible.builtin.command': f'echo {SECRET}', 'no_log': True},
        {'ansible.builtin.command': f'echo {SECRET}', 'no_log': True},
        {'ansible.builtin.copy': {'content': 'warm\n', 'dest': './cost-warm.txt'}},
        {'ansible.builtin.uri': {'url': f'{admin_url}/calls/reset', 'method': 'POST'}, 'delegate_to': 'localhost',
         'vars': {'ansible_connection': 'local'}},
    ]
    tasks += [{'ansible.builtin.command': f'echo task {number}', 'register': f'task{number}'} for number in range(TASKS)]
    # A copy: Ansible's own execs (mkdir of its temporary directory, stat, the file, chmod, copy, rm); its `echo ~`
    # is answered by the session broker from the warm-up copy, without a round trip.
    tasks.append({'ansible.builtin.copy': {'content': 'counted\n', 'dest': './cost-counted.txt'}})
    tasks.append({'ansible.builtin.assert': {'that': [f'task{number}.stdout == "task {number}"' for number in range(TASKS)]}})
    # What the target keeps: module code only. (After the counted tasks: a raw task is one more exec.)
    tasks.append({'ansible.builtin.raw': 'cat ~/.cache/cloudexec-pieces/* 2>/dev/null | grep -c ' + SECRET + ' || true',
                  'register': 'kept'})
    tasks.append({'ansible.builtin.assert': {'that': ['kept.stdout | trim == "0"']}})
    play = [{'hosts': 'target', 'gather_facts': False, 'tasks': tasks}]
    path = tmp_path / 'play.yml'
    path.write_text(json.dumps(play))
    inventory = tmp_path / 'inventory.json'
    inventory.write_text(json.dumps({'all': {'hosts': {'target': TARGETS[connection]}}}))
    return path


@pytest.mark.parametrize('connection', sorted(TARGETS))
def test_a_task_whose_module_the_target_keeps_costs_one_round_trip(emu, control_dir, tmp_path, connection):
    admin_url = f'{emu.endpoint}/_emulator'
    play = _play(tmp_path, connection, admin_url)
    run = ansible_playbook(emu, play, '-i', str(tmp_path / 'inventory.json'),
                           extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir), 'ANSIBLE_PIPELINING': '1'})
    assert run.rc == 0, run.output
    counts = emu.admin('GET', 'calls')
    calls, ws = counts['calls'], counts.get('ws', {})
    # The counted part, after the reset: the TASKS command tasks and the raw task (one exec each), and the copy: six
    # execs of Ansible's own (mkdir, stat, the file, chmod, copy, rm) - and its `echo ~`, which the host's broker answers
    # from the warm-up copy (a home does not move), whatever the connection.
    execs = TASKS + 1 + 6
    if connection in ('aws_ecs', 'aws_ssm'):
        channel = ws['aws-ecs-exec' if connection == 'aws_ecs' else 'aws-ssm-session']
        opened = calls.get('aws-ecs', {}).get('ExecuteCommand', 0) + calls.get('aws-ssm', {}).get('StartSession', 0)
        assert opened == 0, calls   # the play's session goes on
        assert channel['turns'] == execs, channel
        assert (channel['frames_in'] + channel['frames_out']) / execs <= 40, channel
    elif connection == 'ali_eci':
        channel = ws['ali-eci-exec']
        assert calls.get('ali-eci', {}).get('ExecContainerCommand', 0) == 0, calls
        assert channel['turns'] == execs, channel
        assert (channel['frames_in'] + channel['frames_out']) / execs <= 40, channel
    else:
        assert calls['ali-ecs']['RunCommand'] == execs, calls
    assert SECRET not in run.output
