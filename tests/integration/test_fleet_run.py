# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cloudexec.core.fleet_run role over the emulator's ECS task containers, and its molecule scenario.

The role runs through each host's own connection; here the hosts come from the demo inventory
(playbooks/inventory: the aws_ecs inventory plugin wired to the aws_ecs connection) against the default world with
ECS Exec's start-up delays cut. One target's script fails (it exits 3 when TARGET is FAIL_ON); one more host, whose
task has exec disabled, is unreachable. Every run gets its own CLOUDEXEC_CONTROL_DIR; its brokers are stopped after.

The molecule scenario (roles/fleet_run/molecule/default) runs with ``molecule test`` when molecule is installed (it is
in tests/requirements.txt), else as its converge and verify playbooks with ansible-playbook and the same inventory.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator

from helpers import AnsibleRun, ansible_playbook, molecule_test

REPO = Path(__file__).resolve().parents[2]
DEMO_INVENTORY = REPO / 'playbooks' / 'inventory'
DEFAULT_WORLD = REPO / 'tests' / 'emulator' / 'cloudexec_emulator' / 'worlds' / 'default.yml'
ROLE_DIR = REPO / 'roles' / 'fleet_run'
# The demo inventory's hosts, in the play's order.
TARGETS = ['demo-web-web', 'demo-api-app', 'demo-api-sidecar', 'staging-web-web']
UNREACHABLE = 'demo-batch-worker'   # its task was started without ECS Exec
SCRIPT = '''echo "start $TARGET"
if [ "$TARGET" = "$FAIL_ON" ]; then echo "boom on $TARGET" >&2; exit 3; fi
i=1
while [ $i -le 15 ]; do echo "line $i"; i=$((i + 1)); done
'''
PLAYBOOK = '''
- name: fleet_run under test
  hosts: aws_ecs
  gather_facts: false
  serial: "{{ play_serial | default(0) }}"
  roles:
    - role: cloudexec.core.fleet_run
  post_tasks:
    - name: after the role
      ansible.builtin.debug:
        msg: "{{ fleet_run_result.status }}"
    - name: close the sessions
      ansible.builtin.meta: reset_connection
'''


@pytest.fixture(scope='module')
def fast(tmp_path_factory):
    """The default world (the demo inventory's tasks) with ECS Exec's start-up delays cut."""
    directory = tmp_path_factory.mktemp('fleet-run')
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['aws']['exec'] = {'agent_start_ms': 10, 'output_delay_ms': 20, 'session_limit': 4}
    path = directory / 'world.yml'
    path.write_text(yaml.safe_dump(world))
    with start_emulator(world=path, state_dir=directory / 'state') as info:
        yield info


# ---- helpers -------------------------------------------------------------------------------------


def run_role(emu, tmp_path: Path, control_dir: Path, *, with_unreachable: bool = False, **role_vars: Any) -> AnsibleRun:
    """The test playbook over the demo inventory (plus the unreachable host when asked), role options as extra vars."""
    playbook = tmp_path / 'fleet_run_test.yml'
    playbook.write_text(PLAYBOOK)
    args = ['-i', str(DEMO_INVENTORY)]
    if with_unreachable:
        extra = tmp_path / 'unreachable.yml'
        extra.write_text(yaml.safe_dump({'aws_ecs': {'hosts': {UNREACHABLE: {
            'ansible_connection': 'cloudexec.core.aws_ecs', 'ansible_aws_ecs_cluster': 'demo',
            'ansible_aws_ecs_task': '3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f', 'ansible_aws_ecs_container': 'worker'}}}}))
        args += ['-i', str(extra)]
    extra_vars = {
        'fleet_run_script_content': SCRIPT,
        'fleet_run_environment': {'TARGET': '{{ inventory_hostname }}', 'FAIL_ON': 'demo-api-sidecar'},
        'fleet_run_report_dir': str(tmp_path / 'report'),
        **role_vars,
    }
    return ansible_playbook(emu, playbook, *args, extra_vars=extra_vars,
                            extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir)}, timeout=150)


def load_report(tmp_path: Path, name: str = 'fleet_run') -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The JSON report and its targets by host."""
    path = tmp_path / 'report' / f'{name}.json'
    assert path.is_file(), f'no JSON report at {path}'
    report = json.loads(path.read_text())
    return report, {t['host']: t for t in report['targets']}


ROLE = 'cloudexec.core.fleet_run : '


def hosts_of(run: AnsibleRun, task: str, status: str = 'ok') -> set[str]:
    """The hosts where the task (a play task, or the role's when it starts with ROLE) ended with this status."""
    return {r['host'] for r in run.results if r['task'] == task and r['status'] == status}


# ---- tests ---------------------------------------------------------------------------------------


def test_report_and_threshold_exceeded(fast, tmp_path, control_dir):
    """One failure and one unreachable of five: every report file, per-target entries, the play fails after writing."""
    run = run_role(fast, tmp_path, control_dir, with_unreachable=True, fleet_run_output_lines=5,
                   fleet_run_report_formats=['json', 'markdown', 'html'])
    assert run.rc == 2, run.output
    report, targets = load_report(tmp_path)
    assert sorted(targets) == sorted(TARGETS + [UNREACHABLE])
    for host in TARGETS:
        entry = targets[host]
        if host == 'demo-api-sidecar':
            assert (entry['status'], entry['rc']) == ('failed', 3), entry
            assert entry['stderr_head'] == ['boom on demo-api-sidecar'], entry
            assert entry['stdout_head'] == ['start demo-api-sidecar'], entry
        else:
            assert (entry['status'], entry['rc']) == ('ok', 0), entry
            assert entry['stdout_head'] == [f'start {host}', 'line 1', 'line 2', 'line 3', 'line 4'], entry
            assert entry['stdout_lines'] == 16, entry
        assert entry['connection'] == 'cloudexec.core.aws_ecs'
        assert entry['duration_measured_on'] == 'target' and 0 <= entry['duration'] < 30, entry
        assert entry['batch'] == 1
    lost = targets[UNREACHABLE]
    assert lost['status'] == 'unreachable' and lost['rc'] is None and lost['msg'], lost
    assert report['summary'] == {'targets': 5, 'ok': 3, 'failed': 1, 'unreachable': 1, 'not_run': 0, 'ran': 5,
                                 'fail_percentage': 40.0, 'threshold_exceeded': True, 'stopped_early': False}
    assert report['method'] == 'shell' and report['max_fail_percentage'] == 0.0

    markdown = (tmp_path / 'report' / 'fleet_run.md').read_text()
    assert '**Failure threshold exceeded:** 40.0%' in markdown, markdown
    assert '## Failures' in markdown
    assert '### demo-api-sidecar: failed (rc 3)' in markdown
    assert 'boom on demo-api-sidecar' in markdown
    assert f'### {UNREACHABLE}: unreachable' in markdown
    assert '| demo-web-web | ok | 0 |' in markdown
    html = (tmp_path / 'report' / 'fleet_run.html').read_text()
    assert '<td class="failed">failed</td>' in html and 'boom on demo-api-sidecar' in html

    # The threshold failed the whole play after the report: nothing after the role ran anywhere.
    assert run.record(ROLE + 'Fail the play when too many targets failed')['status'] == 'failed'
    assert 'more than' in run.result(ROLE + 'Fail the play when too many targets failed')['msg']
    assert not hosts_of(run, 'after the role')


def test_threshold_not_exceeded_keeps_the_play(fast, tmp_path, control_dir):
    """serial: 2 on the play; 1 failure of 4 is 25%, not more than 25: the play goes on, the failed target included.

    The report written after the last serial batch covers every target of the play.
    """
    run = run_role(fast, tmp_path, control_dir, play_serial=2, fleet_run_max_fail_percentage=25,
                   fleet_run_fail_failed_targets=False)
    assert run.rc == 0, run.output
    report, targets = load_report(tmp_path)
    assert sorted(targets) == sorted(TARGETS)
    assert report['summary']['fail_percentage'] == 25.0 and report['summary']['threshold_exceeded'] is False
    assert [targets[h]['status'] for h in TARGETS] == ['ok', 'ok', 'failed', 'ok']
    assert hosts_of(run, 'after the role') == set(TARGETS)
    assert run.result('after the role', 'demo-api-sidecar')['msg'] == 'failed'
    assert 'Within the failure threshold: 25.0%' in (tmp_path / 'report' / 'fleet_run.md').read_text()
    assert not (tmp_path / 'report' / 'fleet_run.html').exists()


def test_threshold_not_exceeded_fails_only_the_failed_target(fast, tmp_path, control_dir):
    """With the defaults, below the threshold the failed target leaves the play and the others go on."""
    run = run_role(fast, tmp_path, control_dir, fleet_run_max_fail_percentage=50)
    assert run.rc == 2, run.output
    assert run.record(ROLE + 'Fail the play when too many targets failed')['status'] == 'skipped'
    assert hosts_of(run, ROLE + 'Fail the targets whose run failed', 'failed') == {'demo-api-sidecar'}
    assert hosts_of(run, 'after the role') == set(TARGETS) - {'demo-api-sidecar'}


def test_batches_stop_at_the_threshold(fast, tmp_path, control_dir):
    """One target per batch, the script method: the second batch fails, the last two never run."""
    run = run_role(fast, tmp_path, control_dir, fleet_run_batch_size=1, fleet_run_method='script',
                   fleet_run_report_name='batches',
                   fleet_run_environment={'TARGET': '{{ inventory_hostname }}', 'FAIL_ON': 'demo-api-app'})
    assert run.rc == 2, run.output
    report, targets = load_report(tmp_path, 'batches')
    assert [targets[h]['batch'] for h in TARGETS] == [1, 2, 3, 4]
    assert [targets[h]['status'] for h in TARGETS] == ['ok', 'failed', 'not_run', 'not_run']
    assert targets['demo-api-app']['rc'] == 3 and targets['demo-api-app']['stderr_head'] == ['boom on demo-api-app']
    assert targets['demo-web-web']['duration_measured_on'] == 'controller'
    assert targets['demo-web-web']['started'] <= targets['demo-api-app']['started']
    assert report['summary']['stopped_early'] is True and report['summary']['ran'] == 2
    assert report['method'] == 'script' and report['batch_count'] == 4
    assert 'the remaining batches were not run' in (tmp_path / 'report' / 'batches.md').read_text()
    # The script ran on the first two targets only.
    ran = [r['host'] for r in run.results if r['task'] == ROLE + 'Run the script through the target\'s connection (script)'
           and r['status'] != 'skipped']
    assert sorted(ran) == ['demo-api-app', 'demo-web-web']


def test_molecule_scenario(fast, tmp_path, control_dir):
    """roles/fleet_run/molecule/default: converge and verify on two ECS task containers of the emulator."""
    run = molecule_test(fast, ROLE_DIR, tmp_path, {'CLOUDEXEC_CONTROL_DIR': str(control_dir)}, timeout=170)
    if run.tool == 'ansible-playbook':
        report = json.loads((run.ephemeral_dir / 'fleet_run_report' / 'fleet_run.json').read_text())
        assert report['summary']['ok'] == 2


def test_argument_specs_match_defaults():
    """Every option in meta/argument_specs.yml has its default in defaults/main.yml and the other way round."""
    defaults = yaml.safe_load((ROLE_DIR / 'defaults' / 'main.yml').read_text())
    options = yaml.safe_load((ROLE_DIR / 'meta' / 'argument_specs.yml').read_text())['argument_specs']['main']['options']
    required = {name for name, spec in options.items() if spec.get('required')}
    assert required == {'fleet_run_report_dir'}
    assert set(defaults) == set(options) - required
    for name, spec in options.items():
        assert 'description' in spec and 'type' in spec, name
        if name not in required:
            assert spec['default'] == defaults[name], name
