# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""aws_ssm_command and aws_ssm_command_info through real ansible/ansible-playbook against the emulator (SSM Run Command)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from cloudexec_emulator.testing import start_emulator

from helpers import ansible_adhoc, ansible_playbook

MODULE = 'cloudexec.core.aws_ssm_command'
INFO = 'cloudexec.core.aws_ssm_command_info'
APP = ['i-0c0000000000000a1', 'i-0c0000000000000a2', 'i-0c0000000000000a3']
LOST = 'i-0c0000000000000b1'      # agent ConnectionLost: Delayed, then Delivery Timed Out
GONE = 'mi-0c0000000000000c1'     # PingStatus Inactive (deregistered): Undeliverable
WINDOWS = 'i-0c0000000000000d1'
SECRET = 'ssm-command-secret-for-tests-0001'

WORLD = f'''
aws:
  region: us-east-1
  credentials:
    - {{access_key: AKIASSMCMD0000000001, secret_key: {SECRET}}}
    - {{access_key: AKIASSMCMDDENIED0001, secret_key: denied-secret-for-tests-0001, deny: [ssm:SendCommand]}}
  managed_nodes:
    - {{id: {APP[0]}, name: app-1, tags: {{role: app}}}}
    - {{id: {APP[1]}, name: app-2, tags: {{role: app}}}}
    - {{id: {APP[2]}, name: app-3, tags: {{role: app}}}}
    - {{id: {LOST}, name: lost-1, ping_status: ConnectionLost, tags: {{role: lost}}}}
    - {{id: {GONE}, name: gone-1, ping_status: Inactive, tags: {{role: gone}}}}
    - {{id: {WINDOWS}, name: win-1, platform_type: Windows, tags: {{role: app}}}}
  ssm:
    # Delivery Timed Out after 2 s instead of TimeoutSeconds + executionTimeout.
    delivery_timeout_seconds: 2
alicloud:
  region: cn-hangzhou
  credentials:
    - {{access_key_id: LTAISSMCMD0000000001, access_key_secret: SsmCommandSecretForTests0001}}
'''
# The fields of ali_ecs_command's results[] that a play switching clouds reads.
ALI_RESULT_FIELDS = {'instance_id', 'command_id', 'status', 'exit_code', 'output', 'error_code', 'error_info', 'start_time', 'finish_time'}


@pytest.fixture(scope='module')
def ssm(tmp_path_factory):
    world = Path(tmp_path_factory.mktemp('ssm-command')) / 'world.yml'
    world.write_text(WORLD)
    with start_emulator(world=world) as info:
        yield info


@pytest.fixture
def emu(ssm):
    ssm.admin('DELETE', 'faults')
    ssm.admin('POST', 'calls/reset')
    yield ssm


def calls(emu) -> dict:
    return emu.admin('GET', 'calls')['calls'].get('aws-ssm', {})


def run_module(emu, args: dict, *extra: str, module: str = MODULE):
    run = ansible_adhoc(emu, module, args, *extra)
    assert run.results, run.output
    return run, run.results[0]['result']


def test_one_instance_stdout_stderr_and_rc(emu):
    run, result = run_module(emu, {'instance_ids': [APP[0]], 'commands': ['echo out', 'echo err >&2', 'pwd', 'exit 3']}, '-vvvv')
    assert run.rc != 0, run.output
    assert result['msg'] == f'The command failed on 1 of 1 instances: {APP[0]} (Failed, exit code 3)'
    only = result['results'][0]
    assert ALI_RESULT_FIELDS <= set(only)
    # The agent runs the script in its own directory, /usr/bin, when working_directory is unset.
    assert only['stdout'].startswith('out\n') and only['stdout'].rstrip().endswith('/usr/bin')
    assert (only['stderr'], only['exit_code'], only['rc'], only['status'], only['error_code']) == ('err\n', 3, 3, 'Failed', 'Failed')
    # One instance: rc/stdout/stderr at the top too, as ansible.builtin.command has them.
    assert (result['rc'], result['stderr'], result['truncated']) == (3, 'err\n', {'stdout': False, 'stderr': False})
    assert result['counts'] == {'Failed': 1} and result['failed_instances'] == [APP[0]] and result['status'] == 'Failed'
    seen = calls(emu)
    assert seen['SendCommand'] == 1 and seen['GetCommandInvocation'] == 1
    assert seen['ListCommandInvocations'] == result['api_calls']['poll_rounds']
    assert SECRET not in run.output
    run, result = run_module(emu, {'instance_ids': [APP[0]], 'commands': 'exit 3', 'fail_on': 'none'})
    assert run.rc == 0 and result['exit_code'] == 3 and 'rc' not in result  # Ansible would fail any rc but 0


def test_tag_targets_run_one_at_a_time_with_max_concurrency(emu, tmp_path):
    log = tmp_path / 'spans.log'
    script = f'echo "start $(date +%s%N)" >> {log}; sleep 1; echo "end $(date +%s%N)" >> {log}; echo "$HOME"'
    run, result = run_module(emu, {'targets': [{'key': 'tag:role', 'values': ['app']}], 'commands': script, 'max_concurrency': '1'})
    assert run.rc == 0, run.output
    # The Windows node has the tag but not the platform of AWS-RunShellScript: the service leaves it out.
    assert result['instance_ids'] == APP and [r['instance_id'] for r in result['results']] == APP
    assert result['counts'] == {'Success': 3} and 'rc' not in result
    events = [line.split() for line in log.read_text().splitlines()]
    assert [event[0] for event in events] == ['start', 'end'] * 3, events  # never two at once
    # ListCommands is read only once every visible invocation has ended (tag targets: the count is the service's).
    assert calls(emu)['ListCommands'] >= 1


def test_max_errors_stops_sending(emu):
    run, result = run_module(emu, {'targets': [{'key': 'tag:role', 'values': ['app']}], 'commands': 'exit 1',
                                   'max_concurrency': '1', 'max_errors': '0'})
    assert run.rc != 0
    assert [r['status_details'] for r in result['results']] == ['Failed', 'Terminated', 'Terminated']
    assert 'not sent: the command had more errors than max_errors allowed' in result['msg']


def test_output_truncated_at_24000_and_8000(emu):
    script = "head -c 30000 /dev/zero | tr '\\0' o; head -c 9000 /dev/zero | tr '\\0' e >&2"
    run, result = run_module(emu, {'instance_ids': [APP[1]], 'commands': script})
    assert run.rc == 0, run.output
    only = result['results'][0]
    assert len(only['stdout']) == 24000 and only['stdout'].endswith('o--output truncated--')
    assert len(only['stderr']) == 8000 and only['stderr'].endswith('e--output truncated--')
    assert only['truncated'] == {'stdout': True, 'stderr': True} and result['truncated_instances'] == [APP[1]]
    assert 'SSM truncated the output on 1 instance(s)' in run.output and 'output_s3_bucket_name' in run.output
    run, result = run_module(emu, {'instance_ids': [APP[1]], 'commands': "head -c 23999 /dev/zero | tr '\\0' o"})
    assert result['results'][0]['truncated'] == {'stdout': False, 'stderr': False} and len(result['stdout']) == 23999


def test_offline_and_deregistered_nodes(emu):
    run, result = run_module(emu, {'instance_ids': [APP[2], LOST, GONE], 'commands': 'echo hi'})
    assert run.rc != 0
    by_id = {r['instance_id']: r for r in result['results']}
    assert by_id[APP[2]]['status'] == 'Success' and by_id[APP[2]]['stdout'] == 'hi\n'
    assert (by_id[LOST]['status'], by_id[LOST]['status_details'], by_id[LOST]['exit_code']) == ('TimedOut', 'Delivery Timed Out', None)
    assert (by_id[GONE]['status_details'], by_id[GONE]['exit_code']) == ('Undeliverable', None)
    assert f'{LOST} (Delivery Timed Out, the command was not delivered before its delivery timeout' in result['msg']
    assert f'{GONE} (Undeliverable, the command could not be delivered' in result['msg']


def test_wait_timeout_cancels_the_command(emu, tmp_path):
    marker = tmp_path / 'child-alive'
    # A background child of the script must die with it: the agent kills the whole process group.
    script = f'(sleep 4; touch {marker}) & sleep 30'
    started = time.monotonic()
    run, result = run_module(emu, {'instance_ids': [APP[0]], 'commands': script, 'wait_timeout': 2})
    assert time.monotonic() - started < 25  # does not hang until the script's end
    assert run.rc != 0
    assert 'did not finish within wait_timeout (2 s)' in result['msg'] and 'CancelCommand was sent' in result['msg']
    only = result['results'][0]
    assert (only['status'], only['status_details'], only['exit_code']) == ('Cancelled', 'Cancelled', 137)
    assert calls(emu)['CancelCommand'] == 1
    time.sleep(3)
    assert not marker.exists()


def test_check_mode_sends_nothing(emu):
    run, result = run_module(emu, {'targets': [{'key': 'tag:role', 'values': ['app', 'lost']}], 'commands': 'touch /x'}, '--check')
    assert run.rc == 0, run.output
    assert result['changed'] is True and 'nothing was sent' in result['msg'] and 'tag:role=app,lost' in result['msg']
    assert {t['instance_id']: t['ping_status'] for t in result['targets']}[LOST] == 'ConnectionLost'
    assert 'SendCommand' not in calls(emu)


def test_wait_false_then_info(emu, tmp_path):
    gate = tmp_path / 'gate'
    playbook = tmp_path / 'async.yml'
    playbook.write_text(yaml.safe_dump([{
        'hosts': 'localhost', 'gather_facts': False,
        'tasks': [
            # execution_timeout: the agent kills the script after 5 s (looked at once the other job is over).
            {'name': 'long', MODULE: {'instance_ids': [APP[2]], 'commands': 'echo started; sleep 30', 'execution_timeout': 5,
                                      'wait': False}, 'register': 'long'},
            # This one ends only once the play opened the gate: the first look sees it unfinished, however slow the machine.
            {'name': 'send', MODULE: {'instance_ids': APP[:2], 'wait': False,
                                      'commands': f'while [ ! -e {gate} ]; do sleep 0.1; done; echo done on $HOME'},
             'register': 'job'},
            {'name': 'early', INFO: {'command_id': '{{ job.command_id }}'}, 'register': 'early'},
            {'name': 'open the gate', 'ansible.builtin.file': {'path': str(gate), 'state': 'touch'}},
            {'name': 'poll', INFO: {'command_id': '{{ job.command_id }}'}, 'register': 'info',
             'until': 'info.finished', 'retries': 20, 'delay': 1},
            {'name': 'killed', INFO: {'command_id': '{{ long.command_id }}'}, 'register': 'killed',
             'until': 'killed.finished', 'retries': 20, 'delay': 1},
            {'name': 'one', INFO: {'command_id': '{{ job.command_id }}', 'instance_id': APP[1]}},
            {'name': 'unknown', INFO: {'command_id': '00000000-0000-4000-8000-000000000000'}, 'ignore_errors': True},
        ]}]))
    run = ansible_playbook(emu, playbook)
    assert run.rc == 0, run.output
    sent = run.result('send')
    assert sent['changed'] is True and len(sent['command_id']) == 36 and 'results' not in sent
    early = run.result('early')
    assert early['finished'] is False and all(r['stdout'] == '' and r['exit_code'] is None for r in early['results'])
    info = run.result('poll')
    assert info['command']['status'] == 'Success' and info['counts'] == {'Success': 2}
    assert [r['instance_id'] for r in info['results']] == APP[:2]
    assert ALI_RESULT_FIELDS <= set(info['results'][0]) and info['results'][0]['stdout'].startswith('done on ')
    killed = run.result('killed')['results'][0]
    assert (killed['status'], killed['status_details'], killed['exit_code']) == ('TimedOut', 'Execution Timed Out', 137)
    assert killed['stdout'] == 'started\n'
    one = run.result('one')
    assert [r['instance_id'] for r in one['results']] == [APP[1]] and one['exit_code'] == 0
    unknown = run.result('unknown')
    assert unknown['error']['code'] == 'InvalidCommandId' and 'check command_id' in unknown['msg']


# More cases, without Ansible: tests/unit/plugins/module_utils/test_ssm_command.py.
BAD_INPUT = [
    ({'instance_ids': [f'i-0c00000000000{n:04x}' for n in range(51)]}, 'instance_ids: 51 instances given, at most 50'),
    ({'instance_ids': [APP[0]], 'max_concurrency': '0'}, 'max_concurrency: \'0\' is not a count from 1'),
    ({'instance_ids': [APP[0]], 'execution_timeout': 3}, 'execution_timeout: 3 is outside 5..172800 seconds'),
    ({'targets': [{'key': 'Name', 'values': ['web']}]}, "targets[0].key: 'Name' is not tag:<name>"),
]


def test_bad_input_is_refused_before_the_api(emu, tmp_path):
    playbook = tmp_path / 'bad.yml'
    tasks = [{'name': f'bad {n}', MODULE: {'commands': 'true', **args}, 'ignore_errors': True} for n, (args, _named) in enumerate(BAD_INPUT)]
    playbook.write_text(yaml.safe_dump([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]))
    run = ansible_playbook(emu, playbook)
    for n, (_args, named) in enumerate(BAD_INPUT):
        record = run.record(f'bad {n}')
        assert record['status'] == 'failed' and f'Invalid value for {named}' in record['result']['msg'], record
    assert calls(emu) == {}


def test_api_errors_say_what_to_do(emu, tmp_path):
    playbook = tmp_path / 'errors.yml'
    playbook.write_text(yaml.safe_dump([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'name': 'unknown', MODULE: {'instance_ids': ['i-0c00000000000ffff'], 'commands': 'true'}, 'ignore_errors': True},
        {'name': 'windows', MODULE: {'instance_ids': [WINDOWS], 'commands': 'true'}, 'ignore_errors': True},
        {'name': 'denied', MODULE: {'instance_ids': [APP[0]], 'commands': 'true', 'access_key': 'AKIASSMCMDDENIED0001',
                                    'secret_key': 'denied-secret-for-tests-0001'}, 'ignore_errors': True},
    ]}]))
    run = ansible_playbook(emu, playbook)
    unknown = run.result('unknown')
    assert unknown['error']['code'] == 'InvalidInstanceId' and 'must be an SSM managed node of this account and region' in unknown['msg']
    windows = run.result('windows')
    assert windows['error']['code'] == 'UnsupportedPlatformType' and 'AWS-RunPowerShellScript for Windows' in windows['msg']
    denied = run.result('denied')
    assert denied['error']['code'] == 'AccessDeniedException' and 'grant ssm:SendCommand' in denied['msg']
    assert 'denied-secret-for-tests-0001' not in run.stdout + run.stderr
    emu.admin('POST', 'faults', {'service': 'aws-ssm', 'action': 'SendCommand', 'throttle': 2})
    run, _result = run_module(emu, {'instance_ids': [APP[0]], 'commands': 'true'})
    assert run.rc == 0, run.output  # botocore's retries absorb the throttling
    assert emu.admin('GET', 'calls')['errors']['aws-ssm']['SendCommand']['ThrottlingException'] == 2
