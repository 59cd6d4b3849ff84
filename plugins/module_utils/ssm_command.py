# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""SSM Run Command (SendCommand with AWS-RunShellScript / AWS-RunPowerShellScript): send, wait, read the results.

One poll round is the pages of ListCommandInvocations with Details (50 invocations a page) for the command, whatever
the number of nodes; an invocation that has ended is then read once with GetCommandInvocation, the only call that
returns its output (up to 24,000 characters of stdout; CommandPlugins' Output holds 2,500 of both streams together).
Waiting goes through the shared Poller (poll.SSM_COMMAND); throttled calls are retried by botocore first (standard
retry mode), then by the Poller. On the deadline the command is cancelled (CancelCommand) and the task says so.

Results have the shape of ali_ecs_command's (results[] with instance_id, status, exit_code, output, error_code,
error_info, start_time, finish_time; counts; failed_instances), with stdout and stderr apart and whether SSM cut them.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass, field

from ansible_collections.cloudexec.core.plugins.module_utils import aws
from ansible_collections.cloudexec.core.plugins.module_utils.cloud_assistant import ApiCounter
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, DeadlineExceeded, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.poll import SSM_COMMAND, Poller, done, pending

# Command documents this module sends, with their one plugin (for GetCommandInvocation's PluginName).
DOCUMENTS = {'AWS-RunShellScript': 'aws:runShellScript', 'AWS-RunPowerShellScript': 'aws:runPowerShellScript'}
DEFAULT_DOCUMENT = 'AWS-RunShellScript'
# Request limits (botocore's SSM model and the API reference, SendCommand).
MAX_INSTANCE_IDS = 50
MAX_TARGETS = 5
MAX_TARGET_VALUES = 50
MAX_TARGET_KEY = 163
DELIVERY_TIMEOUT_RANGE = (30, 2592000)       # TimeoutSeconds
COMMENT_MAX = 100
S3_BUCKET_RANGE = (3, 63)
S3_PREFIX_MAX = 500
# executionTimeout: the documents accept 1..172800, but the agent replaces anything under 5 with 3600 (amazon-ssm-agent
# agent/plugins/pluginutil/pluginutil.go ValidateExecutionTimeout), so a 1-4 s timeout would silently become an hour.
EXECUTION_TIMEOUT_RANGE = (5, 172800)
DEFAULT_EXECUTION_TIMEOUT = 3600
MAX_CONCURRENCY_PATTERN = re.compile(r'^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$')
MAX_ERRORS_PATTERN = re.compile(r'^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$')
_TARGET_KEY = re.compile(r'^(tag:.+|tag-key|InstanceIds)$')
_NODE_ID = re.compile(r'^(i-[0-9a-zA-Z]{8}|i-[0-9a-zA-Z]{17}|mi-[0-9a-f]{17})$')
PAGE_SIZE = 50
# After CancelCommand on the deadline, how long to watch the invocations reach Cancelled.
CANCEL_SETTLE_SECONDS = 10.0
# Output SSM keeps: stdout 24,000 characters; stderr 8,000 per the API reference (GetCommandInvocation), 24,000 as
# the agent cuts it (runpluginutil.go). The agent replaces the end of a cut stream with this suffix (pluginutil.go).
STDOUT_LIMIT = 24000
STDERR_LIMIT = 8000
TRUNCATED_SUFFIX = '--output truncated--'

# Invocation StatusDetails that will not change any more (the API writes some with spaces).
FINAL_DETAILS = frozenset(('Success', 'Failed', 'Execution Timed Out', 'Delivery Timed Out', 'Cancelled', 'Terminated',
                           'Undeliverable', 'ExecutionTimedOut', 'DeliveryTimedOut'))
FINAL_STATUSES = frozenset(('Success', 'Cancelled', 'Failed', 'TimedOut'))
FINAL_COMMAND_STATUSES = frozenset(('Success', 'Cancelled', 'Failed', 'TimedOut'))
FAIL_ON = ('any', 'all', 'none')

SSM_COMMAND_REMEDIES = {
    'InvalidInstanceId': 'Each instance must be an SSM managed node of this account and region, with its agent registered '
                         '(not terminated): check instance_ids and region (DescribeInstanceInformation lists the nodes)',
    'InvalidDocument': 'Use document_name AWS-RunShellScript (Linux, macOS) or AWS-RunPowerShellScript (Windows)',
    'InvalidDocumentVersion': 'Leave the document version unset (the default version)',
    'InvalidParameters': 'The document refused a parameter: give commands, and execution_timeout between 5 and 172800',
    'UnsupportedPlatformType': 'The document does not fit the platform of an instance: AWS-RunShellScript for Linux and '
                               'macOS, AWS-RunPowerShellScript for Windows; leave the other instances out',
    'InvalidOutputFolder': 'The S3 output location is not valid: check output_s3_bucket_name and output_s3_key_prefix',
    'InvalidOutputLocation': 'The S3 output location is not valid: check output_s3_bucket_name, output_s3_key_prefix and '
                             'output_s3_region',
    'InvalidCommandId': 'No such command in this region: check command_id (the command_id aws_ssm_command returned) and '
                        'region; SSM keeps commands for 30 days',
    'InvocationDoesNotExist': 'The command has no invocation on this instance (yet): check instance_id, or try again in a '
                              'moment, as new commands take a few seconds to show',
    'InvalidPluginName': 'The plugin name does not belong to the command\'s document',
    'DuplicateInstanceId': 'Name each instance once',
    'InvalidRole': 'The service role cannot be used for notifications: check its trust policy',
    'InvalidNotificationConfig': 'Check the notification settings of the command',
    'MaxDocumentSizeExceeded': 'The commands are too large: copy a script to the nodes first and run it',
    'ValidationException': 'AWS refused a parameter: check the value named in the message',
    'AccessDeniedException': 'The IAM principal may not call this action: grant ssm:SendCommand (on the document and the '
                             'instances), ssm:ListCommandInvocations, ssm:GetCommandInvocation, ssm:ListCommands and '
                             'ssm:CancelCommand',
    'ThrottlingException': 'SSM throttled the calls of this account: retry later, lower forks, or raise max_attempts',
}

# What a StatusDetails value means for the user.
DETAIL_HINTS = {
    'Failed': 'the script exited with a non-zero code',
    'Execution Timed Out': 'the script ran longer than execution_timeout and the agent killed it',
    'Delivery Timed Out': 'the command was not delivered before its delivery timeout (the node was not reachable: agent '
                          'not connected, or the instance stopped)',
    'Undeliverable': 'the command could not be delivered: the node may not exist any more for Systems Manager or does not '
                     'respond (check its PingStatus)',
    'Terminated': 'not sent: the command had more errors than max_errors allowed',
    'Cancelled': 'the command was cancelled',
    'Delayed': 'the node was not reachable; SSM keeps trying until the delivery timeout',
}


def with_remedy(error: CloudExecError) -> CloudExecError:
    """Add the Run Command remedy for the error's code."""
    if error.code in SSM_COMMAND_REMEDIES and (error.remedy is None or error.code == 'AccessDeniedException'):
        error.remedy = SSM_COMMAND_REMEDIES[error.code]
    return error


def api_call(client: t.Any, operation: str, counter: ApiCounter, **kwargs: t.Any) -> dict[str, t.Any]:
    """One SSM call (botocore retries throttling itself): the response, or CloudExecError with a remedy."""
    counter.add(aws._action_name(client, operation))  # pylint: disable=protected-access
    try:
        return aws.call(client, operation, **kwargs)
    except CloudExecError as exc:
        raise with_remedy(exc) from None


# --------------------------------------------------------------------------- request


def command_lines(commands: t.Any) -> list[str]:
    """The commands option as the document's StringList: a string is one script (its lines), a list is its items."""
    if isinstance(commands, str):
        lines = [commands]
    elif isinstance(commands, list) and all(isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in commands):
        lines = [str(c) for c in commands]
    else:
        raise ValidationError('commands', 'it must be a string or a list of strings')
    if not any(line.strip() for line in lines):
        raise ValidationError('commands', 'it holds no command')
    return lines


def normalize_targets(targets: t.Any) -> list[dict[str, t.Any]]:
    """targets as SendCommand's Targets: [{Key, Values}], checked against the API's limits."""
    if not isinstance(targets, list) or not targets:
        raise ValidationError('targets', 'it must be a list of {key, values}')
    if len(targets) > MAX_TARGETS:
        raise ValidationError('targets', f'{len(targets)} targets given, at most {MAX_TARGETS} are allowed')
    result = []
    for pos, item in enumerate(targets):
        where = f'targets[{pos}]'
        if not isinstance(item, dict) or set(item) - {'key', 'values'}:
            raise ValidationError(where, 'each target is a dict with key and values')
        key, values = item.get('key'), item.get('values')
        if isinstance(values, str):
            values = [values]
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_TARGET_KEY or not _TARGET_KEY.match(key):
            raise ValidationError(f'{where}.key', f'{key!r} is not tag:<name>, tag-key or InstanceIds (at most {MAX_TARGET_KEY} '
                                  'characters)')
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise ValidationError(f'{where}.values', 'give 1 or more non-empty strings')
        if len(values) > MAX_TARGET_VALUES:
            raise ValidationError(f'{where}.values', f'{len(values)} values given, at most {MAX_TARGET_VALUES} are allowed')
        result.append({'Key': key, 'Values': values})
    return result


@dataclass
class CommandSpec:
    """What to send, checked before any call."""

    commands: list[str]
    document_name: str = DEFAULT_DOCUMENT
    instance_ids: list[str] = field(default_factory=list)
    targets: list[dict[str, t.Any]] = field(default_factory=list)
    working_directory: str | None = None
    execution_timeout: int = DEFAULT_EXECUTION_TIMEOUT
    delivery_timeout: int | None = None
    max_concurrency: str | None = None
    max_errors: str | None = None
    comment: str | None = None
    output_s3_bucket_name: str | None = None
    output_s3_key_prefix: str | None = None
    output_s3_region: str | None = None
    cloudwatch_output: bool = False
    cloudwatch_log_group_name: str | None = None

    @classmethod
    def from_params(cls, params: t.Mapping[str, t.Any]) -> 'CommandSpec':
        spec = cls(commands=command_lines(params['commands']), document_name=params['document_name'],
                   instance_ids=list(dict.fromkeys(params.get('instance_ids') or [])),
                   targets=normalize_targets(params['targets']) if params.get('targets') else [],
                   working_directory=params.get('working_directory'), execution_timeout=params['execution_timeout'],
                   delivery_timeout=params.get('delivery_timeout'), max_concurrency=params.get('max_concurrency'),
                   max_errors=params.get('max_errors'), comment=params.get('comment'),
                   output_s3_bucket_name=params.get('output_s3_bucket_name'), output_s3_key_prefix=params.get('output_s3_key_prefix'),
                   output_s3_region=params.get('output_s3_region'), cloudwatch_output=bool(params.get('cloudwatch_output')),
                   cloudwatch_log_group_name=params.get('cloudwatch_log_group_name'))
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.document_name not in DOCUMENTS:
            raise ValidationError('document_name', f'{self.document_name!r} is not one of {", ".join(DOCUMENTS)}')
        if bool(self.instance_ids) == bool(self.targets):
            raise ValidationError('instance_ids', 'give instance_ids or targets (one of them, not both)')
        if len(self.instance_ids) > MAX_INSTANCE_IDS:
            raise ValidationError('instance_ids', f'{len(self.instance_ids)} instances given, at most {MAX_INSTANCE_IDS} are allowed',
                                  remedy='Use targets (tags) for larger fleets, or split the list over several tasks')
        bad = [i for i in self.instance_ids if not isinstance(i, str) or not _NODE_ID.match(i)]
        if bad:
            raise ValidationError('instance_ids', f'{bad[0]!r} is not an instance id (i- and 8 or 17 characters) or a managed '
                                  'node id (mi- and 17 hexadecimal digits)')
        low, high = EXECUTION_TIMEOUT_RANGE
        if not low <= self.execution_timeout <= high:
            raise ValidationError('execution_timeout', f'{self.execution_timeout} is outside {low}..{high} seconds',
                                  remedy='The agent runs a script with a timeout under 5 seconds for an hour instead')
        if self.delivery_timeout is not None and not DELIVERY_TIMEOUT_RANGE[0] <= self.delivery_timeout <= DELIVERY_TIMEOUT_RANGE[1]:
            raise ValidationError('delivery_timeout', f'{self.delivery_timeout} is outside {DELIVERY_TIMEOUT_RANGE[0]}..'
                                  f'{DELIVERY_TIMEOUT_RANGE[1]} seconds')
        if self.max_concurrency is not None and not MAX_CONCURRENCY_PATTERN.match(self.max_concurrency):
            raise ValidationError('max_concurrency', f'{self.max_concurrency!r} is not a count from 1 or a percentage from 1% to 100%')
        if self.max_errors is not None and not MAX_ERRORS_PATTERN.match(self.max_errors):
            raise ValidationError('max_errors', f'{self.max_errors!r} is not a count from 0 or a percentage from 0% to 100%')
        for name, value in (('max_concurrency', self.max_concurrency), ('max_errors', self.max_errors)):
            if value is not None and len(value) > 7:
                raise ValidationError(name, f'{value!r} is longer than 7 characters')
        if self.comment is not None and len(self.comment) > COMMENT_MAX:
            raise ValidationError('comment', f'{len(self.comment)} characters, at most {COMMENT_MAX} are allowed')
        if self.working_directory is not None and not self.working_directory.startswith(('/', '\\')) \
                and not re.match(r'^[A-Za-z]:[\\/]', self.working_directory):
            raise ValidationError('working_directory', f'{self.working_directory!r} is not an absolute path on the node',
                                  remedy='The agent runs a relative directory under its own download directory, or in '
                                         '/usr/bin when that does not exist')
        if self.output_s3_bucket_name is not None and not S3_BUCKET_RANGE[0] <= len(self.output_s3_bucket_name) <= S3_BUCKET_RANGE[1]:
            raise ValidationError('output_s3_bucket_name', f'an S3 bucket name has {S3_BUCKET_RANGE[0]} to {S3_BUCKET_RANGE[1]} characters')
        if self.output_s3_key_prefix is not None:
            if not self.output_s3_bucket_name:
                raise ValidationError('output_s3_key_prefix', 'it needs output_s3_bucket_name')
            if len(self.output_s3_key_prefix) > S3_PREFIX_MAX:
                raise ValidationError('output_s3_key_prefix', f'at most {S3_PREFIX_MAX} characters are allowed')
        if self.cloudwatch_log_group_name and not self.cloudwatch_output:
            raise ValidationError('cloudwatch_log_group_name', 'it needs cloudwatch_output=true')

    def send_command_kwargs(self) -> dict[str, t.Any]:
        parameters: dict[str, list[str]] = {'commands': self.commands, 'executionTimeout': [str(self.execution_timeout)]}
        if self.working_directory:
            parameters['workingDirectory'] = [self.working_directory]
        kwargs: dict[str, t.Any] = {'DocumentName': self.document_name, 'Parameters': parameters}
        if self.instance_ids:
            kwargs['InstanceIds'] = self.instance_ids
        else:
            kwargs['Targets'] = self.targets
        optional = {'TimeoutSeconds': self.delivery_timeout, 'MaxConcurrency': self.max_concurrency, 'MaxErrors': self.max_errors,
                    'Comment': self.comment, 'OutputS3BucketName': self.output_s3_bucket_name,
                    'OutputS3KeyPrefix': self.output_s3_key_prefix, 'OutputS3Region': self.output_s3_region}
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        if self.cloudwatch_output:
            config: dict[str, t.Any] = {'CloudWatchOutputEnabled': True}
            if self.cloudwatch_log_group_name:
                config['CloudWatchLogGroupName'] = self.cloudwatch_log_group_name
            kwargs['CloudWatchOutputConfig'] = config
        return kwargs

    def describe(self) -> str:
        """What would run, in words (check mode)."""
        where = (f'instances {", ".join(self.instance_ids)}' if self.instance_ids else
                 'the managed nodes matching ' + ' and '.join(f'{t["Key"]}={",".join(t["Values"])}' for t in self.targets))
        lines = len(self.commands)
        return (f'{self.document_name} with {lines} command line(s) on {where}, execution_timeout {self.execution_timeout} s'
                + (f', max_concurrency {self.max_concurrency}' if self.max_concurrency else '')
                + (f', max_errors {self.max_errors}' if self.max_errors else ''))


def send(client: t.Any, spec: CommandSpec, counter: ApiCounter) -> dict[str, t.Any]:
    """SendCommand: the Command the service answered (CommandId, Status...)."""
    return api_call(client, 'send_command', counter, **spec.send_command_kwargs())['Command']


def preview_targets(client: t.Any, spec: CommandSpec, counter: ApiCounter) -> list[dict[str, t.Any]]:
    """Check mode: the managed nodes the command would go to, from DescribeInstanceInformation (read only)."""
    if spec.instance_ids:
        filters = [{'Key': 'InstanceIds', 'Values': spec.instance_ids}]
    else:
        tag_targets = [t for t in spec.targets if t['Key'].startswith('tag:') or t['Key'] == 'tag-key']
        ids = [v for t in spec.targets if t['Key'] == 'InstanceIds' for v in t['Values']]
        filters = [{'Key': t['Key'], 'Values': t['Values']} for t in tag_targets]
        if ids and not tag_targets:
            filters = [{'Key': 'InstanceIds', 'Values': ids}]
    nodes: list[dict[str, t.Any]] = []
    token = None
    while True:
        kwargs: dict[str, t.Any] = {'Filters': filters, 'MaxResults': 50}
        if token:
            kwargs['NextToken'] = token
        page = api_call(client, 'describe_instance_information', counter, **kwargs)
        nodes += page.get('InstanceInformationList', [])
        token = page.get('NextToken')
        if not token:
            break
    return [{'instance_id': n.get('InstanceId'), 'ping_status': n.get('PingStatus'), 'platform_type': n.get('PlatformType'),
             'resource_type': n.get('ResourceType')} for n in nodes]


# --------------------------------------------------------------------------- results


def truncated(text: str, limit: int) -> bool:
    """Whether SSM cut this stream: it then ends with the agent's suffix and holds about the limit (the agent counts bytes,
    the reference characters; the smallest limit anyone applies is 8,000)."""
    return text.endswith(TRUNCATED_SUFFIX) and max(len(text), len(text.encode('utf-8'))) >= min(limit, STDERR_LIMIT) - 8


def _code(value: t.Any) -> int | None:
    if value is None or value == '':
        return None
    try:
        code = int(value)
    except (TypeError, ValueError):
        return None
    # -1: the command has not started or was not received (API reference, ResponseCode).
    return None if code == -1 else code


@dataclass
class InvocationResult:
    """One node's result."""

    instance_id: str
    command_id: str
    status: str
    status_details: str
    instance_name: str | None = None
    exit_code: int | None = None
    stdout: str = ''
    stderr: str = ''
    stdout_url: str | None = None
    stderr_url: str | None = None
    start_time: str | None = None
    finish_time: str | None = None
    plugin_output: str = ''
    fetched: bool = False

    @classmethod
    def from_listing(cls, item: t.Mapping[str, t.Any]) -> 'InvocationResult':
        plugins = item.get('CommandPlugins') or [{}]
        plugin = plugins[0]
        result = cls(instance_id=item['InstanceId'], command_id=item['CommandId'], status=item.get('Status') or 'Pending',
                     status_details=item.get('StatusDetails') or item.get('Status') or 'Pending',
                     instance_name=item.get('InstanceName') or None, exit_code=_code(plugin.get('ResponseCode')),
                     stdout_url=item.get('StandardOutputUrl') or plugin.get('StandardOutputUrl') or None,
                     stderr_url=item.get('StandardErrorUrl') or plugin.get('StandardErrorUrl') or None,
                     plugin_output=plugin.get('Output') or '')
        start, finish = plugin.get('ResponseStartDateTime'), plugin.get('ResponseFinishDateTime')
        result.start_time = start.isoformat() if hasattr(start, 'isoformat') else (start or None)
        result.finish_time = finish.isoformat() if hasattr(finish, 'isoformat') else (finish or None)
        return result

    def update_from_get(self, answer: t.Mapping[str, t.Any]) -> None:
        """The full answer of GetCommandInvocation: the output SSM keeps, the exit code, the final status."""
        self.status = answer.get('Status') or self.status
        self.status_details = answer.get('StatusDetails') or self.status_details
        self.exit_code = _code(answer.get('ResponseCode'))
        self.stdout = answer.get('StandardOutputContent') or ''
        self.stderr = answer.get('StandardErrorContent') or ''
        self.stdout_url = answer.get('StandardOutputUrl') or self.stdout_url
        self.stderr_url = answer.get('StandardErrorUrl') or self.stderr_url
        self.start_time = answer.get('ExecutionStartDateTime') or self.start_time
        self.finish_time = answer.get('ExecutionEndDateTime') or self.finish_time
        self.fetched = True

    @property
    def final(self) -> bool:
        return self.status_details in FINAL_DETAILS or self.status in FINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == 'Success'

    @property
    def stdout_truncated(self) -> bool:
        return truncated(self.stdout, STDOUT_LIMIT)

    @property
    def stderr_truncated(self) -> bool:
        return truncated(self.stderr, STDERR_LIMIT)

    @property
    def error_info(self) -> str | None:
        if self.succeeded:
            return None
        return DETAIL_HINTS.get(self.status_details) or None

    def describe(self) -> str:
        parts = [self.status_details]
        if self.exit_code is not None and self.status_details == 'Failed':
            parts.append(f'exit code {self.exit_code}')
        hint = DETAIL_HINTS.get(self.status_details)
        if hint and self.status_details != 'Failed':
            parts.append(hint)
        return ', '.join(parts)

    def to_dict(self) -> dict[str, t.Any]:
        """The module's per-instance result: ali_ecs_command's fields, plus stdout/stderr apart and their truncation."""
        return {
            'instance_id': self.instance_id, 'instance_name': self.instance_name, 'command_id': self.command_id,
            'status': self.status, 'status_details': self.status_details, 'exit_code': self.exit_code, 'rc': self.exit_code,
            'stdout': self.stdout, 'stderr': self.stderr, 'output': self.stdout + self.stderr,
            'stdout_lines': self.stdout.splitlines(), 'stderr_lines': self.stderr.splitlines(),
            'truncated': {'stdout': self.stdout_truncated, 'stderr': self.stderr_truncated},
            'stdout_url': self.stdout_url, 'stderr_url': self.stderr_url,
            'error_code': None if self.succeeded else self.status_details, 'error_info': self.error_info,
            'start_time': self.start_time, 'finish_time': self.finish_time,
        }


class InvocationWatcher:
    """Polls a command's invocations: one ListCommandInvocations page per 50 nodes per round, then one
    GetCommandInvocation per node once it has ended."""

    def __init__(self, client: t.Any, command_id: str, counter: ApiCounter, expected: list[str] | None = None,
                 instance_id: str | None = None, read_output: bool = True) -> None:
        self.client = client
        self.command_id = command_id
        self.counter = counter
        self.expected = expected or []
        self.instance_id = instance_id
        self.read_output = read_output
        self.results: dict[str, InvocationResult] = {}
        self.command: dict[str, t.Any] = {}
        self.rounds = 0
        self.calls_per_round: list[int] = []

    def _list(self) -> int:
        calls = 0
        token = None
        while True:
            kwargs: dict[str, t.Any] = {'CommandId': self.command_id, 'Details': True, 'MaxResults': PAGE_SIZE}
            if self.instance_id:
                kwargs['InstanceId'] = self.instance_id
            if token:
                kwargs['NextToken'] = token
            calls += 1
            page = api_call(self.client, 'list_command_invocations', self.counter, **kwargs)
            for item in page.get('CommandInvocations', []):
                seen = InvocationResult.from_listing(item)
                known = self.results.get(seen.instance_id)
                if known is None or not known.fetched:
                    self.results[seen.instance_id] = seen
            token = page.get('NextToken')
            if not token:
                return calls

    def _fetch(self, result: InvocationResult) -> bool:
        try:
            answer = api_call(self.client, 'get_command_invocation', self.counter, CommandId=self.command_id,
                              InstanceId=result.instance_id)
        except CloudExecError as exc:
            if exc.code == 'InvocationDoesNotExist':
                return False  # not visible to this API yet (eventual consistency): next round
            raise
        result.update_from_get(answer)
        return True

    def read_command(self) -> dict[str, t.Any]:
        """ListCommands for this command (its Status and TargetCount), or {} while it is not visible."""
        answer = api_call(self.client, 'list_commands', self.counter, CommandId=self.command_id)
        commands = answer.get('Commands') or []
        self.command = commands[0] if commands else {}
        return self.command

    def refresh(self) -> int:
        """List the invocations, and read the output of those that ended since the last look; returns the calls made."""
        calls = self._list()
        for result in self.results.values():
            if result.final and not result.fetched and self.read_output:
                calls += 1
                self._fetch(result)
        return calls

    def probe(self) -> t.Any:
        """One poll round (the Poller calls this)."""
        self.rounds += 1
        before = sum(1 for r in self.results.values() if r.fetched)
        calls = self.refresh()
        settled = all(r.final and (r.fetched or not self.read_output) for r in self.results.values())
        finished = False
        if settled:
            if self.expected:
                finished = set(self.expected) <= set(self.results)
            elif self.instance_id:
                finished = bool(self.results)
            else:
                # Targets: only the command knows how many nodes matched (none at all is possible).
                calls += 1
                command = self.read_command()
                finished = bool(command) and command.get('Status') in FINAL_COMMAND_STATUSES \
                    and len(self.results) >= int(command.get('TargetCount') or 0)
        self.calls_per_round.append(calls)
        progressed = sum(1 for r in self.results.values() if r.fetched) > before
        return done(self.results) if finished else pending(self.results, progressed=progressed)

    def ordered(self) -> list[InvocationResult]:
        order = {instance_id: pos for pos, instance_id in enumerate(self.expected)}
        return sorted(self.results.values(), key=lambda r: (order.get(r.instance_id, len(order)), r.instance_id))


@dataclass
class RunOutcome:
    command_id: str
    results: list[InvocationResult] = field(default_factory=list)
    timed_out: bool = False
    cancel_error: str | None = None
    # The nodes that had not finished when wait_timeout passed.
    cut_short: list[str] = field(default_factory=list)
    cut_short_states: dict[str, str] = field(default_factory=dict)
    rounds: int = 0
    calls_per_round: list[int] = field(default_factory=list)
    command_status: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts

    @property
    def failed(self) -> list[InvocationResult]:
        return [r for r in self.results if not r.succeeded]

    @property
    def truncated(self) -> list[InvocationResult]:
        return [r for r in self.results if r.stdout_truncated or r.stderr_truncated]

    @property
    def unfinished(self) -> list[InvocationResult]:
        return [r for r in self.results if not r.final]


def cancel(client: t.Any, command_id: str, counter: ApiCounter) -> str | None:
    """CancelCommand; None when the service took it, else why not (reported, not raised)."""
    try:
        api_call(client, 'cancel_command', counter, CommandId=command_id)
    except CloudExecError as exc:
        return str(exc)
    return None


def wait_for(client: t.Any, command_id: str, wait_timeout: float, counter: ApiCounter, expected: list[str] | None = None,
             poller_factory: t.Callable[..., Poller] = Poller) -> RunOutcome:
    """Wait for every invocation within wait_timeout; on the deadline cancel the command and read where it stands."""
    outcome = RunOutcome(command_id=command_id)
    watcher = InvocationWatcher(client, command_id, counter, expected=expected)
    poller = poller_factory(wait_timeout, policy=SSM_COMMAND, what=f'the SSM command {command_id}')
    try:
        poller.wait(watcher.probe)
    except DeadlineExceeded:
        outcome.timed_out = True
        outcome.cut_short = [r.instance_id for r in watcher.ordered() if not r.final]
        outcome.cut_short_states = {r.instance_id: r.status_details for r in watcher.ordered() if not r.final}
        outcome.cancel_error = cancel(client, command_id, counter)
        # Invocations that had not started are Cancelled at once; the agent kills running ones (Cancelling, then
        # Cancelled): look again for a short while, so the results say where each one ended.
        settle = poller_factory(CANCEL_SETTLE_SECONDS, policy=SSM_COMMAND, what=f'the cancel of SSM command {command_id}')
        try:
            settle.wait(watcher.probe)
        except CloudExecError:
            pass
    outcome.rounds = watcher.rounds
    outcome.calls_per_round = watcher.calls_per_round
    outcome.results = watcher.ordered()
    if not watcher.command:
        # The command's own status (instance ids: the rounds never needed it); a failure here loses nothing else.
        try:
            watcher.read_command()
        except CloudExecError:
            pass
    outcome.command_status = watcher.command.get('Status') if watcher.command else None
    return outcome


def should_fail(outcome: RunOutcome, fail_on: str) -> bool:
    """As ali_ecs_command: any instance failed ('any'), every instance failed ('all'), never ('none')."""
    if fail_on not in FAIL_ON:
        raise ValidationError('fail_on', f'{fail_on!r} is not one of {", ".join(FAIL_ON)}')
    if fail_on == 'none' or not outcome.results:
        return False
    if fail_on == 'all':
        return len(outcome.failed) == len(outcome.results)
    return bool(outcome.failed)


def failure_message(outcome: RunOutcome, limit: int = 20) -> str:
    failed = outcome.failed
    named = '; '.join(f'{r.instance_id} ({r.describe()})' for r in failed[:limit])
    more = f'; and {len(failed) - limit} more' if len(failed) > limit else ''
    return f'The command failed on {len(failed)} of {len(outcome.results)} instances: {named}{more}'


def deadline_message(outcome: RunOutcome, wait_timeout: float) -> str:
    """What happened when wait_timeout passed: which nodes had not finished, that CancelCommand went out, and where
    each of them stands now."""
    parts = [f'The command {outcome.command_id} did not finish within wait_timeout ({wait_timeout:g} s)']
    if outcome.cut_short:
        def state(instance_id: str) -> str:
            details = outcome.cut_short_states.get(instance_id)
            hint = DETAIL_HINTS.get(details or '')
            return f'{instance_id} ({details}: {hint})' if hint else f'{instance_id} ({details})' if details else instance_id
        shown = ', '.join(state(i) for i in outcome.cut_short[:20]) + (' ...' if len(outcome.cut_short) > 20 else '')
        parts.append(f'it had not finished on {len(outcome.cut_short)} instance(s): {shown}')
    if outcome.cancel_error:
        parts.append(f'cancelling it failed ({outcome.cancel_error}); it may still be running')
    else:
        parts.append('CancelCommand was sent: invocations not yet delivered are cancelled, and the agent kills a running '
                     'script with its whole process group (AWS gives no guarantee that it stops)')
        now = {r.instance_id: r for r in outcome.results}
        states = [f'{i} {now[i].status_details}' for i in outcome.cut_short[:20] if i in now]
        if states:
            parts.append('now: ' + ', '.join(states))
        if outcome.unfinished:
            parts.append('check the others later with aws_ssm_command_info')
    return '; '.join(parts)


def truncation_warning(outcome: RunOutcome) -> str | None:
    cut = outcome.truncated
    if not cut:
        return None
    named = ', '.join(r.instance_id + ' (' + '/'.join(s for s, v in (('stdout', r.stdout_truncated), ('stderr', r.stderr_truncated)) if v)
                      + ')' for r in cut[:10]) + (' ...' if len(cut) > 10 else '')
    return (f'SSM truncated the output on {len(cut)} instance(s): {named}. Run Command keeps the first 24,000 characters '
            'of stdout and the first 8,000 (the API reference; the agent keeps 24,000) of stderr, ending them with '
            f'"{TRUNCATED_SUFFIX}" (results[].truncated says which stream). To get all of it, set output_s3_bucket_name '
            '(the whole output goes to S3: results[].stdout_url) or cloudwatch_output, or write it to a file on the node '
            'and fetch that file through the cloudexec.core.aws_ssm connection.')


def single_instance_fields(outcome: RunOutcome, with_rc: bool = True) -> dict[str, t.Any]:
    """With exactly one instance, its rc, stdout and stderr at the top of the result, as ansible.builtin.command has them.

    Ansible fails any task result whose rc is not 0, so with_rc=False (fail_on=none) leaves rc out: exit_code has it.
    """
    if len(outcome.results) != 1:
        return {}
    only = outcome.results[0].to_dict()
    keys = ('exit_code', 'stdout', 'stderr', 'stdout_lines', 'stderr_lines', 'truncated') + (('rc',) if with_rc else ())
    return {key: only[key] for key in keys}


def api_calls(counter: ApiCounter, outcome: RunOutcome | None = None) -> dict[str, t.Any]:
    calls: dict[str, t.Any] = {'calls': dict(counter.calls)}
    if outcome is not None:
        calls.update(poll_rounds=outcome.rounds, calls_per_round=outcome.calls_per_round)
    return calls


def command_summary(command: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The ListCommands entry of a command, in the module's words (no parameters: they may hold secrets)."""
    requested = command.get('RequestedDateTime')
    return {
        'command_id': command.get('CommandId'), 'status': command.get('Status'), 'status_details': command.get('StatusDetails'),
        'document_name': command.get('DocumentName'), 'comment': command.get('Comment') or None,
        'requested': requested.isoformat() if hasattr(requested, 'isoformat') else requested,
        'target_count': command.get('TargetCount'), 'completed_count': command.get('CompletedCount'),
        'error_count': command.get('ErrorCount'), 'delivery_timed_out_count': command.get('DeliveryTimedOutCount'),
        'max_concurrency': command.get('MaxConcurrency'), 'max_errors': command.get('MaxErrors'),
        'instance_ids': command.get('InstanceIds') or [], 'timeout_seconds': command.get('TimeoutSeconds'),
    }


def lookup(client: t.Any, command_id: str, counter: ApiCounter, instance_id: str | None = None,
           read_output: bool = True) -> tuple[dict[str, t.Any], list[InvocationResult]]:
    """A command and its invocations as they stand (aws_ssm_command_info): one ListCommands, the ListCommandInvocations
    pages, and GetCommandInvocation for each invocation that has ended."""
    watcher = InvocationWatcher(client, command_id, counter, instance_id=instance_id, read_output=read_output)
    command = watcher.read_command()
    if not command:
        raise CloudExecError(f'the command {command_id} was not found', code='InvalidCommandId', provider='cloudexec',
                             retryable=False, remedy=SSM_COMMAND_REMEDIES['InvalidCommandId'])
    watcher.refresh()
    return command, watcher.ordered()


def ssm_client(auth: aws.AwsAuth) -> t.Any:
    """The SSM client: boto3's own endpoint for SSM (AWS_ENDPOINT_URL_SSM...), not endpoint_url, which is ECS's."""
    return aws.aws_client(auth, 'ssm', use_endpoint_url=False)
