# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The emulator's Cloud Assistant through the raw Tea SDK: statuses, output, limits and error codes."""
from __future__ import annotations

import base64
import json
import time

import pytest
from alibabacloud_ecs20140526 import models as m
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config
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


def test_timeout_kills_the_process_tree(ecs):
    started = time.monotonic()
    result = wait(ecs, run(ecs, 'echo begin; sleep 30 & sleep 30', timeout=1), content_encoding='PlainText')[0]
    assert time.monotonic() - started < 10
    assert (result.invocation_status, result.error_code, result.output) == ('Timeout', 'ExecutionTimeout', 'begin\n')


def test_output_cap_keeps_the_tail_and_counts_dropped(ecs):
    result = wait(ecs, run(ecs, 'head -c 30000 /dev/zero | tr "\\0" a; echo; echo THE-END'))[0]
    output = base64.b64decode(result.output)
    assert len(output) == 24 * 1024 and output.endswith(b'THE-END\n')
    assert result.dropped == 30000 + 1 + 8 - 24 * 1024


def test_parameters(ecs):
    content = 'echo "{{greeting}} {{ACS::InstanceId}}"'
    result = wait(ecs, run(ecs, content, enable_parameter=True, parameters={'greeting': 'hi'}), content_encoding='PlainText')[0]
    assert result.output == f'hi {WEB}\n'
    assert error_of(lambda: run(ecs, content, parameters={'greeting': 'hi'})).code == 'Parameter.Disabled'
    assert error_of(lambda: run(ecs, content, enable_parameter=True)).code == 'Parameter.Missing'
    literal = wait(ecs, run(ecs, 'echo "{{x}}"'), content_encoding='PlainText')[0]
    assert literal.output == '{{x}}\n'


def test_client_token_idempotency(ecs):
    first = run(ecs, 'echo once >> ran.txt', client_token='tok-1')
    assert run(ecs, 'echo once >> ran.txt', client_token='tok-1') == first
    err = error_of(lambda: run(ecs, 'echo twice', client_token='tok-1'))
    assert err.code == 'IdempotentParameterMismatch'
    wait(ecs, first)
    count = wait(ecs, run(ecs, 'cat ran.txt; rm ran.txt'), content_encoding='PlainText')[0]
    assert count.output == 'once\n'


def test_containers_get_their_own_sandbox(ecs):
    wait(ecs, run(ecs, 'echo inside > marker', container_name='app'))
    inside = wait(ecs, run(ecs, 'cat marker', container_name='app'), content_encoding='PlainText')[0]
    assert inside.output == 'inside\n' and inside.container_name == 'app'
    outside = wait(ecs, run(ecs, 'cat marker'))[0]
    assert outside.invocation_status == 'Failed'


def test_limits_and_codes(ecs):
    assert error_of(lambda: run(ecs, 'true', ids=())).code == 'MissingParam.InstanceId'
    too_many = [f'i-x{n:03d}' for n in range(101)]
    err = error_of(lambda: run(ecs, 'true', ids=too_many))
    assert err.code == 'InstanceIds.ExceedLimit' and err.status_code == 403
    assert error_of(lambda: run(ecs, 'true', ids=(WEB, 'i-nope'))).code == 'InvalidInstance.NotFound'
    assert error_of(lambda: run(ecs, 'a' * 18 * 1024 + 'b' * 100)).code == 'CmdContent.ExceedLimit'
    assert error_of(lambda: run(ecs, '!!!not base64', content_encoding='Base64')).code == 'CmdContent.DecodeError'
    assert error_of(lambda: run(ecs, 'true', timeout=86401)).code == 'InvalidTimeout.ExceedLimit'
    assert error_of(lambda: run(ecs, 'true', type='RunPythonScript')).code == 'InvalidCmdType.NotFound'
    assert error_of(lambda: run(ecs, 'true', repeat_mode='Period')).code == 'MissingParam.Frequency'


def test_unavailable_instances_are_aborted_per_instance(ecs):
    found = {r.instance_id: r for r in wait(ecs, run(ecs, 'echo hi', ids=(WEB, OFFLINE, STOPPED, WINDOWS)))}
    assert (found[OFFLINE].invocation_status, found[OFFLINE].error_code) == ('Aborted', 'ClientNotRunning')
    assert (found[STOPPED].invocation_status, found[STOPPED].error_code) == ('Aborted', 'InstanceNotRunning')
    assert (found[WINDOWS].invocation_status, found[WINDOWS].error_code) == ('Invalid', 'CommandNotApplicable')
    assert found[WEB].invocation_status == 'Success'
    win = wait(ecs, run(ecs, 'echo from-windows', ids=(WINDOWS,), type='RunPowerShellScript'), content_encoding='PlainText')[0]
    assert win.output == 'from-windows\n'


def test_stop_invocation_terminates_running_and_unknown_id(ecs):
    invoke_id = run(ecs, 'echo start; sleep 30', ids=(WEB, DB), timeout=120)
    deadline = time.monotonic() + 10
    while any(r.invocation_status != 'Running' for r in results(ecs, invoke_id)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ecs.stop_invocation(m.StopInvocationRequest(region_id=REGION, invoke_id=invoke_id, instance_id=[DB]))
    stopped = {r.instance_id: r for r in wait(ecs, invoke_id, timeout=5, instance_id=DB)}
    assert stopped[DB].invocation_status == 'Terminated' and stopped[DB].stop_time
    assert results(ecs, invoke_id, instance_id=WEB)[0].invocation_status == 'Running'
    ecs.stop_invocation(m.StopInvocationRequest(region_id=REGION, invoke_id=invoke_id))
    wait(ecs, invoke_id, timeout=5)
    assert invocation(ecs, invoke_id).invocation_status == 'Stopped'
    assert error_of(lambda: ecs.stop_invocation(m.StopInvocationRequest(region_id=REGION, invoke_id='t-nope'))).code == \
        'InvalidInvokeId.NotFound'


def test_period_runs_repeat_until_stopped(ecs):
    invoke_id = run(ecs, 'echo tick >> ticks; wc -l < ticks', repeat_mode='Period', frequency='rate(1s)')
    deadline = time.monotonic() + 10
    while True:
        found = results(ecs, invoke_id)[0]
        if found.repeats >= 2:
            break
        assert time.monotonic() < deadline and found.invocation_status in ('Pending', 'Scheduled', 'Running')
        time.sleep(0.1)
    assert invocation(ecs, invoke_id).invocation_status in ('Scheduled', 'Running')
    ecs.stop_invocation(m.StopInvocationRequest(region_id=REGION, invoke_id=invoke_id))
    wait(ecs, invoke_id, timeout=5)
    assert invocation(ecs, invoke_id).invocation_status == 'Stopped'
    cleanup = wait(ecs, run(ecs, 'rm ticks'))[0]
    assert cleanup.invocation_status == 'Success'


def test_results_pagination(ecs):
    ids = (WEB, DB, OFFLINE, STOPPED, WINDOWS)
    invoke_id = run(ecs, 'true', ids=ids)
    seen, token, calls = [], None, 0
    while True:
        body = ecs.describe_invocation_results(m.DescribeInvocationResultsRequest(
            region_id=REGION, invoke_id=invoke_id, max_results=2, next_token=token)).body.invocation
        seen += [r.instance_id for r in body.invocation_results.invocation_result]
        calls += 1
        token = body.next_token
        if not token:
            break
    assert seen == list(ids) and calls == 3
    numbered = ecs.describe_invocation_results(m.DescribeInvocationResultsRequest(
        region_id=REGION, invoke_id=invoke_id, page_number=3, page_size=2)).body.invocation
    assert [r.instance_id for r in numbered.invocation_results.invocation_result] == [WINDOWS] and numbered.total_count == 5
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
    assert err.code == 'InvalidCommandId.NotFound'
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
