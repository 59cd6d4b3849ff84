# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ali_ecs_command and ali_ecs_invocation_info through real ansible/ansible-playbook against the emulator."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from cloudexec_emulator.testing import start_emulator

from helpers import ansible_adhoc, ansible_playbook, refused_endpoint, silent_endpoint

WEB = 'i-bp1demo000000000001'
DB = 'i-bp1demo000000000002'
OFFLINE = 'i-bp1demo000000000003'
STOPPED = 'i-bp1demo000000000004'
WINDOWS = 'i-bp1demo000000000005'
MODULE = 'cloudexec.core.ali_ecs_command'
INFO = 'cloudexec.core.ali_ecs_invocation_info'

FLEET_WORLD = '''
aws:
  credentials:
    - {access_key: AKIAFLEET00000000001, secret_key: fleet-secret-for-tests-only-0001}
alicloud:
  region: cn-hangzhou
  credentials:
    - {access_key_id: LTAIFLEET00000000001, access_key_secret: FleetSecretForTestsOnly000001}
  instances:
    - {count: 150, id_pattern: "i-fleet{index:04d}", name_pattern: "fleet-{index:03d}", tags: {fleet: big}}
'''


@pytest.fixture(scope='module')
def fleet(tmp_path_factory):
    """An emulator whose world is 150 Linux instances tagged fleet=big."""
    world = Path(tmp_path_factory.mktemp('fleet')) / 'fleet.yml'
    world.write_text(FLEET_WORLD)
    with start_emulator(world=world) as info:
        yield info


def reset(emu) -> None:
    emu.admin('DELETE', 'faults')
    emu.admin('POST', 'calls/reset')


def calls(emu) -> dict:
    return emu.admin('GET', 'calls')['calls'].get('ali-ecs', {})


def run_module(emu, args: dict, *extra: str, module: str = MODULE, **kwargs):
    run = ansible_adhoc(emu, module, args, *extra, **kwargs)
    assert run.results, run.output
    return run, run.results[0]['result']


def test_fleet_of_150_in_two_batches_with_failures(fleet):
    reset(fleet)
    run = ansible_playbook(fleet, 'ali_ecs_fleet.yml')
    assert run.rc == 0, run.output
    result = run.result('Run on every instance tagged fleet=big; those numbered *7 exit 3')
    failed = [f'i-fleet{n:04d}' for n in range(7, 151, 10)]
    assert result['failed_instances'] == failed
    # The message names the failed instances and why.
    assert result['msg'].startswith('The command failed on 15 of 150 instances: i-fleet0007 (Failed, exit code 3)')
    assert all(instance in result['msg'] for instance in failed)
    assert [len(b) for b in (result['results'][:100], result['results'][100:])] == [100, 50]
    first = result['results'][0]
    assert first['instance_id'] == 'i-fleet0001' and first['output'] == 'ok on i-fleet0001\n' and first['exit_code'] == 0
    bad = result['results'][6]
    assert (bad['instance_id'], bad['status'], bad['exit_code'], bad['error_code']) == ('i-fleet0007', 'Failed', 3, 'ExitCodeNonzero')
    seen = calls(fleet)
    # Two tasks of two batches each; results read 50 a page (100 + 50 per task: 3 pages) plus the info task's 2 pages.
    assert seen['RunCommand'] == 4
    assert seen['DescribeInvocationResults'] == 3 + 3 + 2
    assert result['api_calls']['calls']['DescribeInstances'] == 2 + 2  # by tags (150 in 2 pages), then 2 preflight chunks
    assert max(result['api_calls']['calls_per_round']) == 2


def test_101_instance_ids_are_batched(fleet):
    reset(fleet)
    ids = [f'i-fleet{n:04d}' for n in range(1, 102)]
    run, result = run_module(fleet, {'instance_ids': ids, 'content': 'true'})
    assert run.rc == 0, run.output
    assert len(result['invoke_ids']) == 2 and result['counts'] == {'Success': 101}
    assert calls(fleet)['RunCommand'] == 2


@pytest.mark.parametrize('count', [1, 100])
def test_api_calls_per_poll_round_grow_with_pages_not_instances(fleet, count, record_property):
    reset(fleet)
    ids = [f'i-fleet{n:04d}' for n in range(1, count + 1)]
    run, result = run_module(fleet, {'instance_ids': ids, 'content': 'sleep 3'})
    assert run.rc == 0, run.output
    seen = calls(fleet)
    rounds = result['api_calls']['poll_rounds']
    assert rounds >= 3  # the script takes 3 s: several rounds happened
    # One DescribeInvocations per round for one batch, whatever the number of instances in it.
    assert seen['DescribeInvocations'] == rounds and set(result['api_calls']['calls_per_round']) == {1}
    # Then the results once, 50 a page.
    assert seen['DescribeInvocationResults'] == (count + 49) // 50
    record_property('benchmark', json.dumps({'instances': count, 'poll_rounds': rounds, 'calls': seen}))
    print(f'BENCHMARK instances={count} poll_rounds={rounds} per_round=1 calls={seen}')


def test_check_mode_validates_and_runs_nothing(emu):
    run, result = run_module(emu, {'instance_ids': [WEB, DB], 'content': 'touch /should-not-exist'}, '--check')
    assert run.rc == 0, run.output
    assert result['changed'] is True and 'nothing was run' in result['msg']
    assert [t['agent_online'] for t in result['targets']] == [True, True]
    seen = calls(emu)
    assert 'RunCommand' not in seen and seen['DescribeCloudAssistantStatus'] == 1
    run, result = run_module(emu, {'instance_ids': [WEB, STOPPED], 'content': 'true'}, '--check')
    assert run.rc != 0 and f'{STOPPED}: instance is Stopped' in result['msg']


def test_agent_offline_is_a_clear_error_before_anything_runs(emu):
    run, result = run_module(emu, {'instance_ids': [WEB, OFFLINE], 'content': 'echo hi'})
    assert run.rc != 0
    assert result['msg'].startswith('TargetsUnavailable: 1 of 2 target instances cannot run Cloud Assistant commands, so nothing was run')
    assert f'{OFFLINE}: Cloud Assistant agent is offline' in result['msg']
    assert result['error']['remedy'] and 'RunCommand' not in calls(emu)


def test_throttling_mid_poll_recovers(emu):
    emu.admin('POST', 'faults', [{'service': 'ali-ecs', 'action': 'DescribeInvocations', 'throttle': 2},
                                 {'service': 'ali-ecs', 'action': 'DescribeInvocationResults', 'throttle': 2}])
    run, result = run_module(emu, {'instance_ids': [WEB, DB], 'content': 'sleep 1; echo fine'})
    assert run.rc == 0, run.output
    assert [r['output'] for r in result['results']] == ['fine\n', 'fine\n']
    errors = emu.admin('GET', 'calls')['errors']['ali-ecs']
    assert errors == {'DescribeInvocations': {'Throttling.User': 2}, 'DescribeInvocationResults': {'Throttling.User': 2}}


def test_deadline_stops_the_invocation(emu):
    started = time.monotonic()
    run, result = run_module(emu, {'instance_ids': [WEB], 'content': 'echo started; sleep 60', 'timeout': 300, 'wait_timeout': 3})
    assert run.rc != 0 and time.monotonic() - started < 30
    invoke_id = result['invoke_id']
    # Truthful: StopInvocation kills at most the script's main process (the emulated agent does, as the real one), so
    # the sleep it started may still run; the message never says the command was stopped.
    assert result['msg'].startswith('The command did not finish within wait_timeout (3 s); it had not finished on 1 instance(s): '
                                    f'{WEB}; StopInvocation was sent for {invoke_id}: runs that had not started are cancelled, '
                                    'but a run that had started may still be running'), result['msg']
    assert 'stopped with' not in result['msg']
    assert calls(emu)['StopInvocation'] == 1
    assert result['results'][0]['status'] in ('Stopping', 'Terminated')
    assert result['results'][0]['exit_code'] is None      # not 0: the script had not ended
    run, info = run_module(emu, {'invoke_id': invoke_id}, module=INFO)
    deadline = time.monotonic() + 10
    while info['invocations'][0]['invocation_status'] != 'Stopped':
        assert time.monotonic() < deadline, info
        run, info = run_module(emu, {'invoke_id': invoke_id}, module=INFO)
    assert info['invocations'][0]['results'][0]['status'] == 'Terminated'


def test_output_over_24k_reports_dropped(emu):
    run, result = run_module(emu, {'instance_ids': [WEB], 'content': 'head -c 30000 /dev/zero | tr "\\0" x; echo; echo END'})
    assert run.rc == 0, run.output
    only = result['results'][0]
    assert only['dropped'] == 30000 + 1 + 4 - 24 * 1024 and only['output'].endswith('x\nEND\n')
    assert only['output_cut'] == {'kept_bytes': 24 * 1024, 'dropped_bytes': only['dropped'], 'missing': 'middle',
                                  'kept': 'the start sent while the script ran (up to about 8 KB, none for runs under a second) '
                                          'and the end'}
    assert result['dropped_instances'] == [WEB]
    warning = ' '.join(run.output.split())
    assert 'Cloud Assistant dropped the middle of the output on 1 instance(s)' in warning and 'OssOutputDelivery' in warning


def test_output_cut_in_the_middle_keeps_the_start_and_the_end(emu):
    # The agent streams the first 2048 bytes after a one-second tick; the end is kept; the middle goes.
    script = 'head -c 3000 /dev/zero | tr "\\0" A; sleep 1.4; head -c 30000 /dev/zero | tr "\\0" B; echo END'
    run, result = run_module(emu, {'instance_ids': [WEB], 'content': script})
    assert run.rc == 0, run.output
    only = result['results'][0]
    assert only['output'].startswith('A' * 2048 + 'B') and only['output'].endswith('BEND\n') and len(only['output']) == 24576
    assert only['output_cut']['dropped_bytes'] == 33004 - 24576


def test_timeout_and_dry_run(emu):
    run, result = run_module(emu, {'instance_ids': [WEB], 'content': 'echo begin; sleep 30', 'timeout': 1})
    only = result['results'][0]
    assert run.rc != 0 and (only['status'], only['error_code'], only['output']) == ('Timeout', 'ExecutionTimeout', 'begin\n')
    assert only['exit_code'] is None        # the agent reports 1 of its own on a timeout
    run, result = run_module(emu, {'instance_ids': [WEB], 'content': 'touch dry-run-ran', 'repeat_mode': 'DryRun'})
    assert run.rc == 0 and result['counts'] == {'Success': 1}, run.output
    run, check = run_module(emu, {'instance_ids': [WEB], 'content': 'test -e dry-run-ran && echo ran || echo not'})
    assert check['results'][0]['output'] == 'not\n'


def test_scheduled_invocation_is_found_by_invocation_info(emu):
    run, started = run_module(emu, {'instance_ids': [WEB], 'content': 'echo tick', 'repeat_mode': 'Period', 'frequency': 'rate(10m)'})
    assert run.rc == 0, run.output
    run, info = run_module(emu, {'invoke_id': started['invoke_id']}, module=INFO)
    assert run.rc == 0 and info['invocations'][0]['repeat_mode'] == 'Period', info
    run, listed = run_module(emu, {'instance_id': WEB, 'include_output': False, 'max_invocations': 5}, module=INFO)
    assert started['invoke_id'] in [i['invoke_id'] for i in listed['invocations']]


def test_failure_names_instances_and_fail_on(emu):
    content = 'case "$HOME" in *0001) exit 0 ;; *) echo nope; exit 4 ;; esac'
    run, result = run_module(emu, {'instance_ids': [WEB, DB], 'content': content})
    assert run.rc != 0 and result['msg'] == f'The command failed on 1 of 2 instances: {DB} (Failed, exit code 4)'
    run, result = run_module(emu, {'instance_ids': [WEB, DB], 'content': content, 'fail_on': 'all'})
    assert run.rc == 0 and result['counts'] == {'Success': 1, 'Failed': 1}


def test_secret_parameters_never_logged(emu, tmp_path):
    secret = 'S3cr3t-Value-XYZ-4711'
    # From a vars file, as a vault would give it: Ansible itself echoes -e values given inline at -vvvv.
    secrets_file = tmp_path / 'secrets.json'
    secrets_file.write_text(json.dumps({'secret_token': secret}))
    run = ansible_playbook(emu, 'ali_ecs_secrets.yml', '-vvvv', '-e', f'@{secrets_file}')
    assert run.rc == 0, run.output
    result = run.result('Pass the secret as a custom parameter')
    assert result['results'][0]['output'] == 'got-it\n'
    assert secret not in run.stdout + run.stderr
    assert emu['alicloud']['secret_key'] not in run.stdout + run.stderr


def test_client_token_makes_a_retry_run_nothing_twice(emu):
    args = {'instance_ids': [WEB], 'content': 'echo run >> token-runs; wc -l < token-runs', 'client_token': f'retry-{time.time_ns()}'}
    first_run, first = run_module(emu, args)
    again_run, again = run_module(emu, args)
    assert first_run.rc == 0 and again_run.rc == 0, again_run.output
    assert again['invoke_id'] == first['invoke_id'] and again['results'][0]['output'] == first['results'][0]['output']
    changed = dict(args, content='echo different')
    run, result = run_module(emu, changed)
    assert run.rc != 0 and result['error']['code'] == 'IdempotentParameterMismatch' and result['error']['remedy']
    run_module(emu, {'instance_ids': [WEB], 'content': 'rm -f token-runs'})


def test_invocation_info_playbook(emu):
    run = ansible_playbook(emu, 'ali_ecs_invocation.yml')
    assert run.rc == 0, run.output


BAD_INPUT = [
    ({'content': 'x' * 20000}, 'content', 'above the limit of 24576'),
    ({'content': 'x' * 14000, 'keep_command': True}, 'content', 'above the limit of 18432'),
    ({'content': 'echo {{v}}', 'parameters': {'v': 'y' * 18500}}, 'parameters', 'with its parameters filled in'),
    ({'content': 'echo {{a}}', 'parameters': {'a': '1', 'b': '2'}}, 'parameters', 'b not defined'),
    ({'content': 'true', 'timeout': 0}, 'timeout', 'outside 1..86400'),
    ({'command_id': 'c-1', 'timeout': 5}, 'timeout', 'at least 10'),
    ({'content': 'true', 'repeat_mode': 'Period', 'frequency': 'rate(30s)', 'timeout': 10}, 'frequency', 'between 60 s and 7 days'),
    ({'content': 'true', 'repeat_mode': 'Period', 'frequency': '*/5 * * * * *', 'timeout': 2}, 'frequency', 'at least 10 s'),
    ({'content': 'true', 'container_id': 'app'}, 'container_id', '64 hexadecimal'),
    ({'content': 'true', 'container_name': 'app', 'working_dir': '/srv'}, 'working_dir', 'ignores it in a container'),
]


def test_bad_input_is_refused_before_any_call(emu, tmp_path):
    """Each limit of the service (issue9-alibaba.md B1-B5), refused before any call, naming the parameter and the limit."""
    play = tmp_path / 'bad.yml'

    def raw(args: dict) -> dict:
        # The {{name}} placeholders are the service's: a raw block keeps them from Ansible's templating.
        return {key: f'{{% raw %}}{value}{{% endraw %}}' if key == 'content' and '{{' in value else value for key, value in args.items()}

    tasks = [{'name': f'case {n}', MODULE: {'instance_ids': [WEB], **raw(args)}, 'ignore_errors': True}
             for n, (args, dummy, dummy2) in enumerate(BAD_INPUT)]
    play.write_text(yaml.safe_dump([{'name': 'bad input', 'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}], width=1000))
    run = ansible_playbook(emu, play)
    for n, (args, parameter, says) in enumerate(BAD_INPUT):
        record = run.record(f'case {n}')
        message = record['result']['msg']
        assert record['status'] == 'failed' and parameter in message and says in message, (args, message)
    assert calls(emu) == {}


def test_refused_endpoint_fails_in_seconds_with_url_and_cause(emu):
    endpoint = refused_endpoint()
    run, result = run_module(emu, {'instance_ids': [WEB], 'content': 'true'}, extra_env={'ALICLOUD_ECS_ENDPOINT': endpoint})
    assert run.rc != 0
    assert run.task_seconds(run.results[0]['task']) < 5, run.output
    assert result['error']['code'] == 'Connection.Refused'
    assert f'cannot connect to {endpoint}: Connection refused' in result['msg'], result['msg']
    assert 'ALICLOUD_ECS_ENDPOINT' in result['error']['remedy']


def test_silent_endpoint_fails_as_a_read_timeout_within_read_timeout(emu):
    with silent_endpoint() as endpoint:
        run, result = run_module(emu, {'instance_ids': [WEB], 'content': 'true', 'read_timeout': 3},
                                 extra_env={'ALICLOUD_ECS_ENDPOINT': endpoint})
    assert run.rc != 0
    assert 3 <= run.task_seconds(run.results[0]['task']) < 8, run.output
    assert result['error']['code'] == 'Connection.ReadTimeout'
    assert f'no answer from {endpoint} within the read timeout of 3 seconds (Read timed out)' in result['msg'], result['msg']
    assert 'raise read_timeout' in result['error']['remedy']


def test_windows_instance_gets_the_windows_remedy(emu):
    run, result = run_module(emu, {'instance_ids': [WEB, WINDOWS], 'content': 'uname -a'})
    assert run.rc != 0 and result['error']['code'] == 'TargetsUnavailable'
    assert f'{WINDOWS}: RunShellScript does not run on a windows instance' in result['msg']
    assert result['error']['remedy'].startswith(f'{WINDOWS} run Windows, where RunShellScript does not run: give them a '
                                                'PowerShell script with type RunPowerShellScript'), result['error']['remedy']
    assert 'Start the instances' not in result['error']['remedy'] and 'RunCommand' not in calls(emu)


def test_invocation_info_validates_status_and_says_not_found(emu):
    run, result = run_module(emu, {'status': 'Bogus'}, module=INFO)
    assert run.rc != 0 and 'status' in result['msg'] and 'Bogus' in result['msg'] and 'PartialFailed' in result['msg']
    assert calls(emu) == {}
    run, result = run_module(emu, {'invoke_id': 't-doesnotexist0000'}, module=INFO)
    assert run.rc != 0 and result['error']['code'] == 'InvalidInvokeId.NotFound'
    assert 'the invocation t-doesnotexist0000 was not found in region cn-hangzhou' in result['msg'] and result['error']['remedy']
    run, done = run_module(emu, {'instance_ids': [WEB], 'content': 'true'})
    assert run.rc == 0, run.output
    run, result = run_module(emu, {'invoke_id': done['invoke_id'], 'status': 'Running'}, module=INFO)
    assert run.rc == 0 and result['invocations'] == []     # it exists, and is not Running
    run, result = run_module(emu, {'invoke_id': done['invoke_id'], 'status': 'Finished'}, module=INFO)
    assert run.rc == 0 and [i['invoke_id'] for i in result['invocations']] == [done['invoke_id']]
