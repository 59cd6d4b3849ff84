# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The emulator's SSM Run Command through boto3: the service's checks and statuses, and the agent's way of running a script."""
from __future__ import annotations

import time

import boto3
import botocore.exceptions
import pytest

WEB1 = 'i-0a1b2c3d4e5f60701'
WEB2 = 'i-0a1b2c3d4e5f60702'
LOST = 'i-0a1b2c3d4e5f60703'       # ConnectionLost
WINDOWS = 'i-0a1b2c3d4e5f60706'
STOPPED = 'i-0a1b2c3d4e5f60707'
SHELL = 'AWS-RunShellScript'


@pytest.fixture
def ssm(emu):
    session = boto3.session.Session(aws_access_key_id=emu.env['AWS_ACCESS_KEY_ID'], aws_secret_access_key=emu.env['AWS_SECRET_ACCESS_KEY'],
                                    region_name=emu.env['AWS_REGION'])
    return session.client('ssm', endpoint_url=emu.env['AWS_ENDPOINT_URL_SSM'])


def send(ssm, commands, ids=(WEB1,), **kwargs):
    return ssm.send_command(InstanceIds=list(ids), DocumentName=SHELL, Parameters={'commands': commands, **kwargs.pop('parameters', {})},
                            **kwargs)['Command']['CommandId']


def wait_final(ssm, command_id, node=WEB1, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = ssm.get_command_invocation(CommandId=command_id, InstanceId=node)
        except ssm.exceptions.InvocationDoesNotExist:
            answer = {'Status': 'Pending'}
        if answer['Status'] in ('Success', 'Failed', 'TimedOut', 'Cancelled'):
            return answer
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)


def error_code(call, **kwargs) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(**kwargs)
    return caught.value.response['Error']['Code']


def test_invocation_is_not_visible_at_once_and_output_only_at_the_end(ssm):
    command_id = send(ssm, ['echo first', 'sleep 1', 'echo second'])
    # Eventual consistency: GetCommandInvocation right after SendCommand.
    assert error_code(ssm.get_command_invocation, CommandId=command_id, InstanceId=WEB1) == 'InvocationDoesNotExist'
    time.sleep(0.5)
    running = ssm.get_command_invocation(CommandId=command_id, InstanceId=WEB1)
    assert (running['Status'], running['ResponseCode'], running['StandardOutputContent']) == ('InProgress', -1, '')
    final = wait_final(ssm, command_id)
    assert (final['Status'], final['ResponseCode'], final['StandardOutputContent']) == ('Success', 0, 'first\nsecond\n')
    assert final['PluginName'] == 'aws:runShellScript'


def test_truncation_as_the_agent_does_it(ssm):
    # Exactly 24000 bytes are cut too (pluginutil.go StringPrefix cuts unless shorter than the limit).
    script = "head -c 24000 /dev/zero | tr '\\0' o; head -c 8000 /dev/zero | tr '\\0' e >&2"
    command_id = send(ssm, [script])
    final = wait_final(ssm, command_id)
    assert final['StandardOutputContent'] == 'o' * 23980 + '--output truncated--'
    assert final['StandardErrorContent'] == 'e' * 7980 + '--output truncated--'
    plugin = ssm.list_command_invocations(CommandId=command_id, Details=True)['CommandInvocations'][0]['CommandPlugins'][0]
    # iohandler.go TruncateOutput: 2500 characters of both, halves when both are long.
    size = 2500 - len('\n----------ERROR-------\n') - len('\n---Error truncated----') - len('\n---Output truncated---')
    assert plugin['Output'] == ('o' * (size // 2) + '\n---Output truncated---' + '\n----------ERROR-------\n' + 'e' * (size // 2)
                                + '\n---Error truncated----')
    shorter = wait_final(ssm, send(ssm, ["head -c 23999 /dev/zero | tr '\\0' o"]))
    assert shorter['StandardOutputContent'] == 'o' * 23999


def test_request_checks(ssm):
    assert error_code(ssm.send_command, InstanceIds=[WEB1] * 51 + [WEB2], DocumentName=SHELL,
                      Parameters={'commands': ['true']}) == 'ValidationException'
    assert error_code(ssm.send_command, InstanceIds=[WEB1], DocumentName='AWS-NoSuchDocument',
                      Parameters={'commands': ['true']}) == 'InvalidDocument'
    assert error_code(ssm.send_command, InstanceIds=['i-0a1b2c3d4e5f6ffff'], DocumentName=SHELL,
                      Parameters={'commands': ['true']}) == 'InvalidInstanceId'
    assert error_code(ssm.send_command, InstanceIds=[WINDOWS], DocumentName=SHELL,
                      Parameters={'commands': ['true']}) == 'UnsupportedPlatformType'
    for value in ('0', '172801', 'ten'):
        assert error_code(ssm.send_command, InstanceIds=[WEB1], DocumentName=SHELL,
                          Parameters={'commands': ['true'], 'executionTimeout': [value]}) == 'InvalidParameters'
    assert error_code(ssm.send_command, InstanceIds=[WEB1], DocumentName=SHELL, Parameters={'command': ['true']}) == 'InvalidParameters'
    assert error_code(ssm.send_command, InstanceIds=[WEB1], DocumentName=SHELL, Parameters={'commands': ['true']},
                      MaxConcurrency='0') == 'ValidationException'
    assert error_code(ssm.send_command, InstanceIds=[WEB1], DocumentName=SHELL, Parameters={'commands': ['true']},
                      TimeoutSeconds=2592001) == 'ValidationException'  # botocore checks only the minimum
    assert error_code(ssm.send_command, Targets=[{'Key': 'Name', 'Values': ['x']}], DocumentName=SHELL,
                      Parameters={'commands': ['true']}) == 'ValidationException'
    assert error_code(ssm.send_command, InstanceIds=[WEB1, WEB1], DocumentName=SHELL,
                      Parameters={'commands': ['true']}) == 'DuplicateInstanceId'
    assert error_code(ssm.send_command, InstanceIds=[WEB1], DocumentName=SHELL, Parameters={'commands': ['true']},
                      MaxErrors='01') == 'ValidationException'
    assert error_code(ssm.get_command_invocation, CommandId='0' * 36, InstanceId=WEB1) == 'InvocationDoesNotExist'
    assert error_code(ssm.cancel_command, CommandId='0' * 36) == 'InvalidCommandId'


def test_unreachable_node_is_delayed_and_cancel_works_before_delivery(ssm, emu):
    command_id = send(ssm, ['true'], ids=(LOST, STOPPED))   # a stopped instance is in a valid state: its command waits
    time.sleep(0.5)
    listed = ssm.list_command_invocations(CommandId=command_id)['CommandInvocations']
    assert {(i['InstanceId'], i['Status'], i['StatusDetails']) for i in listed} == {(LOST, 'Delayed', 'Delayed'),
                                                                                    (STOPPED, 'Delayed', 'Delayed')}
    ssm.cancel_command(CommandId=command_id)
    listed = ssm.list_command_invocations(CommandId=command_id, Details=True)['CommandInvocations']
    assert {i['Status'] for i in listed} == {'Cancelled'} and {i['CommandPlugins'][0]['ResponseCode'] for i in listed} == {-1}
    command = ssm.list_commands(CommandId=command_id)['Commands'][0]
    assert (command['Status'], command['TargetCount'], command['CompletedCount']) == ('Cancelled', 2, 2)


def test_cancel_kills_the_process_group(ssm, emu):
    command_id = send(ssm, ['sleep 30 & sleep 30'])
    time.sleep(0.6)
    ssm.cancel_command(CommandId=command_id)
    final = wait_final(ssm, command_id)
    assert (final['Status'], final['StatusDetails'], final['ResponseCode']) == ('Cancelled', 'Cancelled', 137)
    deadline = time.monotonic() + 5
    while emu.admin('GET', 'health')['sandbox_processes'] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert emu.admin('GET', 'health')['sandbox_processes'] == 0   # the background sleep went too


def test_working_directory(ssm):
    final = wait_final(ssm, send(ssm, ['pwd'], parameters={'workingDirectory': ['/nowhere']}))
    assert (final['Status'], final['ResponseCode']) == ('Failed', 1) and 'failed to run commands' in final['StandardErrorContent']
    final = wait_final(ssm, send(ssm, ['pwd']))
    assert final['StandardOutputContent'].rstrip().endswith('/usr/bin')


def test_agent_runs_a_timeout_under_5_seconds_for_an_hour(ssm):
    # The document accepts 3, the agent reads it as 3600 (pluginutil.go ValidateExecutionTimeout): not killed at 3 s.
    final = wait_final(ssm, send(ssm, ['sleep 4', 'echo survived'], parameters={'executionTimeout': ['3']}))
    assert (final['Status'], final['StandardOutputContent']) == ('Success', 'survived\n')
