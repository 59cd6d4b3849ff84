# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The emulator's Cloud Assistant through the raw Tea SDK: statuses, output, limits and error codes."""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from alibabacloud_ecs20140526 import models as m
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config
from cloudexec_emulator.testing import start_emulator
from Tea.exceptions import TeaException

REGION = 'cn-hangzhou'
WEB = 'i-bp1demo000000000001'
DB = 'i-bp1demo000000000002'
OFFLINE = 'i-bp1demo000000000003'
STOPPED = 'i-bp1demo000000000004'
WINDOWS = 'i-bp1demo000000000005'
FINAL = {'Success', 'Failed', 'Error', 'Timeout', 'Cancelled', 'Terminated', 'Invalid', 'Aborted'}


@pytest.fixture
def ecs(emu) -> EcsClient:
    ali = emu['alicloud']
    return EcsClient(Config(access_key_id=ali['access_key'], access_key_secret=ali['secret_key'], protocol='http',
                            endpoint=ali['ecs_endpoint'].split('://', 1)[1], region_id=REGION))


def run(ecs: EcsClient, content: str, ids=(WEB,), **kwargs) -> str:
    request = m.RunCommandRequest(region_id=REGION, type=kwargs.pop('type', 'RunShellScript'), command_content=content,
                                  instance_id=list(ids), **kwargs)
    return ecs.run_command(request).body.invoke_id


def results(ecs: EcsClient, invoke_id: str, **kwargs) -> list:
    body = ecs.describe_invocation_results(m.DescribeInvocationResultsRequest(region_id=REGION, invoke_id=invoke_id, **kwargs)).body
    return body.invocation.invocation_results.invocation_result


def wait(ecs: EcsClient, invoke_id: str, timeout: float = 20.0, **kwargs) -> list:
    deadline = time.monotonic() + timeout
    while True:
        found = results(ecs, invoke_id, page_size=50, **kwargs)
        if found and all(r.invocation_status in FINAL for r in found):
            return found
        assert time.monotonic() < deadline, [(r.instance_id, r.invocation_status) for r in found]
        time.sleep(0.1)


def invocation(ecs: EcsClient, invoke_id: str):
    body = ecs.describe_invocations(m.DescribeInvocationsRequest(region_id=REGION, invoke_id=invoke_id)).body
    return body.invocations.invocation[0]


def error_of(call) -> TeaException:
    with pytest.raises(TeaException) as info:
        call()
    return info.value


def test_run_success_and_failure_with_base64_output(ecs):
    ok = wait(ecs, run(ecs, 'echo hello; echo oops >&2', ids=(WEB, DB)))
    assert {r.instance_id: r.invocation_status for r in ok} == {WEB: 'Success', DB: 'Success'}
    assert base64.b64decode(ok[0].output) == b'hello\noops\n'
    assert ok[0].exit_code == 0 and ok[0].error_code == '' and ok[0].finished_time and ok[0].start_time
    invoke_id = run(ecs, 'echo bad; exit 3')
    bad = wait(ecs, invoke_id, content_encoding='PlainText')[0]
    assert (bad.invocation_status, bad.exit_code, bad.error_code, bad.output) == ('Failed', 3, 'ExitCodeNonzero', 'bad\n')
    assert bad.invoke_record_status == 'Failed'
    assert invocation(ecs, invoke_id).invocation_status == 'Failed'


def test_partial_failure_overall_status(ecs):
    invoke_id = run(ecs, 'case "$HOME" in *0001) exit 0;; *) exit 1;; esac', ids=(WEB, DB))
    wait(ecs, invoke_id)
    inv = invocation(ecs, invoke_id)
    assert inv.invocation_status == 'PartialFailed' and inv.invoke_status == 'Finished'
    assert {i.instance_id: i.invocation_status for i in inv.invoke_instances.invoke_instance} == {WEB: 'Success', DB: 'Failed'}
    assert all(i.output is None for i in inv.invoke_instances.invoke_instance)  # IncludeOutput defaults to false


def test_base64_content_working_dir_and_username(ecs, emu):
    script = base64.b64encode(b'#!/bin/sh\nmkdir -p sub; pwd; echo "$USER"').decode()
    first = wait(ecs, run(ecs, script, content_encoding='Base64', username='app'), content_encoding='PlainText')[0]
    assert first.username == 'app' and first.output.splitlines()[1] == 'app'
    home = first.output.splitlines()[0]
    second = wait(ecs, run(ecs, 'pwd', working_dir='/sub'), content_encoding='PlainText')[0]
    assert second.output.strip() == home + '/sub'
    missing = wait(ecs, run(ecs, 'pwd', working_dir='/nope'))[0]
    assert (missing.invocation_status, missing.error_code) == ('Invalid', 'DirectoryNotExists')
    err = error_of(lambda: run(ecs, 'pwd', working_dir='relative/dir'))
    assert err.code == 'InvalidParameter.WorkingDir'


def alive(ecs: EcsClient, pid_file: str) -> bool:
    """Whether the process whose pid the file holds still runs on WEB (it is killed after the check)."""
    found = wait(ecs, run(ecs, f'kill -0 "$(cat {pid_file})" 2>/dev/null && echo alive; kill -9 "$(cat {pid_file})" 2>/dev/null; true'),
                 content_encoding='PlainText')[0]
    return found.output == 'alive\n'


def test_timeout_kills_only_the_main_process_and_reports_exit_code_1(ecs):
    # agent/util/process/process.go: on timeout, SIGKILL to the main process only; the task reports exitCode=1.
    started = time.monotonic()
    script = 'echo begin; sleep 20 & echo $! > timeout-child.pid; sleep 20'
    result = wait(ecs, run(ecs, script, timeout=1), content_encoding='PlainText')[0]
    assert time.monotonic() - started < 10
    assert (result.invocation_status, result.error_code, result.exit_code, result.output) == ('Timeout', 'ExecutionTimeout', 1, 'begin\n')
    assert alive(ecs, 'timeout-child.pid')


def test_normal_finish_kills_nothing_and_does_not_wait_for_the_pipes(ecs):
    # After a normal finish the agent kills nothing and waits 200 ms for late output, not for the pipes to close.
    started = time.monotonic()
    result = wait(ecs, run(ecs, 'sleep 20 & echo $! > bg.pid; echo done'), content_encoding='PlainText')[0]
    assert time.monotonic() - started < 5
    assert (result.invocation_status, result.output) == ('Success', 'done\n')
    assert alive(ecs, 'bg.pid')


def test_death_by_signal_is_exit_code_minus_1(ecs):
    # Go's ProcessState.ExitCode() is -1 for a signal; the agent never reports 128+n. The main process is the agent's
    # `sh -c <script file>`, the script's parent here (only that one is killed).
    script = ('main=$PPID; case "$(tr "\\000" " " < /proc/$main/cmdline)" in "sh -c "*) kill -9 "$main";; '
              '*) echo "the script runs in the main process"; exit 3;; esac; sleep 1')
    result = wait(ecs, run(ecs, script), content_encoding='PlainText')[0]
    assert (result.invocation_status, result.error_code, result.exit_code) == ('Failed', 'ExitCodeNonzero', -1), result.output
    # A script killed inside that main process is an ordinary exit code of sh: 128 + 9.
    assert wait(ecs, run(ecs, 'kill -9 $$'))[0].exit_code == 137


def test_output_report_head_and_tail_byte_vectors():
    from cloudexec_emulator.ali_assist import OutputReport  # pylint: disable=import-outside-toplevel

    # Three full ticks stream 6144 bytes of head (the last read starts while 4096 <= 6000 were sent); the fourth keeps.
    report = OutputReport(24576, stream_head=True)
    report.add(b'a' * 10000)
    for dummy in range(4):
        report.tick()
    report.add(b'b' * 30000 + b'END')
    output, dropped = report.final()
    assert output[:6144] == b'a' * 6144 and output[6144:] == (b'b' * 30000 + b'END')[-(24576 - 6144):]
    assert len(output) == 24576 and dropped == 10000 - 6144 + 30003 - (24576 - 6144)
    # A slow trickle: each tick reads what is there; the head goes on until more than 6000 bytes went.
    report = OutputReport(12000, stream_head=True)
    for dummy in range(3):
        report.add(b'x' * 2000)
        report.tick()
    report.add(b'y' * 2000)
    report.tick()
    report.add(b'z' * 100)
    assert report.final() == (b'x' * 6000 + b'y' * 2000 + b'z' * 100, 0)
    assert report.head == b'x' * 6000 + b'y' * 2000
    # No tick (under a second), a periodic task or a container: the tail alone.
    report = OutputReport(12000, stream_head=False)
    report.add(bytes(range(256)) * 100)
    report.tick()
    assert report.final() == ((bytes(range(256)) * 100)[-12000:], 25600 - 12000)
    # Cancel: the stopped report has what the ticks kept, never the unread rest.
    report = OutputReport(12000, stream_head=True)
    report.add(b'h' * 7000)
    for dummy in range(5):
        report.tick()
    report.add(b'unread')
    assert report.stopped() == (b'h' * 7000, 0)
    # A quota under the head (only with agent_min_quota lowered): the head is cut at the quota.
    report = OutputReport(5000, stream_head=True)
    report.add(b'q' * 7000)
    for dummy in range(3):
        report.tick()
    assert report.final() == (b'q' * 5000, 2000)


def test_head_is_streamed_while_running_and_the_middle_dropped(ecs):
    # One tick (1 s) streams the first 2048 bytes as running output; the end keeps the tail; the middle is Dropped.
    script = 'head -c 3000 /dev/zero | tr "\\0" A; sleep 1.4; head -c 30000 /dev/zero | tr "\\0" B; echo END'
    invoke_id = run(ecs, script)
    deadline = time.monotonic() + 10
    while True:
        now = results(ecs, invoke_id)[0]
        if now.invocation_status == 'Running' and base64.b64decode(now.output or ''):
            assert base64.b64decode(now.output) == b'A' * 2048  # the running report, visible while it runs
            break
        assert time.monotonic() < deadline and now.invocation_status in ('Pending', 'Running'), now.invocation_status
        time.sleep(0.1)
    result = wait(ecs, invoke_id)[0]
    output = base64.b64decode(result.output)
    tail = 24576 - 2048
    assert output == b'A' * 2048 + (b'B' * 30000 + b'END\n')[-tail:]
    assert result.dropped == 952 + 30004 - tail


def test_client_token_idempotency(ecs):
    first = run(ecs, 'echo once >> ran.txt', client_token='tok-1')
    assert run(ecs, 'echo once >> ran.txt', client_token='tok-1') == first
    err = error_of(lambda: run(ecs, 'echo twice', client_token='tok-1'))
    assert err.code == 'IdempotentParameterMismatch'
    wait(ecs, first)
    count = wait(ecs, run(ecs, 'cat ran.txt; rm ran.txt'), content_encoding='PlainText')[0]
    assert count.output == 'once\n'


def test_parameters(ecs):
    content = 'echo "{{greeting}} {{ACS::InstanceId}}"'
    result = wait(ecs, run(ecs, content, enable_parameter=True, parameters={'greeting': 'hi'}), content_encoding='PlainText')[0]
    assert result.output == f'hi {WEB}\n'
    # Names are case-insensitive (PYSDK command_content).
    result = wait(ecs, run(ecs, content, enable_parameter=True, parameters={'GREETING': 'ho'}), content_encoding='PlainText')[0]
    assert result.output == f'ho {WEB}\n'
    literal = wait(ecs, run(ecs, 'echo "{{x}}"'), content_encoding='PlainText')[0]
    assert literal.output == '{{x}}\n'
    # Codes and statuses of the InvokeCommand error table (DOCS25).
    for kwargs, code, status in (
            ({'parameters': {'greeting': 'hi'}}, 'Parameter.Disabled', 400),
            ({'enable_parameter': True}, 'Parameter.MissingValue', 400),
            ({'enable_parameter': True, 'parameters': {'greeting': 'hi', 'other': 'x'}}, 'Parameter.NotMatched', 403),
            ({'enable_parameter': True, 'parameters': {'greeting': 'hi', 'Greeting': 'x'}}, 'ParameterKey.Duplicate', 403),
            ({'enable_parameter': True, 'parameters': {'greeting': 1}}, 'ParameterType.NotSupported', 403)):
        err = error_of(lambda kwargs=kwargs: run(ecs, content, **kwargs))
        assert (err.code, err.status_code) == (code, status), (kwargs, err.code)
    eleven = ' '.join(f'{{{{p{n}}}}}' for n in range(11))
    err = error_of(lambda: run(ecs, f'echo {eleven}', enable_parameter=True, parameters={f'p{n}': 'v' for n in range(11)}))
    assert (err.code, err.status_code) == ('ParameterCount.ExceedLimit', 403)
    long_key = 'k' * 65
    err = error_of(lambda: run(ecs, f'echo {{{{{long_key}}}}}', enable_parameter=True, parameters={long_key: 'v'}))
    assert err.code == 'CmdParamName.ExceedLimit'
    twenty_one = ' '.join(f'{{{{p{n}}}}}' for n in range(21))
    assert error_of(lambda: run(ecs, f'echo {twenty_one}', enable_parameter=True)).code == 'ParameterCount.ExceedLimit'
    assert error_of(lambda: run(ecs, 'echo {{bad.name}}', enable_parameter=True)).code == 'CmdParam.InvalidParamName'
    assert error_of(lambda: run(ecs, 'echo {{acs::mine}}', enable_parameter=True)).code == 'CmdParam.InvalidParamName'


def test_content_limits_count_after_substitution(ecs):
    # 24 KB after Base64 for RunCommand, 18 KB for a kept command (GOSDK 2025-10); parameters substituted count too.
    fits = 'a' * (24 * 1024 // 4 * 3 - 8)
    assert wait(ecs, run(ecs, f'true {fits}'))[0].invocation_status == 'Success'
    err = error_of(lambda: run(ecs, f'true {fits}xxxx'))
    assert (err.code, err.status_code) == ('CmdContent.ExceedLimit', 403)
    assert error_of(lambda: run(ecs, f'true {fits}', keep_command=True)).code == 'CmdContent.ExceedLimit'
    small = 'true {{v}} {{v}}'
    err = error_of(lambda: run(ecs, small, enable_parameter=True, parameters={'v': 'b' * 10000}))
    assert err.code == 'CmdContent.ExceedLimit'
    command_id = ecs.create_command(m.CreateCommandRequest(region_id=REGION, name='sized', type='RunShellScript',
                                                           command_content=base64.b64encode(b'true {{v}}').decode(),
                                                           enable_parameter=True)).body.command_id
    err = error_of(lambda: ecs.invoke_command(m.InvokeCommandRequest(region_id=REGION, command_id=command_id, instance_id=[WEB],
                                                                     parameters={'v': 'c' * 14000})))
    assert err.code == 'CmdContent.ExceedLimit'
    err = error_of(lambda: ecs.invoke_command(m.InvokeCommandRequest(region_id=REGION, command_id=command_id, instance_id=[WEB],
                                                                     parameters={'v': 'c'}, timeout=5)))
    assert err.code == 'InvalidTimeout.ExceedLimit'   # InvokeCommand: "at least 10 seconds"


def test_containers_get_their_own_sandbox(ecs):
    wait(ecs, run(ecs, 'echo inside > marker', container_name='app'))
    inside = wait(ecs, run(ecs, 'cat marker', container_name='app'), content_encoding='PlainText')[0]
    assert inside.output == 'inside\n' and inside.container_name == 'app'
    outside = wait(ecs, run(ecs, 'cat marker'))[0]
    assert outside.invocation_status == 'Failed'
    # The content runs with /bin/sh -c (no interpreter line); WorkingDir has no effect; stdout comes before stderr.
    container = 'containerd://' + 'ab' * 32
    found = wait(ecs, run(ecs, 'echo e >&2; sleep 0.2; pwd; echo o', container_id=container, working_dir='/nope'),
                 content_encoding='PlainText')[0]
    assert found.invocation_status == 'Success' and found.output.endswith('/' + 'ab' * 32 + '\no\ne\n'), found.output
    for bad in ('abc', 'podman://' + 'ab' * 32, 'ab' * 31):
        err = error_of(lambda bad=bad: run(ecs, 'true', container_id=bad))
        assert (err.code, err.status_code) == ('InvalidContainerId.Malformed', 400), bad
    assert error_of(lambda: run(ecs, 'true', container_name='-bad name')).code == 'InvalidContainerName.Malformed'


def test_limits_and_codes(ecs):
    assert error_of(lambda: run(ecs, 'true', ids=())).code == 'MissingParam.InstanceId'
    too_many = [f'i-x{n:03d}' for n in range(101)]
    err = error_of(lambda: run(ecs, 'true', ids=too_many))
    assert err.code == 'InstanceIds.ExceedLimit' and err.status_code == 403
    assert error_of(lambda: run(ecs, 'true', ids=(WEB, 'i-nope'))).code == 'InvalidInstance.NotFound'
    assert error_of(lambda: run(ecs, '!!!not base64', content_encoding='Base64')).code == 'CmdContent.DecodeError'
    assert error_of(lambda: run(ecs, 'true', timeout=86401)).code == 'InvalidTimeout.ExceedLimit'
    assert error_of(lambda: run(ecs, 'true', type='RunPythonScript')).code == 'InvalidCmdType.NotFound'
    err = error_of(lambda: run(ecs, 'true', repeat_mode='Sometimes'))
    assert (err.code, err.status_code) == ('InvalidRepeatMode.NotFound', 404)
    assert error_of(lambda: run(ecs, 'true', repeat_mode='Period')).code == 'MissingParam.Frequency'
    err = error_of(lambda: ecs.invoke_command(m.InvokeCommandRequest(region_id=REGION, command_id='c-nope', instance_id=[WEB])))
    assert (err.code, err.status_code) == ('InvalidCmdId.NotFound', 404)


@pytest.mark.parametrize('frequency, timeout, ok', [
    ('rate(59s)', 10, False), ('rate(60s)', 10, True), ('rate(1m)', 60, False), ('RATE (2 m)', 60, True), ('rate(7d)', 60, True),
    ('rate(8d)', 60, False), ('0 */5 * * * *', 60, True), ('*/5 * * * * *', 1, False), ('*/10 * * * * *', 1, True),
    ('0,30 * * * * ?', 45, False), ('0 0 12 * * ? Asia/Shanghai', 60, True), ('at(2030-01-01 10:00:00 GMT+8:00)', 60, True),
    ('at(2030-01-01T10:00:00Z)', 60, False), ('every hour', 60, False)])
def test_schedules(ecs, frequency, timeout, ok):
    # PYSDK/DOCS25 frequency: rate() 60 s..7 days and longer than Timeout; cron at least 10 s and Timeout apart.
    def call():
        return run(ecs, 'true', repeat_mode='Period', frequency=frequency, timeout=timeout)

    if not ok:
        assert error_of(call).code == 'InvalidParam.Frequency'
        return
    invoke_id = call()
    ecs.stop_invocation(m.StopInvocationRequest(region_id=REGION, invoke_id=invoke_id))


def test_unrunnable_instances_fail_the_call_offline_agents_abort(ecs):
    # DOCS25 InvokeCommand: one instance that cannot run the command fails the call (InvalidInstance.NotMatch).
    for ids, kwargs in (((WEB, STOPPED), {}), ((WEB, WINDOWS), {}), ((WEB,), {'type': 'RunPowerShellScript'})):
        err = error_of(lambda ids=ids, kwargs=kwargs: run(ecs, 'echo hi', ids=ids, **kwargs))
        assert (err.code, err.status_code) == ('InvalidInstance.NotMatch', 400), ids
    found = {r.instance_id: r for r in wait(ecs, run(ecs, 'echo hi', ids=(WEB, OFFLINE)))}
    assert (found[OFFLINE].invocation_status, found[OFFLINE].error_code) == ('Aborted', 'ClientNotRunning')
    assert found[WEB].invocation_status == 'Success'
    win = wait(ecs, run(ecs, 'echo from-windows', ids=(WINDOWS,), type='RunPowerShellScript'), content_encoding='PlainText')[0]
    assert win.output == 'from-windows\n'


def test_dry_run_checks_and_runs_nothing(ecs):
    found = {r.instance_id: r for r in wait(ecs, run(ecs, 'touch dry-run-ran', ids=(WEB, OFFLINE), repeat_mode='DryRun'))}
    assert found[WEB].invocation_status == 'Success' and found[OFFLINE].error_code == 'ClientNotRunning'
    check = wait(ecs, run(ecs, 'test -e dry-run-ran && echo ran || echo not'), content_encoding='PlainText')[0]
    assert check.output == 'not\n'


def test_stop_invocation_kills_the_main_process_of_a_started_run(ecs):
    # The agent (stop_started: kill): the stopped report first, exit code 0, then SIGKILL to the main process only.
    invoke_id = run(ecs, 'echo start; sleep 20 & echo $! > stop-child.pid; sleep 20', ids=(WEB, DB), timeout=120)
    deadline = time.monotonic() + 10
    while any(r.invocation_status != 'Running' for r in results(ecs, invoke_id)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ecs.stop_invocation(m.StopInvocationRequest(region_id=REGION, invoke_id=invoke_id, instance_id=[DB]))
    stopped = {r.instance_id: r for r in wait(ecs, invoke_id, timeout=5, instance_id=DB)}
    assert (stopped[DB].invocation_status, stopped[DB].exit_code, stopped[DB].error_code) == ('Terminated', 0, 'ExecutionInterrupted')
    assert stopped[DB].stop_time
    assert results(ecs, invoke_id, instance_id=WEB)[0].invocation_status == 'Running'
    ecs.stop_invocation(m.StopInvocationRequest(region_id=REGION, invoke_id=invoke_id))
    wait(ecs, invoke_id, timeout=5)
    assert invocation(ecs, invoke_id).invocation_status == 'Stopped'
    assert alive(ecs, 'stop-child.pid')
    assert error_of(lambda: ecs.stop_invocation(m.StopInvocationRequest(region_id=REGION, invoke_id='t-nope'))).code == \
        'InvalidInvokeId.NotFound'


def test_scheduled_invocations_are_timed_and_stop_cancels_them(ecs):
    invoke_id = run(ecs, 'echo tick', repeat_mode='Once', frequency='rate(5m)', timeout=60)   # a Frequency makes it Period
    listed = ecs.describe_invocations(m.DescribeInvocationsRequest(region_id=REGION, invoke_id=invoke_id)).body
    assert listed.invocations.invocation == []    # Timed defaults to false: only Once and finished invocations
    timed = ecs.describe_invocations(m.DescribeInvocationsRequest(region_id=REGION, invoke_id=invoke_id, timed=True)).body
    found = timed.invocations.invocation[0]
    assert (found.repeat_mode, found.timed) == ('Period', True)
    deadline = time.monotonic() + 5
    while results(ecs, invoke_id)[0].invocation_status != 'Scheduled':
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ecs.stop_invocation(m.StopInvocationRequest(region_id=REGION, invoke_id=invoke_id))
    assert wait(ecs, invoke_id, timeout=5)[0].invocation_status == 'Cancelled'
    assert invocation(ecs, invoke_id).invocation_status == 'Stopped'   # finished: listed without Timed again
    err = error_of(lambda: ecs.describe_invocations(m.DescribeInvocationsRequest(region_id=REGION, include_output=True)))
    assert err.code == 'InvalidParameter'
    with_output = ecs.describe_invocations(m.DescribeInvocationsRequest(region_id=REGION, instance_id=WEB, include_output=True)).body
    assert with_output.invocations.invocation


def test_results_pagination(ecs):
    ids = (WEB, DB, OFFLINE)
    invoke_id = run(ecs, 'true', ids=ids)
    seen, token, calls = [], None, 0
    while True:
        body = ecs.describe_invocation_results(m.DescribeInvocationResultsRequest(
            region_id=REGION, invoke_id=invoke_id, max_results=1, next_token=token)).body.invocation
        seen += [r.instance_id for r in body.invocation_results.invocation_result]
        calls += 1
        token = body.next_token
        if not token:
            break
    assert seen == list(ids) and calls == 3
    numbered = ecs.describe_invocation_results(m.DescribeInvocationResultsRequest(
        region_id=REGION, invoke_id=invoke_id, page_number=2, page_size=2)).body.invocation
    assert [r.instance_id for r in numbered.invocation_results.invocation_result] == [OFFLINE] and numbered.total_count == 3
    err = error_of(lambda: ecs.describe_invocation_results(m.DescribeInvocationResultsRequest(region_id=REGION, max_results=51)))
    assert err.code == 'InvalidParameter'


def test_create_invoke_describe_delete_command(ecs):
    command_id = ecs.create_command(m.CreateCommandRequest(
        region_id=REGION, name='greet', type='RunShellScript', command_content=base64.b64encode(b'echo {{who}}').decode(),
        content_encoding='Base64', enable_parameter=True)).body.command_id
    listed = ecs.describe_commands(m.DescribeCommandsRequest(region_id=REGION, command_id=command_id)).body.commands.command[0]
    assert listed.name == 'greet' and listed.parameter_names.parameter_name == ['who']
    assert base64.b64decode(listed.command_content) == b'echo {{who}}'
    invoke_id = ecs.invoke_command(m.InvokeCommandRequest(region_id=REGION, command_id=command_id, instance_id=[WEB],
                                                          parameters={'who': 'world'})).body.invoke_id
    assert wait(ecs, invoke_id, content_encoding='PlainText')[0].output == 'world\n'
    ecs.delete_command(m.DeleteCommandRequest(region_id=REGION, command_id=command_id))
    err = error_of(lambda: ecs.invoke_command(m.InvokeCommandRequest(region_id=REGION, command_id=command_id, instance_id=[WEB])))
    assert err.code == 'InvalidCmdId.NotFound'
    # RunCommand without KeepCommand leaves no command behind.
    run(ecs, 'true', name='transient')
    assert ecs.describe_commands(m.DescribeCommandsRequest(region_id=REGION, name='transient')).body.total_count == 0


def send_file(ecs: EcsClient, **kwargs) -> str:
    return ecs.send_file(m.SendFileRequest(region_id=REGION, instance_id=kwargs.pop('ids', [WEB]), **kwargs)).body.invoke_id


def send_results(ecs: EcsClient, invoke_id: str):
    deadline = time.monotonic() + 10
    while True:
        inv = ecs.describe_send_file_results(m.DescribeSendFileResultsRequest(region_id=REGION, invoke_id=invoke_id)).body.invocations.invocation[0]
        if all(i.invocation_status in FINAL for i in inv.invoke_instances.invoke_instance):
            return inv
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_send_file(ecs):
    payload = base64.b64encode(b'\x00binary\xff').decode()
    inv = send_results(ecs, send_file(ecs, name='blob.bin', target_dir='/etc/app', content=payload, content_type='Base64',
                                      file_mode='0600', overwrite=True))
    assert inv.invocation_status == 'Success' and inv.vm_count == 1
    check = wait(ecs, run(ecs, 'od -An -c etc/app/blob.bin | tr -s " "; stat -c %a etc/app/blob.bin'), content_encoding='PlainText')[0]
    assert check.output.split('\n')[-2] == '600' and 'b i n a r y' in check.output
    again = send_results(ecs, send_file(ecs, name='blob.bin', target_dir='/etc/app', content='x'))
    assert again.invoke_instances.invoke_instance[0].error_code == 'FileAlreadyExists'
    err = error_of(lambda: send_file(ecs, name='big', target_dir='/tmp', content='a' * 25 * 1024))
    assert err.code == 'Content.ExceedLimit'
    err = error_of(lambda: send_file(ecs, ids=[f'i-{n}' for n in range(51)], name='x', target_dir='/tmp', content='x'))
    assert err.code == 'InstanceIds.ExceedLimit'


def test_throttling_fault_applies(ecs, emu):
    emu.admin('POST', 'faults', {'service': 'ali-ecs', 'action': 'DescribeInvocationResults', 'throttle': 1})
    assert error_of(lambda: results(ecs, 't-any')).code == 'Throttling.User'
    assert results(ecs, 't-any') == []
    assert json.dumps(emu.admin('GET', 'calls')['errors']['ali-ecs']) == json.dumps({'DescribeInvocationResults': {'Throttling.User': 1}})


SMALL_QUOTA_WORLD = """
aws:
  credentials:
    - {access_key: AKIAQUOTA000000000001, secret_key: quota-secret-for-tests-only-0001}
alicloud:
  region: cn-hangzhou
  credentials:
    - {access_key_id: LTAIQUOTA00000000001, access_key_secret: QuotaSecretForTestsOnly000001}
  instances:
    - {id: i-quota0000000000001, name: quota-01}
  assist: {log_quota: 6000, agent_min_quota: 0, stop_started: continue}
"""


@pytest.fixture(scope='module')
def small_quota(tmp_path_factory):
    """An emulator whose Cloud Assistant keeps 6000 bytes of output and lets a stopped run go on (the API reference)."""
    world = Path(tmp_path_factory.mktemp('quota')) / 'quota.yml'
    world.write_text(SMALL_QUOTA_WORLD)
    with start_emulator(world=world) as info:
        ali = info['alicloud']
        yield EcsClient(Config(access_key_id=ali['access_key'], access_key_secret=ali['secret_key'], protocol='http',
                               endpoint=ali['ecs_endpoint'].split('://', 1)[1], region_id=REGION))


def test_world_sets_the_quota_and_the_agent_floor():
    from cloudexec_emulator.world import parse_world  # pylint: disable=import-outside-toplevel

    assert parse_world({'alicloud': {'assist': {'log_quota': 6000}}}).alicloud.assist.output_quota == 12000   # the agent's floor
    assert parse_world({}).alicloud.assist.output_quota == 24576


def test_output_quota_from_the_world(small_quota):
    invoke_id = run(small_quota, 'head -c 10000 /dev/zero | tr "\\0" q; echo', ids=('i-quota0000000000001',))
    result = wait(small_quota, invoke_id)[0]
    assert base64.b64decode(result.output) == b'q' * 5999 + b'\n' and result.dropped == 4001


def test_stop_leaves_a_started_run_alone_as_the_api_reference_says(small_quota):
    instance = ('i-quota0000000000001',)
    invoke_id = run(small_quota, 'sleep 1.5; echo finished', ids=instance)
    deadline = time.monotonic() + 5
    while results(small_quota, invoke_id)[0].invocation_status != 'Running':
        assert time.monotonic() < deadline
        time.sleep(0.05)
    small_quota.stop_invocation(m.StopInvocationRequest(region_id=REGION, invoke_id=invoke_id))
    time.sleep(0.3)
    assert results(small_quota, invoke_id)[0].invocation_status == 'Running'
    result = wait(small_quota, invoke_id, content_encoding='PlainText')[0]
    assert (result.invocation_status, result.output) == ('Success', 'finished\n')
