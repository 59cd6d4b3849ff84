# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import ssm_command as sc
from ansible_collections.cloudexec.core.plugins.module_utils.cloud_assistant import ApiCounter
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.poll import Poller, WaitPolicy, Backoff

NODE = 'i-0a1b2c3d4e5f60701'


def params(**overrides):
    base = {'commands': 'true', 'document_name': 'AWS-RunShellScript', 'instance_ids': [NODE], 'targets': None,
            'working_directory': None, 'execution_timeout': 3600, 'delivery_timeout': None, 'max_concurrency': None,
            'max_errors': None, 'comment': None, 'output_s3_bucket_name': None, 'output_s3_key_prefix': None,
            'output_s3_region': None, 'cloudwatch_output': False, 'cloudwatch_log_group_name': None}
    base.update(overrides)
    return base


@pytest.mark.parametrize('overrides, parameter, words', [
    ({'instance_ids': [f'i-0c00000000000{n:04x}' for n in range(51)]}, 'instance_ids', 'at most 50'),
    ({'instance_ids': ['web-1']}, 'instance_ids', 'is not an instance id'),
    ({'instance_ids': None, 'targets': None}, 'instance_ids', 'give instance_ids or targets'),
    ({'targets': [{'key': 'tag:a', 'values': ['b']}]}, 'instance_ids', 'not both'),
    ({'instance_ids': None, 'targets': [{'key': 'tag:a', 'values': ['b']}] * 6}, 'targets', 'at most 5'),
    ({'instance_ids': None, 'targets': [{'key': 'tag:a', 'values': [str(n) for n in range(51)]}]}, 'targets[0].values', 'at most 50'),
    ({'instance_ids': None, 'targets': [{'key': 'Name', 'values': ['b']}]}, 'targets[0].key', 'tag:<name>'),
    ({'commands': ['', '  ']}, 'commands', 'holds no command'),
    ({'commands': {'a': 1}}, 'commands', 'a string or a list'),
    ({'execution_timeout': 4}, 'execution_timeout', 'outside 5..172800'),
    ({'execution_timeout': 172801}, 'execution_timeout', 'outside 5..172800'),
    ({'delivery_timeout': 29}, 'delivery_timeout', 'outside 30..2592000'),
    ({'max_concurrency': '0'}, 'max_concurrency', 'count from 1'),
    ({'max_concurrency': '101%'}, 'max_concurrency', 'percentage from 1% to 100%'),
    ({'max_errors': '10 %'}, 'max_errors', 'count from 0'),
    ({'comment': 'x' * 101}, 'comment', 'at most 100'),
    ({'working_directory': 'tmp'}, 'working_directory', 'not an absolute path'),
    ({'output_s3_bucket_name': 'ab'}, 'output_s3_bucket_name', '3 to 63'),
    ({'output_s3_key_prefix': 'p'}, 'output_s3_key_prefix', 'needs output_s3_bucket_name'),
    ({'cloudwatch_log_group_name': 'g'}, 'cloudwatch_log_group_name', 'cloudwatch_output=true'),
])
def test_bad_input_names_the_parameter_and_the_limit(overrides, parameter, words):
    with pytest.raises(ValidationError) as caught:
        sc.CommandSpec.from_params(params(**overrides))
    assert caught.value.parameter == parameter and words in str(caught.value)


def test_request_as_sendcommand_takes_it():
    spec = sc.CommandSpec.from_params(params(commands=['a', 'b'], instance_ids=[NODE, NODE], max_concurrency='10%', max_errors='0',
                                             working_directory='/srv', delivery_timeout=60, output_s3_bucket_name='bucket',
                                             cloudwatch_output=True))
    assert spec.send_command_kwargs() == {
        'DocumentName': 'AWS-RunShellScript', 'InstanceIds': [NODE],
        'Parameters': {'commands': ['a', 'b'], 'executionTimeout': ['3600'], 'workingDirectory': ['/srv']},
        'TimeoutSeconds': 60, 'MaxConcurrency': '10%', 'MaxErrors': '0', 'OutputS3BucketName': 'bucket',
        'CloudWatchOutputConfig': {'CloudWatchOutputEnabled': True},
    }
    targets = sc.CommandSpec.from_params(params(instance_ids=None, targets=[{'key': 'tag:app', 'values': 'web'}]))
    assert targets.send_command_kwargs()['Targets'] == [{'Key': 'tag:app', 'Values': ['web']}]


@pytest.mark.parametrize('text, limit, cut', [
    ('o' * 23980 + sc.TRUNCATED_SUFFIX, sc.STDOUT_LIMIT, True),
    ('e' * 7980 + sc.TRUNCATED_SUFFIX, sc.STDERR_LIMIT, True),
    # The agent cuts stderr at 24,000 too (runpluginutil.go): also recognised.
    ('e' * 23980 + sc.TRUNCATED_SUFFIX, sc.STDERR_LIMIT, True),
    # A multi-byte character cut in half comes back as U+FFFD: still recognised.
    ('\u00e9' * 11989 + '\ufffd' + sc.TRUNCATED_SUFFIX, sc.STDOUT_LIMIT, True),
    ('o' * 23999, sc.STDOUT_LIMIT, False),
    ('short output that happens to end with ' + sc.TRUNCATED_SUFFIX, sc.STDOUT_LIMIT, False),
])
def test_truncation_is_recognised(text, limit, cut):
    assert sc.truncated(text, limit) is cut


class FakeSsm:
    """Answers ListCommandInvocations from a script of rounds; counts calls."""

    def __init__(self, rounds, pages=1):
        self.rounds = list(rounds)
        self.pages = pages
        self.calls: list[str] = []
        self.current = None
        self.meta = type('Meta', (), {'method_to_api_mapping': {}})()

    def list_command_invocations(self, **kwargs):
        self.calls.append('ListCommandInvocations')
        if kwargs.get('NextToken') is None:
            self.current = self.rounds.pop(0) if len(self.rounds) > 1 else self.rounds[0]
        page = int(kwargs.get('NextToken') or 0)
        size = max(1, -(-len(self.current) // self.pages))
        chunk = self.current[page * size:(page + 1) * size]
        answer = {'CommandInvocations': [{'CommandId': 'c' * 36, 'InstanceId': i, 'Status': s, 'StatusDetails': s,
                                          'CommandPlugins': [{'ResponseCode': 0 if s == 'Success' else -1}]} for i, s in chunk]}
        if (page + 1) * size < len(self.current):
            answer['NextToken'] = str(page + 1)
        return answer

    def get_command_invocation(self, **kwargs):
        self.calls.append('GetCommandInvocation')
        return {'Status': 'Success', 'StatusDetails': 'Success', 'ResponseCode': 0, 'StandardOutputContent': f'hi {kwargs["InstanceId"]}\n'}

    def list_commands(self, **kwargs):
        self.calls.append('ListCommands')
        return {'Commands': [{'CommandId': kwargs['CommandId'], 'Status': 'Success'}]}

    def cancel_command(self, **kwargs):
        self.calls.append('CancelCommand')
        return {}


def fast_poller(timeout, **kwargs):
    clock = [0.0]

    def sleep(seconds):
        clock[0] += seconds
    kwargs['policy'] = WaitPolicy('test', Backoff(initial=1.0, factor=1.0, cap=1.0, jitter=0.0))
    return Poller(timeout, clock=lambda: clock[0], sleep=sleep, rand=lambda: 0.0, **kwargs)


def test_one_listing_per_page_per_round_and_one_read_per_finished_node():
    ids = [f'i-0c00000000000{n:04x}' for n in range(60)]
    client = FakeSsm([[], [(i, 'InProgress') for i in ids], [(i, 'Success') for i in ids]], pages=2)
    outcome = sc.wait_for(client, 'c' * 36, 30, ApiCounter(), expected=ids, poller_factory=fast_poller)
    assert [r.stdout for r in outcome.results] == [f'hi {i}\n' for i in ids] and not outcome.timed_out
    # Round 1 sees nothing yet (eventual consistency), then 2 pages a round; each node read once when it ended.
    assert outcome.calls_per_round == [1, 2, 2 + 60]
    assert client.calls.count('GetCommandInvocation') == 60 and 'CancelCommand' not in client.calls
    # With instance ids the rounds never need the command itself: read once at the end, for its status.
    assert client.calls.count('ListCommands') == 1 and outcome.command_status == 'Success'


def test_deadline_cancels_and_reports():
    client = FakeSsm([[(NODE, 'Delayed')]])
    outcome = sc.wait_for(client, 'c' * 36, 3, ApiCounter(), expected=[NODE], poller_factory=fast_poller)
    assert outcome.timed_out and outcome.cut_short == [NODE] and client.calls.count('CancelCommand') == 1
    message = sc.deadline_message(outcome, 3)
    assert 'did not finish within wait_timeout (3 s)' in message and 'CancelCommand was sent' in message
    assert f'{NODE} (Delayed: the node was not reachable' in message


def test_api_errors_get_a_remedy():
    class Refusing:
        meta = type('Meta', (), {'method_to_api_mapping': {'send_command': 'SendCommand'}})()

        def send_command(self, **kwargs):
            raise CloudExecError('Instances [[i-1]] not in a valid state', code='InvalidInstanceId', provider='aws')
    spec = sc.CommandSpec.from_params(params())
    with pytest.raises(CloudExecError) as caught:
        sc.send(Refusing(), spec, ApiCounter())
    assert 'must be an SSM managed node' in str(caught.value)
