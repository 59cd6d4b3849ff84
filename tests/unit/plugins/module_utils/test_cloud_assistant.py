# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

pytest.importorskip('alibabacloud_ecs20140526')
from alibabacloud_ecs20140526 import models as m  # noqa: E402  pylint: disable=wrong-import-position
from Tea.exceptions import TeaException  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant as ca  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cloudexec.core.plugins.module_utils.alicloud import AlicloudAuth  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, DeadlineExceeded, ValidationError  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cloudexec.core.plugins.module_utils.poll import API_RETRY, Poller  # noqa: E402  pylint: disable=wrong-import-position

AUTH = AlicloudAuth(alicloud_access_key='LTAI', alicloud_secret_key='secret', alicloud_region='cn-hangzhou')


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def poller(self, timeout: float, max_retries: int | None = None, **kwargs) -> Poller:
        if max_retries is not None:
            kwargs['policy'] = replace(kwargs.get('policy', API_RETRY), max_retries=max_retries)
        return Poller(timeout, clock=self.clock, sleep=self.sleep, rand=lambda: 0.0, **kwargs)


class Response:
    def __init__(self, body) -> None:
        self.body = body


class FakeEcs:
    """Answers Cloud Assistant calls from scripted state; records every request."""

    def __init__(self, instances: dict[str, list[str]], throttle: dict[str, int] | None = None) -> None:
        # invoke id -> the overall status it reports on each DescribeInvocations call (the last one repeats)
        self.instances = instances
        self.script: dict[str, list[str]] = {}
        self.throttle = dict(throttle or {})
        self.requests: list[tuple[str, object]] = []

    def _maybe_throttle(self, action: str) -> None:
        if self.throttle.get(action, 0) > 0:
            self.throttle[action] -= 1
            raise TeaException({'code': 'Throttling.User', 'message': 'flow control', 'data': {'statusCode': 400}})

    def run_command_with_options(self, request, runtime):
        self.requests.append(('RunCommand', request))
        self._maybe_throttle('RunCommand')
        invoke_id = f't-{len([r for r in self.requests if r[0] == "RunCommand"])}'
        self.instances.setdefault(invoke_id, list(request.instance_id))
        return Response(m.RunCommandResponseBody(command_id='c-1', invoke_id=invoke_id))

    def describe_invocations_with_options(self, request, runtime):
        self.requests.append(('DescribeInvocations', request))
        self._maybe_throttle('DescribeInvocations')
        steps = self.script.get(request.invoke_id, ['Success'])
        status = steps.pop(0) if len(steps) > 1 else steps[0]
        per_instance = 'Running' if status == 'Running' else 'Success'
        return Response(m.DescribeInvocationsResponseBody().from_map({'Invocations': {'Invocation': [{
            'InvokeId': request.invoke_id, 'InvocationStatus': status,
            'InvokeInstances': {'InvokeInstance': [{'InstanceId': i, 'InvocationStatus': per_instance}
                                                   for i in self.instances[request.invoke_id]]}}]}}))

    def describe_invocation_results_with_options(self, request, runtime):
        self.requests.append(('DescribeInvocationResults', request))
        self._maybe_throttle('DescribeInvocationResults')
        ids = self.instances[request.invoke_id]
        start = int(request.next_token or 0)
        chunk = ids[start:start + request.max_results]
        nxt = str(start + request.max_results) if start + request.max_results < len(ids) else ''
        rows = [{'InstanceId': i, 'InvokeId': request.invoke_id, 'InvocationStatus': 'Failed' if i.endswith('7') else 'Success',
                 'ExitCode': 3 if i.endswith('7') else 0, 'ErrorCode': 'ExitCodeNonzero' if i.endswith('7') else '',
                 'Output': base64.b64encode(f'out {i} \u2713\n'.encode()).decode(), 'Dropped': 10 if i.endswith('9') else 0}
                for i in chunk]
        return Response(m.DescribeInvocationResultsResponseBody().from_map(
            {'Invocation': {'InvocationResults': {'InvocationResult': rows}, 'NextToken': nxt}}))

    def stop_invocation_with_options(self, request, runtime):
        self.requests.append(('StopInvocation', request))
        return Response(m.StopInvocationResponseBody())

    def count(self, action: str) -> int:
        return sum(1 for name, _request in self.requests if name == action)


def ids(count: int) -> list[str]:
    return [f'i-{n:04d}' for n in range(1, count + 1)]


def test_batches_and_tokens():
    assert [len(b) for b in ca.batches(ids(250))] == [100, 100, 50]
    assert ca.batches([]) == []
    assert ca.unique(['a', 'b', 'a', 'c']) == ['a', 'b', 'c']
    assert ca.batch_token('tok', 0, 1) == 'tok'
    assert [ca.batch_token('tok', n, 2) for n in range(2)] == ['tok-b001', 'tok-b002']
    long = 'x' * 64
    assert len(ca.batch_token(long, 1, 3)) == 64 and ca.batch_token(long, 1, 3).endswith('-b002')
    assert ca.new_client_token() != ca.new_client_token()


def test_content_is_base64_and_limited():
    assert base64.b64decode(ca.encode_content('echo "héllo" $HOME')) == 'echo "héllo" $HOME'.encode()
    assert len(ca.encode_content('a' * 18432)) == 24576
    with pytest.raises(ValidationError) as info:
        ca.encode_content('a' * 18433)
    assert info.value.parameter == 'content' and 'CmdContent' not in str(info.value) and info.value.remedy


def test_run_command_fields():
    spec = ca.RunSpec(content='echo {{who}} {{n}}', working_dir='/srv', timeout=30, username='app', parameters={'who': 'me', 'n': 3},
                      name='greet', keep_command=True)
    spec.validate()
    fields = spec.run_command_fields('cn-hangzhou', ['i-1', 'i-2'], 'tok')
    assert fields == {
        'region_id': 'cn-hangzhou', 'instance_id': ['i-1', 'i-2'], 'client_token': 'tok', 'timeout': 30, 'repeat_mode': 'Once',
        'working_dir': '/srv', 'username': 'app', 'parameters': {'who': 'me', 'n': '3'},
        'type': 'RunShellScript', 'command_content': base64.b64encode(b'echo {{who}} {{n}}').decode(), 'content_encoding': 'Base64',
        'keep_command': True, 'enable_parameter': True, 'name': 'greet',
    }
    # The SDK turns them into the wire form the service reads.
    request = m.RunCommandRequest(**fields)
    assert request.to_map()['InstanceId'] == ['i-1', 'i-2'] and request.to_map()['EnableParameter'] is True
    scheduled = ca.RunSpec(command_id='c-1', repeat_mode='Period', frequency='rate(5m)')
    scheduled.validate()
    invoke = scheduled.invoke_command_fields('cn-hangzhou', ['i-1'], 'tok')
    assert invoke['command_id'] == 'c-1' and invoke['frequency'] == 'rate(5m)' and 'parameters' not in invoke
    assert 'frequency' not in ca.RunSpec(content='x', frequency='rate(5m)').common_fields('r', ['i'], 't')


@pytest.mark.parametrize('kwargs, parameter', [
    ({}, 'content'),
    ({'content': 'x', 'command_id': 'c-1'}, 'content'),
    ({'content': '  '}, 'content'),
    ({'content': 'x', 'timeout': 0}, 'timeout'),
    ({'content': 'x', 'timeout': 86401}, 'timeout'),
    ({'content': 'x', 'command_type': 'RunPython'}, 'type'),
    ({'content': 'x', 'repeat_mode': 'Period'}, 'frequency'),
    ({'content': 'x', 'client_token': 'x' * 65}, 'client_token'),
    ({'content': 'x', 'client_token': 'tök'}, 'client_token'),
    # The service's limits (issue9-alibaba.md B1-B5), each refused before any call and named.
    ({'content': 'a' * 13825, 'keep_command': True}, 'content'),                  # 18 KB for a kept command
    ({'content': 'x {{v}}', 'parameters': {'v': 'b' * 18431}}, 'parameters'),    # counted with the values filled in
    ({'content': ' '.join(f'{{{{p{n}}}}}' for n in range(11)), 'parameters': {f'p{n}': 'v' for n in range(11)}}, 'parameters'),
    ({'content': ' '.join(f'{{{{p{n}}}}}' for n in range(21)), 'parameters': {'p0': 'v'}}, 'content'),
    ({'content': 'x {{v}}', 'parameters': {'v': '1', 'V': '2'}}, 'parameters'),
    ({'content': 'x {{v}}', 'parameters': {'v': '1', 'w': '2'}}, 'parameters'),
    ({'content': 'x {{v}} {{w}}', 'parameters': {'v': '1'}}, 'parameters'),
    ({'content': 'x {{acs::mine}}', 'parameters': {'v': '1'}}, 'content'),
    ({'content': 'x {{' + 'k' * 65 + '}}', 'parameters': {'k' * 65: '1'}}, 'parameters'),
    ({'command_id': 'c-1', 'timeout': 9}, 'timeout'),
    ({'content': 'x', 'repeat_mode': 'Period', 'frequency': 'rate(59s)', 'timeout': 10}, 'frequency'),
    ({'content': 'x', 'repeat_mode': 'Period', 'frequency': 'rate(60s)', 'timeout': 60}, 'frequency'),
    ({'content': 'x', 'repeat_mode': 'Period', 'frequency': 'rate(8d)'}, 'frequency'),
    ({'content': 'x', 'repeat_mode': 'Period', 'frequency': '*/5 * * * * *', 'timeout': 1}, 'frequency'),
    ({'content': 'x', 'repeat_mode': 'Period', 'frequency': '0 * * * * ?', 'timeout': 61}, 'frequency'),
    ({'content': 'x', 'repeat_mode': 'Period', 'frequency': 'at(2030-01-01T10:00:00Z)'}, 'frequency'),
    ({'content': 'x', 'frequency': 'rate(5m)'}, 'frequency'),
    ({'content': 'x', 'container_id': 'abc'}, 'container_id'),
    ({'content': 'x', 'container_id': 'podman://' + 'a' * 64}, 'container_id'),
    ({'content': 'x', 'container_name': '-x y'}, 'container_name'),
    ({'content': 'x', 'container_name': 'app', 'working_dir': '/srv'}, 'working_dir'),
    ({'content': 'x', 'container_id': 'docker://' + 'a' * 64, 'username': 'app'}, 'username'),
])
def test_spec_validation(kwargs, parameter):
    with pytest.raises(ValidationError) as info:
        ca.RunSpec(**kwargs).validate()
    assert info.value.parameter == parameter


@pytest.mark.parametrize('kwargs', [
    {'content': 'a' * 13824, 'keep_command': True},
    {'content': 'a' * 18432},
    {'content': 'x {{V}} {{acs::InstanceId}}', 'parameters': {'v': 'b' * 18000}},
    {'content': 'x', 'repeat_mode': 'Period', 'frequency': 'RATE (2 m)', 'timeout': 60},
    {'content': 'x', 'repeat_mode': 'Period', 'frequency': '*/10 * * * * *', 'timeout': 10},
    {'content': 'x', 'repeat_mode': 'Period', 'frequency': '0 0 12 * * ? Asia/Shanghai'},
    {'content': 'x', 'repeat_mode': 'Period', 'frequency': 'at(2030-01-01 10:00:00 GMT+8:00)'},
    {'content': 'x', 'repeat_mode': 'DryRun'},
    {'content': 'x', 'container_id': 'containerd://' + 'a' * 64},
    {'command_id': 'c-1', 'timeout': 10, 'parameters': {'any': 'value'}},
])
def test_spec_validation_accepts_what_the_service_accepts(kwargs):
    ca.RunSpec(**kwargs).validate()


def test_cron_intervals():
    assert ca.cron_min_interval('*/10 * * * * *') == 10
    assert ca.cron_min_interval('0 0,30 * * * ?') == 1800
    assert ca.cron_min_interval('0 0 12 * * ?') == 86400
    assert ca.cron_min_interval('5,55 59 23 * * ?') == 50
    with pytest.raises(ValueError):
        ca.cron_min_interval('0 61 * * * ?')


def test_start_batches_by_100_with_derived_tokens():
    client = FakeEcs({})
    clock = FakeClock()
    started = ca.start(client, AUTH, ca.RunSpec(content='true', client_token='tok'), ids(150), poller_factory=clock.poller)
    assert [len(s.instance_ids) for s in started] == [100, 50]
    requests = [r for name, r in client.requests if name == 'RunCommand']
    assert [r.client_token for r in requests] == ['tok-b001', 'tok-b002']
    assert requests[1].instance_id == ids(150)[100:]


def test_start_retries_a_throttled_run_command_with_the_same_token():
    client = FakeEcs({}, throttle={'RunCommand': 2})
    clock = FakeClock()
    started = ca.start(client, AUTH, ca.RunSpec(content='true'), ids(3), poller_factory=clock.poller)
    tokens = {r.client_token for name, r in client.requests if name == 'RunCommand'}
    assert len(started) == 1 and client.count('RunCommand') == 3 and len(tokens) == 1
    assert clock.sleeps == [0.5, 0.75]


def test_giving_up_on_a_throttled_call_names_the_api_action_not_a_function():
    client = FakeEcs({}, throttle={'RunCommand': 1000})
    clock = FakeClock()
    with pytest.raises(DeadlineExceeded) as info:
        ca.start(client, AUTH, ca.RunSpec(content='true'), ids(1), poller_factory=lambda timeout, **kw: clock.poller(timeout, max_retries=1000, **kw))
    text = str(info.value)
    assert text.startswith('DeadlineExceeded: Gave up waiting for the RunCommand API call after 60 seconds; last error: Throttling.User: ')
    assert 'run_command' not in text and 'retry later or lower forks' in text


def test_decode_output():
    assert ca.decode_output(base64.b64encode('ü\n'.encode()).decode()) == 'ü\n'
    assert ca.decode_output(base64.b64encode(b'\xff\n').decode()) == '\ufffd\n'
    assert ca.decode_output('') == '' and ca.decode_output(None) == ''
    assert ca.decode_output('plain', encoded=False) == 'plain'


@pytest.mark.parametrize('count', [1, 100, 1000])
def test_calls_per_round_grow_with_batches_not_instances(count):
    targets = ids(count)
    groups = ca.batches(targets)
    client = FakeEcs({f't-{n + 1}': group for n, group in enumerate(groups)})
    for n in range(len(groups)):
        client.script[f't-{n + 1}'] = ['Running', 'Running', 'Running', 'Success']
    started = [ca.Started(f't-{n + 1}', 'c-1', group) for n, group in enumerate(groups)]
    clock = FakeClock()
    outcome = ca.wait_for(client, AUTH, started, 60, poller_factory=clock.poller)
    assert outcome.calls_per_round == [len(groups)] * 4
    assert client.count('DescribeInvocations') == 4 * len(groups)
    # Results once at the end, 50 a page.
    assert client.count('DescribeInvocationResults') == sum((len(g) + 49) // 50 for g in groups)
    # Adaptive: quick first checks, growing waits (0.5 s, x1.5).
    assert clock.sleeps == [0.5, 0.75, 1.125]
    assert [r.instance_id for r in outcome.results] == targets
    assert outcome.results[0].output == 'out i-0001 \u2713\n'


def test_throttled_poll_rounds_are_retried():
    client = FakeEcs({'t-1': ids(3)}, throttle={'DescribeInvocations': 2, 'DescribeInvocationResults': 1})
    client.script['t-1'] = ['Running', 'Success']
    clock = FakeClock()
    outcome = ca.wait_for(client, AUTH, [ca.Started('t-1', 'c-1', ids(3))], 60, poller_factory=clock.poller)
    assert not outcome.timed_out and len(outcome.results) == 3
    assert client.count('DescribeInvocationResults') == 2


def test_deadline_stops_and_reports():
    client = FakeEcs({'t-1': ids(2)})
    client.script['t-1'] = ['Running']
    clock = FakeClock()
    outcome = ca.wait_for(client, AUTH, [ca.Started('t-1', 'c-1', ids(2))], 5, poller_factory=clock.poller)
    assert outcome.timed_out and client.count('StopInvocation') == 1
    assert outcome.unfinished == {'t-1': ids(2)}
    message = ca.deadline_message(outcome, 5)
    assert message.startswith('The command did not finish within wait_timeout (5 s); it had not finished on 2 instance(s): '
                              'i-0001, i-0002; StopInvocation was sent for t-1: runs that had not started are cancelled, but a run '
                              'that had started may still be running')
    # Never that it was stopped: the reference says StopInvocation does not interrupt a started run.
    assert 'stopped with' not in message
    assert sum(clock.sleeps) == pytest.approx(5)


def test_fail_on_and_messages():
    client = FakeEcs({'t-1': ids(20)})
    clock = FakeClock()
    outcome = ca.wait_for(client, AUTH, [ca.Started('t-1', 'c-1', ids(20))], 60, poller_factory=clock.poller)
    assert outcome.counts == {'Success': 18, 'Failed': 2}
    assert ca.should_fail(outcome, 'any') and not ca.should_fail(outcome, 'all') and not ca.should_fail(outcome, 'none')
    assert ca.failure_message(outcome) == 'The command failed on 2 of 20 instances: i-0007 (Failed, exit code 3); i-0017 (Failed, exit code 3)'
    assert [r.instance_id for r in outcome.dropped] == ['i-0009', 'i-0019']
    warning = ca.dropped_warning(outcome)
    assert 'i-0009 (10 bytes)' in warning and 'dropped the middle' in warning and 'write the output to a file' in warning
    assert 'OssOutputDelivery' in warning and 'keeps only the last' not in warning
    cut = outcome.dropped[0].to_dict()['output_cut']
    assert cut['missing'] == 'middle' and cut['dropped_bytes'] == 10 and cut['kept_bytes'] == len(outcome.dropped[0].output.encode())
    assert outcome.results[0].to_dict()['output_cut'] is None
    with pytest.raises(ValidationError):
        ca.should_fail(outcome, 'some')


def test_targets():
    targets = [ca.InstanceState('i-1', 'Running', 'linux', True), ca.InstanceState('i-2'), ca.InstanceState('i-3', 'Stopped', 'linux'),
               ca.InstanceState('i-4', 'Running', 'linux', False, '2026-01-01T00:00:00Z'), ca.InstanceState('i-5', 'Running', 'windows', True)]
    problems = ca.target_problems(targets, 'RunShellScript')
    assert problems == {'i-2': 'not found in this region', 'i-3': 'instance is Stopped, not Running',
                        'i-4': 'Cloud Assistant agent is offline, last heartbeat 2026-01-01T00:00:00Z',
                        'i-5': 'RunShellScript does not run on a windows instance'}
    assert 'i-5' not in ca.target_problems(targets, 'RunPowerShellScript')
    assert 'i-1' in ca.target_problems(targets, 'RunBatScript')
    error = ca.targets_error(problems, 5)
    assert error.code == 'TargetsUnavailable' and 'nothing was run' in str(error) and not error.retryable


def test_a_windows_target_gets_the_windows_remedy():
    targets = [ca.InstanceState('i-1', 'Running', 'linux', True), ca.InstanceState('i-5', 'Running', 'windows', True)]
    error = ca.targets_error(ca.target_failures(targets, 'RunShellScript'), 2, 'RunShellScript')
    assert error.remedy == ('i-5 run Windows, where RunShellScript does not run: give them a PowerShell script with type '
                            'RunPowerShellScript (or a Bat script with type RunBatScript) in a task of their own; the ali_ecs '
                            'inventory puts them in the group os_windows')
    error = ca.targets_error(ca.target_failures(targets, 'RunPowerShellScript'), 2, 'RunPowerShellScript')
    assert error.remedy.startswith('i-1 run Linux, where RunPowerShellScript does not run: give them a shell script with type '
                                   'RunShellScript')
    # Other problems keep their remedy next to it.
    mixed = targets + [ca.InstanceState('i-4', 'Stopped', 'linux')]
    error = ca.targets_error(ca.target_failures(mixed, 'RunShellScript'), 3, 'RunShellScript')
    assert 'Start the instances' in error.remedy and 'i-5 run Windows' in error.remedy


@pytest.mark.parametrize('status, exit_code, error_code, expected', [
    ('Success', 0, None, 0),
    ('Failed', 3, 'ExitCodeNonzero', 3),
    ('Running', 0, None, None),              # wait_timeout passed: the service says 0, the script has not ended
    ('Stopping', 0, None, None),
    ('Pending', 0, None, None),
    ('Cancelled', 0, None, None),
    ('Invalid', 0, 'CommandNotApplicable', None),
    ('Terminated', 0, None, None),           # stopped: no code of its own
    ('Failed', 0, 'ClientNotRunning', None),
    ('Timeout', 1, 'ExecutionTimeout', None),     # the agent kills the script and reports 1 of its own (process.go)
    ('Failed', -1, 'ExitCodeNonzero', -1),        # its main process died of a signal: the agent reports -1
    ('Success', None, None, None),
])
def test_exit_code_only_when_the_script_gave_one(status, exit_code, error_code, expected):
    assert ca.exit_code_of(status, exit_code, error_code) == expected
    item = m.DescribeInvocationResultsResponseBodyInvocationInvocationResultsInvocationResult(
        instance_id='i-1', invoke_id='t-1', invocation_status=status, exit_code=exit_code, error_code=error_code)
    assert ca.InstanceResult.from_sdk(item).to_dict()['exit_code'] == expected


class InvocationsByFilter:
    """DescribeInvocations over a fixed list: t-1 is Success; any other id is unknown (an empty answer, as the service gives)."""

    def __init__(self) -> None:
        self.requests = []

    def describe_invocations_with_options(self, request, runtime):
        self.requests.append(request)
        known = request.invoke_id in (None, 't-1') and request.invoke_status in (None, 'Success', 'Finished')
        items = [{'InvokeId': 't-1', 'InvocationStatus': 'Success'}] if known else []
        return Response(m.DescribeInvocationsResponseBody().from_map({'Invocations': {'Invocation': items}}))


def test_unknown_invoke_id_is_not_found_and_a_filtered_out_one_is_empty():
    client = InvocationsByFilter()
    clock = FakeClock()
    assert [i.invoke_id for i in ca.lookup_invocations(client, AUTH, {'invoke_id': 't-1'}, poller_factory=clock.poller)] == ['t-1']
    with pytest.raises(CloudExecError) as info:
        ca.lookup_invocations(client, AUTH, {'invoke_id': 't-nope', 'invoke_status': None}, poller_factory=clock.poller)
    assert info.value.code == 'InvalidInvokeId.NotFound' and not info.value.retryable
    assert str(info.value).startswith('InvalidInvokeId.NotFound: the invocation t-nope was not found in region cn-hangzhou.')
    assert 'invoke_id' in info.value.remedy and 'alicloud_region' in info.value.remedy
    # Found at once with Timed=false; the unknown one asked with Timed=false and true (active schedules are listed only
    # with Timed=true), and no call by id alone without other filters.
    assert [r.timed for r in client.requests] == [False, False, True]
    assert ca.lookup_invocations(client, AUTH, {'invoke_id': 't-1', 'invoke_status': 'Running'}, poller_factory=clock.poller) == []
    with pytest.raises(CloudExecError):
        ca.lookup_invocations(client, AUTH, {'invoke_id': 't-nope', 'invoke_status': 'Running'}, poller_factory=clock.poller)
    assert ca.lookup_invocations(client, AUTH, {'invoke_status': 'Running'}, poller_factory=clock.poller) == []


def test_remedies_for_cloud_assistant_codes():
    class Failing:
        def run_command_with_options(self, request, runtime):
            raise TeaException({'code': 'IdempotentParameterMismatch', 'message': 'code: 400, x request id: 1', 'data': {'statusCode': 400}})

    with pytest.raises(ca.CloudExecError) as info:
        ca.api_call(Failing(), AUTH, 'run_command', m.RunCommandRequest())
    assert info.value.code == 'IdempotentParameterMismatch' and 'client_token' in info.value.remedy
    assert json.dumps(ca.CLOUD_ASSISTANT_REMEDIES)  # plain strings only
