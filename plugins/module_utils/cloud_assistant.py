# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Alibaba Cloud Assistant (ECS API 2014-05-26): run scripts on instances and collect their results.

RunCommand / InvokeCommand take at most 100 instances per call, so targets go in batches, each its
own invocation. Results are polled through the shared Poller (module_utils/poll.py), never with a
sleep of our own, and one poll round costs one DescribeInvocations call per unfinished invocation
(its InvokeInstances list carries every instance's status), whatever the number of instances. Once an
invocation is over, its per-instance results (output included) are read once with
DescribeInvocationResults, 50 per page. Output comes back as Base64 and is decoded here.

Everything the service refuses is raised as CloudExecError with a remedy: the generic Alibaba codes
come from module_utils.alicloud, the Cloud Assistant ones from CLOUD_ASSISTANT_REMEDIES below.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import typing as t
import uuid
from dataclasses import dataclass, field

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud, exec_checks
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, DeadlineExceeded, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.poll import CLOUD_ASSISTANT_INVOCATIONS, Poller, done, pending


# Service limits (see the API reference and alibaba.md).
MAX_INSTANCES_PER_CALL = 100       # RunCommand / InvokeCommand InstanceId.N
MAX_STATUS_IDS = 50                # DescribeCloudAssistantStatus / StopInvocation InstanceId.N
MAX_DESCRIBE_INSTANCES = 100       # DescribeInstances InstanceIds / MaxResults
RESULTS_PAGE_SIZE = 50             # DescribeInvocationResults / DescribeInvocations MaxResults
# CommandContent after Base64 with the custom parameters substituted: 24 KB for RunCommand, 18 KB for a kept command
# (KeepCommand, CreateCommand) and for InvokeCommand (the ECS SDK's field docs of 2025 and the InvokeCommand reference).
CONTENT_LIMIT = 24 * 1024
KEPT_CONTENT_LIMIT = 18 * 1024
# The most output one execution keeps (the reference's "24 KB"). The agent keeps the start it sent while the script
# ran and the end, up to a quota the service sets (at least 12000 bytes on the agent), and drops the middle.
OUTPUT_LIMIT = 24 * 1024
TIMEOUT_RANGE = (1, 86400)
INVOKE_MIN_TIMEOUT = 10            # InvokeCommand: "at least 10 seconds"
CLIENT_TOKEN_MAX = 64
MAX_PARAMETER_VALUES = 10          # custom parameter values per call
MAX_PARAMETER_KEY = 64             # characters of a parameter name
MAX_DEFINED_PARAMETERS = 20        # {{name}} parameters one script may define
BUILTIN_PARAMETERS = ('acs::regionid', 'acs::accountid', 'acs::instanceid', 'acs::instancename', 'acs::invokeid', 'acs::commandid')
RATE_RANGE = (60, 7 * 86400)       # rate(...) schedules: 60 s to 7 days, and longer than the timeout
CRON_MIN_INTERVAL = 10             # cron schedules: runs at least 10 s (and the timeout) apart

COMMAND_TYPES = ('RunShellScript', 'RunBatScript', 'RunPowerShellScript')
# DryRun checks the parameters, the instances and their agent, and runs nothing.
REPEAT_MODES = ('Once', 'Period', 'NextRebootOnly', 'EveryReboot', 'DryRun')
SCHEDULED_MODES = ('Period', 'NextRebootOnly', 'EveryReboot')
FAIL_ON = ('any', 'all', 'none')
# DescribeInvocations InvokeStatus filter values (Finished: every instance is done, whatever its result).
INVOKE_STATUS_FILTERS = ('Running', 'Finished', 'Success', 'Failed', 'PartialFailed', 'Stopped', 'Stopping', 'Pending', 'Scheduled')

_PARAMETER = re.compile(r'\{\{\s*([^{}\s]+)\s*\}\}')
_PARAMETER_NAME = re.compile(r'^[A-Za-z0-9_-]+$')
_RATE = re.compile(r'^rate\s*\((\d+)\s*([smhd])\)$', re.IGNORECASE)
_RATE_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}
_AT = re.compile(r'^at\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?: ([A-Za-z_/+\-:0-9]+))?\)$')
_CONTAINER_ID = re.compile(r'^(?:(?:docker|containerd|cri-o)://)?[0-9a-fA-F]{64}$')
_CONTAINER_NAME = re.compile(r'^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$')

# Per-instance InvocationStatus values that will not change any more.
FINAL_STATUSES = frozenset(('Success', 'Failed', 'Error', 'Timeout', 'Cancelled', 'Terminated', 'Invalid', 'Aborted'))
# Per-instance statuses in which the script has not ended by itself, or never started: the service's ExitCode (0) means nothing.
# On Timeout the agent reports 1 of its own after killing the script (aliyun_assist_client agent/util/process/process.go).
NO_EXIT_CODE_STATUSES = frozenset(('Pending', 'Scheduled', 'Running', 'Stopping', 'Cancelled', 'Invalid', 'Aborted', 'Timeout'))
# Overall InvocationStatus values of a finished invocation.
FINAL_INVOCATION_STATUSES = frozenset(('Success', 'Failed', 'PartialFailed', 'Stopped'))

# How long a single API call may be retried when throttled (outside the result wait).
CALL_RETRY_SECONDS = 60.0

CLOUD_ASSISTANT_REMEDIES = {
    'MissingParam.InstanceId': 'Give at least one instance: instance_ids or tags',
    'InstanceIds.ExceedLimit': 'Send at most 100 instances per RunCommand/InvokeCommand call (this module batches by itself)',
    'InvalidInstance.NotFound': 'Check the instance ids and alicloud_region: the instance must exist in that region',
    'CmdContent.ExceedLimit': 'The script, with its parameters filled in, is larger than 24 KB after Base64 (18 KB for a kept '
                              'command or InvokeCommand): copy a script file to the instances first, or keep the script in an '
                              'OSS bucket and download it in a short command',
    'CmdContent.DecodeError': 'The command content is not valid Base64 text',
    'InvalidCmdType.NotFound': 'Use type RunShellScript (Linux), RunBatScript or RunPowerShellScript (Windows)',
    'InvalidTimeout.ExceedLimit': 'Set timeout between 1 and 86400 seconds (at least 10 with command_id)',
    'InvalidParameter.WorkingDir': 'working_dir must be an absolute path on the instance',
    'Parameter.Disabled': 'The command was created without custom parameters: drop parameters, or recreate it with EnableParameter',
    'Parameter.MissingValue': 'Give a value in parameters for every {{name}} in the script',
    'Parameter.Missing': 'Give a value in parameters for every {{name}} in the script',
    'Parameter.NotMatched': 'Give values only for the {{name}} parameters the script defines',
    'ParameterCount.ExceedLimit': 'Give at most 10 parameter values per run, and define at most 20 {{name}} parameters in a script',
    'ParameterKey.ExceedLimit': 'Parameter names are at most 64 characters',
    'ParameterKey.Duplicate': 'Parameter names are case-insensitive: give each one once',
    'ParameterType.NotSupported': 'Parameter values must be strings',
    'CmdParam.InvalidParamName': 'Name parameters with letters, digits, _ and - only; the acs:: prefix is kept for built-in parameters',
    'CmdParamName.ExceedLimit': 'Parameter names are at most 64 bytes',
    'IdempotentParameterMismatch': 'This client_token was already used for a different request: use a new client_token '
                                   'for a changed script or target list',
    'InvalidCmdId.NotFound': 'No such command in this region: check command_id (ali_ecs_invocation_info shows existing ones)',
    'InvalidCommandId.NotFound': 'No such command in this region: check command_id (ali_ecs_invocation_info shows existing ones)',
    'InvalidInvokeId.NotFound': 'No such invocation in this region: check the invoke id (the invoke_id an ali_ecs_command '
                                'task returned) and alicloud_region',
    'InvalidRepeatMode.NotFound': 'Use repeat_mode Once, Period, NextRebootOnly, EveryReboot or DryRun',
    'InvalidRepeatMode': 'Use repeat_mode Once, Period, NextRebootOnly, EveryReboot or DryRun',
    'MissingParam.Frequency': 'A Period repeat_mode needs a frequency, for example rate(5m) or a cron expression',
    'InvalidParam.Frequency': 'Use rate(<n><s|m|h|d>) between 60 s and 7 days and longer than timeout, at(yyyy-MM-dd HH:mm:ss '
                              '[timezone]), or a cron expression whose runs are at least 10 s and timeout apart',
    'InvalidContainerId.Malformed': 'container_id is the 64 hexadecimal characters of a container id, optionally with '
                                    'docker://, containerd:// or cri-o:// before it',
    'InvalidContainerName.Malformed': 'container_name must start with a letter or digit and hold only letters, digits, _ . and -',
    'InvalidInstance.NotMatch': 'Every instance must be Running, with a script type that fits its OS (RunShellScript for Linux); '
                                'the call fails for all when one does not: leave such instances out '
                                f'({exec_checks.ALI_EXEC_CHECK} shows why)',
    'ClientNeedUpgrade': 'Upgrade the Cloud Assistant agent on the instance',
    'Operation.Forbidden': 'The account may not run Cloud Assistant commands on this instance: check its RAM policies',
    'QuotaExceed.Command': 'The region holds too many kept commands: delete unused ones or set keep_command to false',
}

# What a per-instance ErrorCode means for the user.
INSTANCE_ERROR_HINTS = {
    'ExitCodeNonzero': 'the script exited with a non-zero code',
    'ExecutionTimeout': 'the script ran longer than its timeout and was killed',
    'InstanceNotRunning': 'the instance was not running',
    'ClientNotRunning': 'the Cloud Assistant agent is not running on the instance',
    'ClientNotResponse': 'the Cloud Assistant agent does not respond',
    'ClientIsUpgrading': 'the Cloud Assistant agent is upgrading',
    'ClientNeedUpgrade': 'the Cloud Assistant agent needs an upgrade',
    'DirectoryNotExists': 'working_dir does not exist on the instance',
    'AccountNotExists': 'the username does not exist on the instance',
    'CommandNotApplicable': 'the script type does not fit the instance OS',
    'DeliveryTimeout': 'the command could not be delivered in time',
    'ExecutionInterrupted': 'the script was stopped',
}


class ApiCounter:
    """Counts API calls by action, so results can say what a run cost."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def add(self, action: str) -> None:
        self.calls[action] = self.calls.get(action, 0) + 1


def models() -> t.Any:
    """The ECS SDK's request models (imported on first use: a connection's task worker never needs them)."""
    try:
        from alibabacloud_ecs20140526 import models as ecs_models  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise CloudExecError('alibabacloud-ecs20140526 is required on the controller', code='MissingDependency',
                             provider='cloudexec', remedy='pip install alibabacloud-ecs20140526') from None
    return ecs_models


def require_models() -> None:
    """Raise a clear error when the ECS SDK is missing."""
    models()


def with_remedy(error: CloudExecError) -> CloudExecError:
    """Add the Cloud Assistant remedy for the error's code when the generic table had none."""
    if error.remedy is None and error.code in CLOUD_ASSISTANT_REMEDIES:
        error.remedy = CLOUD_ASSISTANT_REMEDIES[error.code]
    return error


def api_call(client: t.Any, auth: alicloud.AlicloudAuth, method: str, request: t.Any, counter: ApiCounter | None = None) -> t.Any:
    """One ECS call (no retry): the response body, or CloudExecError with a remedy."""
    if counter is not None:
        counter.add(alicloud.action_name(method))
    try:
        return alicloud.call(client, method, request, auth)
    except CloudExecError as exc:
        raise with_remedy(exc) from None


def retried_call(client: t.Any, auth: alicloud.AlicloudAuth, method: str, request: t.Any, counter: ApiCounter | None = None,
                 poller_factory: t.Callable[..., Poller] = Poller) -> t.Any:
    """One ECS call, retried on throttling and transient errors for up to CALL_RETRY_SECONDS."""
    poller = poller_factory(CALL_RETRY_SECONDS, policy=CLOUD_ASSISTANT_INVOCATIONS, what=f'the {alicloud.action_name(method)} API call')
    return poller.call(lambda: api_call(client, auth, method, request, counter))


# --------------------------------------------------------------------------- request building


def encode_content(text: str, limit: int = CONTENT_LIMIT) -> str:
    """The script as Base64 (exact bytes, whatever characters it holds), within the service's limit."""
    encoded = base64.b64encode(text.encode('utf-8')).decode('ascii')
    if len(encoded) > limit:
        raise ValidationError('content', f'the script is {len(encoded)} bytes after Base64, above the limit of {limit}',
                              remedy=CLOUD_ASSISTANT_REMEDIES['CmdContent.ExceedLimit'])
    return encoded


def defined_parameters(content: str) -> list[str]:
    """The custom {{name}} parameters a script defines (case-insensitive, first spelling kept), checked as the service
    checks them: at most 20, names of letters, digits, _ and - up to 64 bytes, acs:: kept for the built-ins."""
    names: dict[str, str] = {}
    for name in _PARAMETER.findall(content):
        lowered = name.lower()
        if lowered.startswith('acs::'):
            if lowered not in BUILTIN_PARAMETERS:
                raise ValidationError('content', f'{{{{{name}}}}} is not a built-in parameter, and the acs:: prefix is kept for those',
                                      remedy=CLOUD_ASSISTANT_REMEDIES['CmdParam.InvalidParamName'])
            continue
        if len(name.encode('utf-8')) > MAX_PARAMETER_KEY or not _PARAMETER_NAME.match(name):
            raise ValidationError('content', f'{{{{{name[:70]}}}}} is not a valid parameter name (letters, digits, _ and -, at most '
                                  f'{MAX_PARAMETER_KEY} bytes)', remedy=CLOUD_ASSISTANT_REMEDIES['CmdParam.InvalidParamName'])
        names.setdefault(lowered, name)
    if len(names) > MAX_DEFINED_PARAMETERS:
        raise ValidationError('content', f'the script defines {len(names)} {{{{name}}}} parameters, more than the limit of '
                              f'{MAX_DEFINED_PARAMETERS}')
    return list(names.values())


def check_parameter_values(parameters: dict[str, t.Any]) -> None:
    """At most 10 values, names of 1 to 64 characters, each once in any case."""
    if len(parameters) > MAX_PARAMETER_VALUES:
        raise ValidationError('parameters', f'{len(parameters)} values are given, above the limit of {MAX_PARAMETER_VALUES} per run')
    seen: set[str] = set()
    for key in parameters:
        key = str(key)
        if not key or len(key) > MAX_PARAMETER_KEY:
            raise ValidationError('parameters', f'the name {key[:70]!r} must be 1 to {MAX_PARAMETER_KEY} characters')
        if key.lower() in seen:
            raise ValidationError('parameters', f'{key!r} is given twice (parameter names are case-insensitive)')
        seen.add(key.lower())


def substitute(content: str, parameters: dict[str, t.Any]) -> str:
    """The script as the service runs it: {{name}} replaced by its value (names are case-insensitive)."""
    values = {str(key).lower(): '' if value is None else str(value) for key, value in parameters.items()}
    return _PARAMETER.sub(lambda m: values.get(m.group(1).lower(), m.group(0)), content)


def rate_seconds(frequency: str) -> int | None:
    """The interval of a rate(...) frequency in seconds, or None when it is not one."""
    match = _RATE.match(frequency.strip())
    return int(match.group(1)) * _RATE_UNITS[match.group(2).lower()] if match else None


def _cron_values(text: str, low: int, high: int) -> list[int]:
    found: set[int] = set()
    for part in text.split(','):
        base, dummy, step_text = part.partition('/')
        step = int(step_text) if step_text else 1
        if base in ('*', '?'):
            first, last = low, high
        elif '-' in base:
            first, last = (int(x) for x in base.split('-', 1))
        else:
            first = int(base)
            last = high if step_text else first
        if step < 1 or not low <= first <= last <= high:
            raise ValueError(part)
        found.update(range(first, last + 1, step))
    return sorted(found)


def cron_min_interval(expression: str) -> int:
    """The shortest gap in seconds between two runs of a cron expression (`<sec> <min> <hour> <dom> <month> <dow> [<year>]
    [<timezone>]`), from its second, minute and hour fields; ValueError when they do not parse."""
    fields = expression.split()
    if not 6 <= len(fields) <= 8:
        raise ValueError(expression)
    times = sorted(h * 3600 + m * 60 + sec for h in _cron_values(fields[2], 0, 23) for m in _cron_values(fields[1], 0, 59)
                   for sec in _cron_values(fields[0], 0, 59))
    return min([b - a for a, b in zip(times, times[1:])] + [times[0] + 86400 - times[-1]])


def frequency_problem(frequency: str, timeout: int) -> str | None:
    """Why the service would refuse this schedule for a run of this timeout, or None."""
    rate = rate_seconds(frequency)
    if rate is not None:
        if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
            return f'{frequency} is {rate} s apart: rate() must be between {RATE_RANGE[0]} s and 7 days'
        if rate <= timeout:
            return f'{frequency} is {rate} s apart, not longer than timeout ({timeout} s)'
        return None
    at = _AT.match(frequency.strip())
    if at is not None:
        try:
            datetime.datetime.strptime(at.group(1), '%Y-%m-%d %H:%M:%S')
        except ValueError:
            return f'{frequency} does not hold a valid time (at(yyyy-MM-dd HH:mm:ss [timezone]))'
        return None
    try:
        interval = cron_min_interval(frequency)
    except ValueError:
        return f'{frequency!r} is none of rate(<n><s|m|h|d>), at(yyyy-MM-dd HH:mm:ss [timezone]) and a cron expression'
    if interval < max(CRON_MIN_INTERVAL, timeout):
        return (f'{frequency} runs {interval} s apart: cron runs must be at least {CRON_MIN_INTERVAL} s and timeout '
                f'({timeout} s) apart')
    return None


def check_container(container_id: str | None, container_name: str | None) -> None:
    """The container id and name as the service accepts them."""
    if container_id and not _CONTAINER_ID.match(container_id):
        raise ValidationError('container_id', f'{container_id!r} is not 64 hexadecimal characters with an optional docker://, '
                              'containerd:// or cri-o:// prefix')
    if container_name and not _CONTAINER_NAME.match(container_name):
        raise ValidationError('container_name', f'{container_name!r} is not a valid container name (a letter or digit, then letters, '
                              'digits, _ . and -)')


def batches(items: t.Sequence[str], size: int = MAX_INSTANCES_PER_CALL) -> list[list[str]]:
    """items in order, in lists of at most size."""
    return [list(items[start:start + size]) for start in range(0, len(items), size)]


def unique(items: t.Iterable[str]) -> list[str]:
    """items without repeats, first occurrence kept."""
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def new_client_token() -> str:
    """A fresh token: a retried RunCommand call (after a throttle or a lost answer) then runs nothing twice."""
    return f'cloudexec-{uuid.uuid4().hex}'


def batch_token(token: str, index: int, count: int) -> str:
    """The ClientToken of one batch: the user's token alone, or with the batch number when there are several.

    Each batch is a different request (other instances), so each needs its own token; derived ones stay
    stable, so a retried task with the same client_token and targets repeats none of its batches.
    """
    if count == 1:
        return token
    suffix = f'-b{index + 1:03d}'
    return token[:CLIENT_TOKEN_MAX - len(suffix)] + suffix


@dataclass
class RunSpec:
    """What to run and how: the module's options in the service's terms."""

    content: str | None = None
    command_type: str = 'RunShellScript'
    command_id: str | None = None
    working_dir: str | None = None
    timeout: int = 60
    username: str | None = None
    parameters: dict[str, t.Any] | None = None
    container_id: str | None = None
    container_name: str | None = None
    name: str | None = None
    description: str | None = None
    keep_command: bool = False
    client_token: str | None = None
    repeat_mode: str = 'Once'
    frequency: str | None = None

    @property
    def scheduled(self) -> bool:
        """True for runs the service starts later (no waiting for them)."""
        return self.repeat_mode in SCHEDULED_MODES

    @property
    def in_container(self) -> bool:
        return bool(self.container_id or self.container_name)

    @property
    def content_limit(self) -> int:
        """The service's limit for this run's content after Base64 (18 KB for a kept command)."""
        return KEPT_CONTENT_LIMIT if self.keep_command else CONTENT_LIMIT

    def validate(self) -> None:
        """Refuse what the service would refuse, before any call, naming the limit."""
        if (self.content is None) == (self.command_id is None):
            raise ValidationError('content', 'give exactly one of content and command_id')
        if self.parameters:
            check_parameter_values(self.parameters)
        if self.content is not None:
            if not self.content.strip():
                raise ValidationError('content', 'the script is empty')
            encode_content(self.content, self.content_limit)
            if self.parameters:
                defined = defined_parameters(self.content)
                lowered = {name.lower() for name in defined}
                extra = [str(key) for key in self.parameters if str(key).lower() not in lowered]
                if extra:
                    raise ValidationError('parameters', f'{", ".join(extra)} not defined as {{{{name}}}} in the script')
                given = {str(key).lower() for key in self.parameters}
                missing = [name for name in defined if name.lower() not in given]
                if missing:
                    raise ValidationError('parameters', f'no value for {", ".join(missing)}, used as {{{{name}}}} in the script')
                # The limit counts the script with its parameters filled in.
                size = len(base64.b64encode(substitute(self.content, self.parameters).encode('utf-8')))
                if size > self.content_limit:
                    raise ValidationError('parameters', f'the script with its parameters filled in is {size} bytes after Base64, '
                                          f'above the limit of {self.content_limit}',
                                          remedy=CLOUD_ASSISTANT_REMEDIES['CmdContent.ExceedLimit'])
        if self.command_type not in COMMAND_TYPES:
            raise ValidationError('type', f'{self.command_type!r} is not one of {", ".join(COMMAND_TYPES)}')
        low = INVOKE_MIN_TIMEOUT if self.command_id else TIMEOUT_RANGE[0]
        if not low <= self.timeout <= TIMEOUT_RANGE[1]:
            raise ValidationError('timeout', f'{self.timeout} is outside {low}..{TIMEOUT_RANGE[1]} seconds'
                                  + (' (InvokeCommand needs at least 10)' if self.command_id else ''))
        if self.repeat_mode not in REPEAT_MODES:
            raise ValidationError('repeat_mode', f'{self.repeat_mode!r} is not one of {", ".join(REPEAT_MODES)}')
        if self.repeat_mode == 'Period':
            if not self.frequency:
                raise ValidationError('frequency', 'repeat_mode Period needs a frequency, for example rate(5m)')
            problem = frequency_problem(self.frequency, self.timeout)
            if problem:
                raise ValidationError('frequency', problem, remedy=CLOUD_ASSISTANT_REMEDIES['InvalidParam.Frequency'])
        elif self.frequency:
            # The service would make any run with a Frequency periodic, whatever RepeatMode says.
            raise ValidationError('frequency', f'a frequency makes the run periodic: set repeat_mode Period with it, not {self.repeat_mode}')
        check_container(self.container_id, self.container_name)
        if self.in_container and self.working_dir:
            raise ValidationError('working_dir', 'Cloud Assistant ignores it in a container (container_id, container_name): '
                                  'change directory in the script instead')
        if self.in_container and self.username:
            raise ValidationError('username', 'Cloud Assistant ignores it in a container (container_id, container_name)')
        if self.client_token is not None and (not self.client_token or len(self.client_token) > CLIENT_TOKEN_MAX
                                              or not self.client_token.isascii()):
            raise ValidationError('client_token', f'it must be 1 to {CLIENT_TOKEN_MAX} ASCII characters')

    def common_fields(self, region: str, instance_ids: list[str], client_token: str) -> dict[str, t.Any]:
        """Request fields shared by RunCommand and InvokeCommand (SDK model keyword arguments)."""
        fields: dict[str, t.Any] = {'region_id': region, 'instance_id': list(instance_ids), 'client_token': client_token,
                                    'timeout': self.timeout, 'repeat_mode': self.repeat_mode}
        optional = {'working_dir': self.working_dir, 'username': self.username, 'container_id': self.container_id,
                    'container_name': self.container_name, 'frequency': self.frequency if self.repeat_mode == 'Period' else None}
        fields.update({key: value for key, value in optional.items() if value})
        if self.parameters:
            # The service takes string values; the SDK sends the map as one JSON string.
            fields['parameters'] = {str(key): '' if value is None else str(value) for key, value in self.parameters.items()}
        return fields

    def run_command_fields(self, region: str, instance_ids: list[str], client_token: str) -> dict[str, t.Any]:
        """RunCommandRequest keyword arguments for one batch."""
        fields = self.common_fields(region, instance_ids, client_token)
        fields.update(type=self.command_type, command_content=encode_content(self.content or '', self.content_limit),
                      content_encoding='Base64',
                      keep_command=self.keep_command, enable_parameter=bool(self.parameters))
        if self.name:
            fields['name'] = self.name
        if self.description:
            fields['description'] = self.description
        return fields

    def invoke_command_fields(self, region: str, instance_ids: list[str], client_token: str) -> dict[str, t.Any]:
        """InvokeCommandRequest keyword arguments for one batch."""
        fields = self.common_fields(region, instance_ids, client_token)
        fields['command_id'] = self.command_id
        return fields


# --------------------------------------------------------------------------- targets


@dataclass
class InstanceState:
    """An instance as the preflight saw it (what DescribeInstances and DescribeCloudAssistantStatus said)."""

    instance_id: str
    status: str | None = None
    os_type: str | None = None
    agent_online: bool | None = None
    last_heartbeat: str | None = None
    agent_version: str | None = None
    session_manager: bool | None = None

    @property
    def problem(self) -> str | None:
        """Why this instance cannot run a command now, or None."""
        for check in self.checks():
            if check.failed:
                return check.detail
        return None

    def checks(self, command_type: str | None = None) -> list[exec_checks.Check]:
        """The preflight checks this instance's data allows, in order; later ones only when the earlier passed."""
        found = [exec_checks.instance_exists(self.status)]
        if self.status is not None:
            found.append(exec_checks.instance_running(self.status))
            if self.status == 'Running':
                found.append(exec_checks.assistant_online(self.agent_online, self.last_heartbeat))
                if self.agent_online and command_type and self.os_type:
                    found.append(exec_checks.script_type_fits(self.os_type, command_type))
        return found


def instances_by_tags(client: t.Any, auth: alicloud.AlicloudAuth, tags: dict[str, t.Any], counter: ApiCounter | None = None,
                      poller_factory: t.Callable[..., Poller] = Poller) -> list[str]:
    """The ids of the Running instances carrying all these tags (a None value matches any value)."""
    require_models()
    tag_filter = [models().DescribeInstancesRequestTag(key=str(key), value=None if value is None else str(value))
                  for key, value in tags.items()]
    ids: list[str] = []
    token: str | None = None
    while True:
        request = models().DescribeInstancesRequest(region_id=auth.alicloud_region, tag=tag_filter, status='Running',
                                                    max_results=MAX_DESCRIBE_INSTANCES, next_token=token)
        body = retried_call(client, auth, 'describe_instances', request, counter, poller_factory)
        ids += [i.instance_id for i in (body.instances.instance if body.instances else None) or []]
        token = body.next_token
        if not token:
            return unique(ids)


def check_targets(client: t.Any, auth: alicloud.AlicloudAuth, instance_ids: list[str], counter: ApiCounter | None = None,
                  poller_factory: t.Callable[..., Poller] = Poller) -> list[InstanceState]:
    """Each instance's existence, status, OS and Cloud Assistant agent state (batched: 100 / 50 per call)."""
    require_models()
    targets = {instance_id: InstanceState(instance_id) for instance_id in instance_ids}
    for chunk in batches(instance_ids, MAX_DESCRIBE_INSTANCES):
        request = models().DescribeInstancesRequest(region_id=auth.alicloud_region, instance_ids=json.dumps(chunk),
                                                    max_results=MAX_DESCRIBE_INSTANCES)
        body = retried_call(client, auth, 'describe_instances', request, counter, poller_factory)
        for instance in (body.instances.instance if body.instances else None) or []:
            if instance.instance_id in targets:
                targets[instance.instance_id].status = instance.status
                targets[instance.instance_id].os_type = (instance.ostype or '').lower() or None
    running = [i for i in instance_ids if targets[i].status == 'Running']
    for chunk in batches(running, MAX_STATUS_IDS):
        # MaxResults is ignored with InstanceId.N by the service; it is set anyway so a strict endpoint pages nothing away.
        request = models().DescribeCloudAssistantStatusRequest(region_id=auth.alicloud_region, instance_id=chunk,
                                                               max_results=MAX_STATUS_IDS)
        body = retried_call(client, auth, 'describe_cloud_assistant_status', request, counter, poller_factory)
        status_set = body.instance_cloud_assistant_status_set
        for agent in (status_set.instance_cloud_assistant_status if status_set else None) or []:
            if agent.instance_id in targets:
                # The service answers the STRING "true"/"false".
                targets[agent.instance_id].agent_online = str(agent.cloud_assistant_status).lower() == 'true'
                targets[agent.instance_id].last_heartbeat = agent.last_heartbeat_time
                targets[agent.instance_id].agent_version = agent.cloud_assistant_version
                targets[agent.instance_id].session_manager = agent.support_session_manager
    return [targets[i] for i in instance_ids]


def target_failures(targets: list[InstanceState], command_type: str | None = None) -> dict[str, exec_checks.Check]:
    """instance id -> the first failed check of each instance that cannot run this command; empty when all can."""
    failures = {}
    for target in targets:
        bad = next((check for check in target.checks(command_type) if check.failed), None)
        if bad is not None:
            failures[target.instance_id] = bad
    return failures


def target_problems(targets: list[InstanceState], command_type: str | None = None) -> dict[str, str]:
    """instance id -> why it cannot run this command; empty when all can."""
    return {instance_id: check.detail for instance_id, check in target_failures(targets, command_type).items()}


def _wrong_os_remedy(instance_ids: list[str], command_type: str | None) -> str:
    shown = ', '.join(instance_ids[:20]) + (f' and {len(instance_ids) - 20} more' if len(instance_ids) > 20 else '')
    if command_type == 'RunShellScript':
        return (f'{shown} run Windows, where RunShellScript does not run: give them a PowerShell script with type '
                'RunPowerShellScript (or a Bat script with type RunBatScript) in a task of their own; the ali_ecs inventory '
                'puts them in the group os_windows')
    return (f'{shown} run Linux, where {command_type or "this script type"} does not run: give them a shell script with type '
            'RunShellScript in a task of their own; the ali_ecs inventory puts them in the group os_linux')


def targets_error(problems: t.Mapping[str, exec_checks.Check | str], total: int, command_type: str | None = None) -> CloudExecError:
    """One error naming every instance that cannot run the command (nothing has run), with the remedy for each kind."""
    details = {i: p.detail if isinstance(p, exec_checks.Check) else p for i, p in problems.items()}
    listed = '; '.join(f'{instance_id}: {why}' for instance_id, why in list(details.items())[:20])
    more = f'; and {len(details) - 20} more' if len(details) > 20 else ''
    wrong_os = [i for i, p in problems.items() if isinstance(p, exec_checks.Check) and p.code == 'CommandNotApplicable']
    remedies = []
    if len(wrong_os) < len(problems):
        remedies.append('Start the instances, bring their Cloud Assistant agent online (DescribeCloudAssistantStatus '
                        f'must say true), or leave them out of instance_ids; {exec_checks.ALI_EXEC_CHECK} (service ecs) '
                        'lists every check with its remedy')
    if wrong_os:
        remedies.append(_wrong_os_remedy(wrong_os, command_type))
    return CloudExecError(f'{len(problems)} of {total} target instances cannot run Cloud Assistant commands, so nothing was run '
                          f'({listed}{more})', code='TargetsUnavailable', provider='cloudexec', retryable=False,
                          remedy='. '.join(remedies))


# --------------------------------------------------------------------------- starting


@dataclass
class Started:
    """One batch's invocation."""

    invoke_id: str
    command_id: str | None
    instance_ids: list[str]


def start(client: t.Any, auth: alicloud.AlicloudAuth, spec: RunSpec, instance_ids: list[str], counter: ApiCounter | None = None,
          poller_factory: t.Callable[..., Poller] = Poller) -> list[Started]:
    """Run (or invoke) the command on every instance, one call per batch of 100."""
    require_models()
    token = spec.client_token or new_client_token()
    groups = batches(instance_ids)
    started = []
    for index, group in enumerate(groups):
        batch = batch_token(token, index, len(groups))
        if spec.command_id:
            request = models().InvokeCommandRequest(**spec.invoke_command_fields(auth.alicloud_region, group, batch))
            body = retried_call(client, auth, 'invoke_command', request, counter, poller_factory)
            started.append(Started(body.invoke_id, spec.command_id, group))
        else:
            request = models().RunCommandRequest(**spec.run_command_fields(auth.alicloud_region, group, batch))
            # Retrying is safe: the ClientToken makes a repeated call return the first call's invocation.
            body = retried_call(client, auth, 'run_command', request, counter, poller_factory)
            started.append(Started(body.invoke_id, body.command_id, group))
    return started


# --------------------------------------------------------------------------- results


def decode_output(output: str | None, encoded: bool = True) -> str:
    """Service output as text: Base64 decoded, then UTF-8 with undecodable bytes replaced."""
    if not output:
        return ''
    if not encoded:
        return output
    try:
        raw = base64.b64decode(output)
    except ValueError:
        return output
    return raw.decode('utf-8', errors='replace')


def exit_code_of(status: str, exit_code: t.Any, error_code: str | None) -> int | None:
    """The script's own exit code, or None where the service's ExitCode is only a placeholder (0)."""
    if exit_code is None or exit_code == '' or status in NO_EXIT_CODE_STATUSES:
        return None
    code = int(exit_code)
    if status == 'Success' or error_code == 'ExitCodeNonzero':
        return code
    # Failed, Error, Timeout, Terminated for another reason (agent down, stopped, killed): a 0 did not come from the script.
    return code or None


def _raw_size(output: str | None, encoded: bool) -> int:
    """The bytes of the output as the service kept them."""
    if not output:
        return 0
    if not encoded:
        return len(output.encode('utf-8'))
    try:
        return len(base64.b64decode(output))
    except ValueError:
        return len(output)


@dataclass
class InstanceResult:
    """One instance's result of an invocation, decoded."""

    instance_id: str
    invoke_id: str
    status: str
    command_id: str | None = None
    exit_code: int | None = None
    output: str = ''
    dropped: int = 0
    error_code: str | None = None
    error_info: str | None = None
    start_time: str | None = None
    finish_time: str | None = None
    stop_time: str | None = None
    repeats: int = 0
    username: str | None = None
    container_id: str | None = None
    container_name: str | None = None
    output_bytes: int = 0

    @classmethod
    def from_sdk(cls, item: t.Any, encoded: bool = True) -> 'InstanceResult':
        """From a DescribeInvocationResults InvocationResult."""
        status = item.invocation_status or 'Unknown'
        return cls(instance_id=item.instance_id, invoke_id=item.invoke_id, status=status, command_id=item.command_id or None,
                   exit_code=exit_code_of(status, item.exit_code, item.error_code or None), output=decode_output(item.output, encoded),
                   output_bytes=_raw_size(item.output, encoded),
                   dropped=int(item.dropped or 0), error_code=item.error_code or None, error_info=item.error_info or None,
                   start_time=item.start_time or None, finish_time=item.finished_time or None, stop_time=item.stop_time or None,
                   repeats=int(item.repeats or 0), username=item.username or None, container_id=item.container_id or None,
                   container_name=item.container_name or None)

    @property
    def finished(self) -> bool:
        """Whether the status is final."""
        return self.status in FINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """Whether this instance ran the script successfully."""
        return self.status == 'Success'

    def describe(self) -> str:
        """A short account of a failure for messages."""
        parts = [self.status]
        if self.exit_code not in (None, 0) and self.status in ('Failed', 'Timeout', 'Terminated'):
            parts.append(f'exit code {self.exit_code}')
        if self.error_code and self.error_code != 'ExitCodeNonzero':
            hint = INSTANCE_ERROR_HINTS.get(self.error_code)
            parts.append(f'{self.error_code}: {hint}' if hint else self.error_code)
        return ', '.join(parts)

    @property
    def output_cut(self) -> dict[str, t.Any] | None:
        """Which part of the output the service dropped, or None when it is whole.

        The agent (aliyun_assist_client agent/taskengine/basetask.go) sends the start of the output while the script
        runs, up to about 6-8 KB (nothing for a run under a second, a scheduled run or a container), then the end of
        the rest up to its quota: what is missing is always the middle, between the two.
        """
        if not self.dropped:
            return None
        return {'kept_bytes': self.output_bytes, 'dropped_bytes': self.dropped, 'missing': 'middle',
                'kept': 'the start sent while the script ran (up to about 8 KB, none for runs under a second) and the end'}

    def to_dict(self) -> dict[str, t.Any]:
        """The module's per-instance result."""
        return {
            'instance_id': self.instance_id, 'invoke_id': self.invoke_id, 'command_id': self.command_id, 'status': self.status,
            'exit_code': self.exit_code, 'output': self.output, 'dropped': self.dropped, 'output_cut': self.output_cut,
            'error_code': self.error_code,
            'error_info': self.error_info, 'start_time': self.start_time, 'finish_time': self.finish_time,
            'stop_time': self.stop_time, 'repeats': self.repeats, 'username': self.username,
            'container_id': self.container_id, 'container_name': self.container_name,
        }


def fetch_results(client: t.Any, auth: alicloud.AlicloudAuth, *, invoke_id: str | None = None, instance_id: str | None = None,
                  command_id: str | None = None, counter: ApiCounter | None = None,
                  poller_factory: t.Callable[..., Poller] = Poller) -> list[InstanceResult]:
    """Every per-instance result matching the filters, paged to the end (50 a page), output decoded."""
    require_models()
    results: list[InstanceResult] = []
    token: str | None = None
    while True:
        request = models().DescribeInvocationResultsRequest(region_id=auth.alicloud_region, invoke_id=invoke_id, instance_id=instance_id,
                                                            command_id=command_id, content_encoding='Base64',
                                                            max_results=RESULTS_PAGE_SIZE, next_token=token)
        body = retried_call(client, auth, 'describe_invocation_results', request, counter, poller_factory)
        page = body.invocation
        items = (page.invocation_results.invocation_result if page and page.invocation_results else None) or []
        results += [InstanceResult.from_sdk(item) for item in items]
        token = page.next_token if page else None
        if not token:
            return results


def describe_invocations(client: t.Any, auth: alicloud.AlicloudAuth, filters: dict[str, t.Any], counter: ApiCounter | None = None,
                         poller_factory: t.Callable[..., Poller] = Poller, limit: int | None = None) -> list[t.Any]:
    """DescribeInvocations items (SDK objects, without output) matching the filters, newest first, to the end or to limit.

    The service lists scheduled invocations that are still active only with Timed=true, and the others (Once, and every
    finished one) only with its default Timed=false (ECS SDK field docs): both are asked, unless the one invocation asked
    for by id is found in the first.
    """
    require_models()
    found: dict[str, t.Any] = {}
    for timed in (False, True):
        if timed and filters.get('invoke_id') and found:
            break
        token: str | None = None
        fetched = 0
        while True:
            request = models().DescribeInvocationsRequest(region_id=auth.alicloud_region, include_output=False, timed=timed,
                                                          max_results=RESULTS_PAGE_SIZE, next_token=token,
                                                          **{k: v for k, v in filters.items() if v is not None})
            body = retried_call(client, auth, 'describe_invocations', request, counter, poller_factory)
            items = (body.invocations.invocation if body.invocations else None) or []
            for item in items:
                found.setdefault(item.invoke_id, item)
            fetched += len(items)
            token = body.next_token
            if not token or (limit is not None and fetched >= limit):
                break
    ordered = sorted(found.values(), key=lambda item: item.creation_time or '', reverse=True)
    return ordered[:limit] if limit is not None else ordered


def lookup_invocations(client: t.Any, auth: alicloud.AlicloudAuth, filters: dict[str, t.Any], counter: ApiCounter | None = None,
                       poller_factory: t.Callable[..., Poller] = Poller, limit: int | None = None) -> list[t.Any]:
    """describe_invocations, where an invoke_id that does not exist in the region is an error (InvalidInvokeId.NotFound).

    The service answers an empty list for an unknown InvokeId. With other filters too, an empty answer may only mean
    that the invocation does not match them: one more call, by invoke id alone, tells the two apart.
    """
    found = describe_invocations(client, auth, filters, counter, poller_factory, limit=limit)
    invoke_id = filters.get('invoke_id')
    if found or not invoke_id:
        return found
    others = any(value is not None for key, value in filters.items() if key != 'invoke_id')
    if others and describe_invocations(client, auth, {'invoke_id': invoke_id}, counter, poller_factory, limit=1):
        return found
    raise CloudExecError(f'the invocation {invoke_id} was not found in region {auth.alicloud_region}', code='InvalidInvokeId.NotFound',
                         provider='cloudexec', retryable=False, remedy=CLOUD_ASSISTANT_REMEDIES['InvalidInvokeId.NotFound'])


class InvocationWatcher:
    """Waits for invocations to finish: one DescribeInvocations call per unfinished invocation per round."""

    def __init__(self, client: t.Any, auth: alicloud.AlicloudAuth, invoke_ids: list[str], counter: ApiCounter | None = None) -> None:
        self.client = client
        self.auth = auth
        self.statuses: dict[str, str] = {invoke_id: 'Pending' for invoke_id in invoke_ids}
        self.instance_statuses: dict[str, dict[str, str]] = {invoke_id: {} for invoke_id in invoke_ids}
        self.counter = counter or ApiCounter()
        self.rounds = 0
        self.calls_per_round: list[int] = []

    @property
    def unfinished(self) -> list[str]:
        """Invocations that are not over yet."""
        return [invoke_id for invoke_id, status in self.statuses.items() if status not in FINAL_INVOCATION_STATUSES]

    def probe(self) -> t.Any:
        """One poll round (the Poller calls this)."""
        require_models()
        self.rounds += 1
        calls = 0
        for invoke_id in self.unfinished:
            request = models().DescribeInvocationsRequest(region_id=self.auth.alicloud_region, invoke_id=invoke_id,
                                                          include_output=False, max_results=1)
            calls += 1
            body = api_call(self.client, self.auth, 'describe_invocations', request, self.counter)
            items = (body.invocations.invocation if body.invocations else None) or []
            if not items:
                continue  # not visible yet right after RunCommand: ask again next round
            item = items[0]
            self.statuses[invoke_id] = item.invocation_status or 'Pending'
            instances = (item.invoke_instances.invoke_instance if item.invoke_instances else None) or []
            self.instance_statuses[invoke_id] = {i.instance_id: i.invocation_status for i in instances}
        self.calls_per_round.append(calls)
        return done(self.statuses) if not self.unfinished else pending(self.statuses)

    def unfinished_instances(self) -> dict[str, list[str]]:
        """invoke id -> instances whose last seen status is not final."""
        return {invoke_id: [i for i, status in statuses.items() if status not in FINAL_STATUSES]
                for invoke_id, statuses in self.instance_statuses.items() if invoke_id in self.unfinished}


def stop(client: t.Any, auth: alicloud.AlicloudAuth, invoke_id: str, counter: ApiCounter | None = None,
         poller_factory: t.Callable[..., Poller] = Poller) -> str | None:
    """Stop an invocation; returns None when stopped, else why not (the caller reports it, it does not raise)."""
    require_models()
    request = models().StopInvocationRequest(region_id=auth.alicloud_region, invoke_id=invoke_id)
    try:
        retried_call(client, auth, 'stop_invocation', request, counter, poller_factory)
    except CloudExecError as exc:
        return str(exc)
    return None


@dataclass
class RunOutcome:
    """Everything a run produced, for the module's result."""

    started: list[Started]
    results: list[InstanceResult] = field(default_factory=list)
    timed_out: bool = False
    stop_errors: dict[str, str] = field(default_factory=dict)
    unfinished: dict[str, list[str]] = field(default_factory=dict)
    rounds: int = 0
    calls_per_round: list[int] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Instances per status."""
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts

    @property
    def failed(self) -> list[InstanceResult]:
        """Instances that did not succeed."""
        return [r for r in self.results if not r.succeeded]

    @property
    def dropped(self) -> list[InstanceResult]:
        """Instances whose output the service cut."""
        return [r for r in self.results if r.dropped]


def wait_for(client: t.Any, auth: alicloud.AlicloudAuth, started: list[Started], wait_timeout: float, counter: ApiCounter | None = None,
             poller_factory: t.Callable[..., Poller] = Poller) -> RunOutcome:
    """Wait for every invocation within wait_timeout, then read all results; on the deadline stop what still runs."""
    counter = counter or ApiCounter()
    outcome = RunOutcome(started=started)
    watcher = InvocationWatcher(client, auth, [s.invoke_id for s in started], counter)
    poller = poller_factory(wait_timeout, policy=CLOUD_ASSISTANT_INVOCATIONS, what='the Cloud Assistant command')
    try:
        poller.wait(watcher.probe)
    except DeadlineExceeded:
        outcome.timed_out = True
        outcome.unfinished = watcher.unfinished_instances()
        for invoke_id in watcher.unfinished:
            problem = stop(client, auth, invoke_id, counter, poller_factory)
            if problem:
                outcome.stop_errors[invoke_id] = problem
    outcome.rounds = watcher.rounds
    outcome.calls_per_round = watcher.calls_per_round
    order = {instance_id: pos for pos, instance_id in enumerate(i for s in started for i in s.instance_ids)}
    for item in started:
        outcome.results += fetch_results(client, auth, invoke_id=item.invoke_id, counter=counter, poller_factory=poller_factory)
    outcome.results.sort(key=lambda r: order.get(r.instance_id, len(order)))
    return outcome


def should_fail(outcome: RunOutcome, fail_on: str) -> bool:
    """Whether the task fails: any instance failed ('any'), every instance failed ('all'), or never ('none')."""
    if fail_on not in FAIL_ON:
        raise ValidationError('fail_on', f'{fail_on!r} is not one of {", ".join(FAIL_ON)}')
    failed = outcome.failed
    if fail_on == 'none' or not outcome.results:
        return False
    if fail_on == 'all':
        return len(failed) == len(outcome.results)
    return bool(failed)


def failure_message(outcome: RunOutcome, limit: int = 20) -> str:
    """A message naming the failed instances (the first `limit`) and why."""
    failed = outcome.failed
    named = '; '.join(f'{r.instance_id} ({r.describe()})' for r in failed[:limit])
    more = f'; and {len(failed) - limit} more' if len(failed) > limit else ''
    return f'The command failed on {len(failed)} of {len(outcome.results)} instances: {named}{more}'


def deadline_message(outcome: RunOutcome, wait_timeout: float) -> str:
    """What happened when wait_timeout passed, saying no more than is known."""
    still = [i for ids in outcome.unfinished.values() for i in ids]
    stopped = [invoke_id for invoke_id in outcome.unfinished if invoke_id not in outcome.stop_errors]
    parts = [f'The command did not finish within wait_timeout ({wait_timeout:g} s)']
    if still:
        shown = ', '.join(still[:20]) + (f' and {len(still) - 20} more' if len(still) > 20 else '')
        parts.append(f'it had not finished on {len(still)} instance(s): {shown}')
    if stopped:
        # StopInvocation cancels runs that have not started; Alibaba's reference says it does not interrupt started ones,
        # and the agent kills only a started script's main process: its children may go on either way.
        parts.append(f'StopInvocation was sent for {", ".join(stopped)}: runs that had not started are cancelled, but a run that '
                     'had started may still be running (or, where the agent killed its main process, the processes it started); '
                     'see results[].status and check with ali_ecs_invocation_info')
    for invoke_id, problem in outcome.stop_errors.items():
        parts.append(f'stopping {invoke_id} failed ({problem}); it may still be running')
    return '; '.join(parts)


def dropped_warning(outcome: RunOutcome) -> str | None:
    """A loud warning when the service cut output: which part is missing, and how to get all of it."""
    cut = outcome.dropped
    if not cut:
        return None
    named = ', '.join(f'{r.instance_id} ({r.dropped} bytes)' for r in cut[:10]) + (' ...' if len(cut) > 10 else '')
    return (f'Cloud Assistant dropped the middle of the output on {len(cut)} instance(s): {named}. It keeps the start the '
            'agent sent while the script ran (up to about 8 KB; none for runs under a second) and the end, up to its quota '
            f'(12 to {OUTPUT_LIMIT // 1024} KB), and results[].output_cut says how much of each is missing. To get all of '
            'it, write the output to a file in the script (for example "cmd > /var/tmp/out.log 2>&1"), then fetch the file '
            'with the cloudexec.core.ali_assist connection (ansible.builtin.fetch, which pages it back whole), or read it '
            'in parts of under 8 KB with further tasks ("tail -c +1 /var/tmp/out.log | head -c 8000", then '
            '"tail -c +8001 ..."); or have Cloud Assistant deliver the whole output to an OSS bucket (OssOutputDelivery).')
