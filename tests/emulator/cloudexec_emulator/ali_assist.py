# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alibaba Cloud Assistant (ECS 2014-05-26): commands, invocations and file pushes run in instance sandboxes.

The actions register into :data:`ali_ecs.ACTIONS`. An invocation runs one asyncio task per instance:
Pending (delivery), then the agent is checked as the service does when it hands the task over (an offline
agent gives ``Aborted`` with ``ClientNotRunning``: the API call itself succeeds), then the script runs as a
real process in the instance's sandbox, the way the Cloud Assistant agent runs it (aliyun_assist_client,
read at 2.2.3.578; /work/research/issue9-alibaba.md section A):

- ``sh -c <script file>`` in a process group of its own, stdout and stderr in one buffer (agent/util/process,
  agent/taskengine/host/processor.go);
- output reported as the agent reports it (:class:`OutputReport`, agent/taskengine/basetask.go): a head streamed
  while the script runs, then the tail of the rest up to the quota, the middle counted in ``Dropped``;
- on timeout and on StopInvocation only the main process is killed (SIGKILL), after a normal finish nothing is:
  background children live on (agent/util/process/process.go);
- exit codes as the agent reports them: 1 on timeout, 0 when stopped, -1 for a death by signal.

Requests are checked as the API reference says (section B): content size after parameter substitution,
custom parameters, schedules, containers, and instances that cannot run the command (``InvalidInstance.NotMatch``).
Each check names its source where it is defined.

What the emulator cannot do, and does instead (see README "Cloud Assistant"):
- Username is recorded and returned but the process runs as the emulator's user.
- Windows instances: RunBatScript/RunPowerShellScript content runs under ``sh`` (so only portable
  one-liners such as ``echo`` behave).
- Containers (ContainerId/ContainerName) get a sub-sandbox per container, created on first use.
- RepeatMode Period runs ``rate(...)`` frequencies on a timer; cron and ``at(...)`` are checked and
  accepted and stay Scheduled without running; NextRebootOnly/EveryReboot stay Scheduled.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import hashlib
import json
import os
import re
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ali_ecs import ACTIONS, _region, _uses_token_paging
from .aliparams import int_param, iso_time, number_page, repeat_list, token_page
from .context import CallContext, EmulatorState
from .errors import ApiError
from .sandbox import STDERR, sandbox_dir
from .world import AssistSettings, EcsInstance

EXTENSION_KEY = 'ali-assist'

# Limits of the service (alibaba.md; issue9-alibaba.md B1-B5).
MAX_INSTANCES = 100
MAX_SEND_FILE_INSTANCES = 50
MAX_STOP_INSTANCES = 50
# CommandContent after Base64, custom parameters substituted: 24 KB for RunCommand, 18 KB for a kept command
# (RunCommand KeepCommand=true, CreateCommand) and for InvokeCommand's content with its parameters (GOSDK
# run_command_request_model.go / create_command_request_model.go of 2025-10; DOCS25 InvokeCommand Parameters).
# PYSDK 7.11.8 says 24 KB throughout: the stricter 18 KB is used where the sources differ.
CONTENT_LIMIT = 24 * 1024
KEPT_CONTENT_LIMIT = 18 * 1024
SEND_FILE_LIMIT = 32 * 1024        # SendFile Content, counted after Base64
MAX_PAGE = 50                      # MaxResults/PageSize of the Describe* calls here
TIMEOUT_RANGE = (1, 86400)
INVOKE_MIN_TIMEOUT = 10            # InvokeCommand Timeout "must be at least 10 seconds" (PYSDK/DOCS25); code not found
DEFAULT_TIMEOUT = 60
# Custom parameters (PYSDK _run_command_request.py / _invoke_command_request.py, command_content and parameters):
MAX_PARAMETER_VALUES = 10          # 0..10 key/value pairs per call
MAX_PARAMETER_KEY = 64             # a key is non-empty, at most 64 characters
MAX_DEFINED_PARAMETERS = 20        # {{name}} parameters a command may define
BUILTIN_PARAMETERS = ('ACS::RegionId', 'ACS::AccountId', 'ACS::InstanceId', 'ACS::InstanceName', 'ACS::InvokeId',
                      'ACS::CommandId')
# Schedules (PYSDK/DOCS25 frequency): rate() between 60 s and 7 days and above Timeout; cron at least 10 s apart.
RATE_RANGE = (60, 7 * 86400)
CRON_MIN_INTERVAL = 10
# How long the service takes to hand a task to the agent; short, so tests see Pending only briefly.
DELIVERY_SECONDS = 0.05

# The agent's output reporting (aliyun_assist_client agent/taskengine/basetask.go, Task.Run and getReportString):
HEAD_QUOTA = 6000                  # defaultQuotoPre: running output is streamed while less than this was sent
READ_CHUNK = 2048                  # tryRead's buffer: at most this much per tick
TICK_SECONDS = 1.0                 # Output.Interval, raised by the agent to 1000 ms at least
# After the main process exits the agent sleeps 200 ms for late output and reports (agent/util/process/process.go
# SyncRun: command.Process.Wait(), not Cmd.Wait(), so it never waits for the pipes to close).
LATE_OUTPUT_SECONDS = 0.2

COMMAND_TYPES = ('RunShellScript', 'RunBatScript', 'RunPowerShellScript')
# DryRun prechecks parameters, the instance and its agent, and runs nothing (PYSDK RunCommand repeat_mode).
REPEAT_MODES = ('Once', 'Period', 'NextRebootOnly', 'EveryReboot', 'DryRun')
SCHEDULED_MODES = ('Period', 'NextRebootOnly', 'EveryReboot')
FINAL = frozenset(('Success', 'Failed', 'Error', 'Timeout', 'Cancelled', 'Terminated', 'Invalid', 'Aborted'))
FAILED_CLASS = frozenset(('Failed', 'Error', 'Timeout', 'Invalid', 'Aborted'))
STOPPED_CLASS = frozenset(('Cancelled', 'Terminated'))
FINAL_OVERALL = frozenset(('Success', 'Failed', 'PartialFailed', 'Stopped'))

ERROR_INFO = {
    'InstanceNotExists': 'the specified instance does not exists',
    'InstanceNotRunning': 'the instance is not running when create task',
    'CommandNotApplicable': 'the command is not applicable',
    'DirectoryNotExists': 'the specified directory does not exists',
    'ClientNotRunning': 'the aliyun service is not running on the instance',
    'ExecutionTimeout': 'the command execution has been timeout',
    'ExecutionInterrupted': 'the command execution has been interrupted',
    'ExitCodeNonzero': 'the command execution exit code is not zero',
    'FileAlreadyExists': 'the file already exists and overwrite is false',
    'InvalidFileMode': 'the file mode is not valid',
}

# A {{name}} placeholder; which names are valid is checked apart (_defined_parameters).
_PARAM_RE = re.compile(r'\{\{\s*([^{}\s]+)\s*\}\}')
_PARAM_NAME_RE = re.compile(r'^[A-Za-z0-9_-]+$')
# The agent's own rate pattern (agent/timermanager/ratescheduled.go): case-insensitive, spaces allowed.
_RATE_RE = re.compile(r'^rate\s*\((\d+)\s*([smhd])\)$', re.IGNORECASE)
_AT_RE = re.compile(r'^at\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?: ([A-Za-z_/+\-:0-9]+))?\)$')
_CONTAINER_ID_RE = re.compile(r'^(?:(?:docker|containerd|cri-o)://)?[0-9a-fA-F]{64}$')
# The API's ContainerName format is in no source read; the agent's check is this (agent/taskengine/docker/processor.go).
_CONTAINER_NAME_RE = re.compile(r'^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$')
_RATE_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}
# Signature and transport parameters are not part of "the same request" for ClientToken idempotency.
_NOT_REQUEST = frozenset(('Signature', 'SignatureNonce', 'SignatureMethod', 'SignatureVersion', 'SignatureType', 'Timestamp',
                          'AccessKeyId', 'SecurityToken', 'Format', 'ClientToken', 'Action', 'Version'))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _time(when: datetime.datetime | None) -> str:
    return iso_time(when) if when else ''


@dataclass
class Command:
    command_id: str
    name: str
    command_type: str
    content: str
    description: str = ''
    working_dir: str = ''
    timeout: int = DEFAULT_TIMEOUT
    enable_parameter: bool = False
    kept: bool = True
    creation_time: datetime.datetime = field(default_factory=_now)
    invoke_times: int = 0

    @property
    def parameter_names(self) -> list[str]:
        """The custom parameters the content defines (names are case-insensitive: the first spelling is kept)."""
        if not self.enable_parameter:
            return []
        names: dict[str, str] = {}
        for name in _PARAM_RE.findall(self.content):
            if not name.lower().startswith('acs::'):
                names.setdefault(name.lower(), name)
        return list(names.values())


class OutputReport:
    """One execution's output as the agent reports it (aliyun_assist_client agent/taskengine/basetask.go).

    The agent reads the merged stdout/stderr buffer once per tick, at most READ_CHUNK bytes. While less than
    HEAD_QUOTA bytes were sent it posts what it read as running output (the head; Task.Run's goroutine), after
    that what it reads is kept for the final report; periodic tasks and container runs send no head at all. At
    the end everything still unread joins the kept part, and the final report sends its last quota-minus-head
    bytes (getReportString): the service's Output is head + tail, and Dropped counts the middle. The slicing is
    on raw bytes. On cancel (Task.Cancel) the stopped report carries what was kept by then, the unread rest never.

    A quota below the agent's floor (agent_min_quota lowered in the world) could be smaller than the head: the
    agent's arithmetic would go negative there, so the head is cut at the quota and nothing of the rest is kept.
    """

    def __init__(self, quota: int, stream_head: bool) -> None:
        self.quota = quota
        self.stream_head = stream_head
        self.unread = bytearray()
        self.head = bytearray()
        self.kept = bytearray()

    def add(self, data: bytes) -> None:
        self.unread += data

    def tick(self) -> None:
        """One tick of the running-output goroutine."""
        if not self.stream_head:
            return
        chunk = bytes(self.unread[:READ_CHUNK])
        del self.unread[:READ_CHUNK]
        if len(self.head) <= HEAD_QUOTA:
            room = max(0, self.quota - len(self.head))
            self.head += chunk[:room]
            self.kept += chunk[room:]
        else:
            self.kept += chunk

    def _report(self, rest: bytes) -> tuple[bytes, int]:
        budget = max(0, self.quota - len(self.head))
        if len(rest) <= budget:
            return bytes(self.head) + rest, 0
        return bytes(self.head) + (rest[len(rest) - budget:] if budget else b''), len(rest) - budget

    def final(self) -> tuple[bytes, int]:
        """(Output, Dropped) of the final report (finished, timeout or error)."""
        return self._report(bytes(self.kept + self.unread))

    def stopped(self) -> tuple[bytes, int]:
        """(Output, Dropped) of the stopped report Task.Cancel sends before it kills."""
        return self._report(bytes(self.kept))


@dataclass
class InstanceRun:
    """One instance's record of an invocation."""
    instance_id: str
    status: str = 'Pending'
    exit_code: int | None = None
    output: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    error_code: str = ''
    error_info: str = ''
    start_time: datetime.datetime | None = None
    finish_time: datetime.datetime | None = None
    stop_time: datetime.datetime | None = None
    update_time: datetime.datetime = field(default_factory=_now)
    repeats: int = 0
    process: Any = None
    task: asyncio.Task | None = None
    stop_requested: bool = False
    # The current execution's output as the agent reports it, and whether its final report was made.
    report: OutputReport | None = None
    reported: bool = False

    def set(self, status: str, error_code: str = '') -> None:
        self.status = status
        self.error_code = error_code
        self.error_info = ERROR_INFO.get(error_code, '')
        self.update_time = _now()
        if status in FINAL:
            self.finish_time = self.update_time


@dataclass
class Invocation:
    invoke_id: str
    command: Command
    region: str
    runs: list[InstanceRun]
    content: str                      # after parameter substitution (ACS:: built-ins are per instance)
    timeout: int
    working_dir: str
    username: str
    parameters: dict[str, str]
    repeat_mode: str = 'Once'
    frequency: str = ''
    container_id: str = ''
    container_name: str = ''
    termination_mode: str = 'Process'
    creation_time: datetime.datetime = field(default_factory=_now)

    def run(self, instance_id: str) -> InstanceRun | None:
        return next((r for r in self.runs if r.instance_id == instance_id), None)

    @property
    def status(self) -> str:
        return overall_status([r.status for r in self.runs])

    @property
    def in_container(self) -> bool:
        return bool(self.container_id or self.container_name)

    @property
    def timed(self) -> bool:
        """DescribeInvocations' Timed: a scheduled invocation still active (PYSDK _describe_invocations_request.py:
        true = Period/NextRebootOnly/EveryReboot, false = Once and what was cancelled, stopped or finished)."""
        return self.repeat_mode in SCHEDULED_MODES and self.status not in FINAL_OVERALL


@dataclass
class SendFileTask:
    invoke_id: str
    region: str
    name: str
    target_dir: str
    content: bytes
    content_type: str
    file_mode: str
    file_owner: str
    file_group: str
    overwrite: bool
    description: str
    runs: list[InstanceRun]
    creation_time: datetime.datetime = field(default_factory=_now)


@dataclass
class AssistState:
    commands: dict[str, Command] = field(default_factory=dict)
    invocations: dict[str, Invocation] = field(default_factory=dict)
    send_files: dict[str, SendFileTask] = field(default_factory=dict)
    # (action, ClientToken) -> (request fingerprint, response)
    tokens: dict[tuple[str, str], tuple[str, dict[str, Any]]] = field(default_factory=dict)


def assist_state(state: EmulatorState) -> AssistState:
    found = state.extensions.get(EXTENSION_KEY)
    if found is None:
        found = state.extensions[EXTENSION_KEY] = AssistState()
    return found


def overall_status(statuses: list[str]) -> str:
    """The invocation's InvocationStatus from its instances' statuses (DescribeInvocations reference)."""
    for waiting in ('Pending', 'Scheduled', 'Running', 'Stopping'):
        if waiting in statuses:
            return waiting
    if not statuses or all(s in STOPPED_CLASS for s in statuses):
        return 'Stopped'
    if all(s in STOPPED_CLASS or s == 'Success' for s in statuses):
        return 'Success'
    if all(s in STOPPED_CLASS or s in FAILED_CLASS for s in statuses):
        return 'Failed'
    return 'PartialFailed'


def legacy_status(status: str) -> str:
    """The older InvokeStatus / InvokeRecordStatus vocabulary."""
    if status in ('Pending', 'Scheduled', 'Running'):
        return 'Running'
    if status == 'Stopping':
        return 'Stopping'
    if status in ('Success', 'PartialFailed'):
        return 'Finished'
    if status in STOPPED_CLASS or status == 'Stopped':
        return 'Stopped'
    return 'Failed'


# --------------------------------------------------------------------------- request parsing


def _bool(ctx: CallContext, name: str, default: bool) -> bool:
    raw = ctx.param(name)
    if raw is None:
        return default
    return str(raw).lower() == 'true'


def _instance_ids(ctx: CallContext, limit: int, required: bool = True) -> list[str]:
    ids: list[str] = []
    for value in repeat_list(ctx.params, 'InstanceId'):
        if value and value not in ids:
            ids.append(value)
    if not ids and required:
        raise ApiError('MissingParam.InstanceId', 'The parameter InstanceId is required.', 400)
    if len(ids) > limit:
        raise ApiError('InstanceIds.ExceedLimit', f'The number of instance IDs exceeds the upper limit of {limit}.', 403)
    return ids


def _instances(ctx: CallContext, region: str, ids: list[str]) -> list[EcsInstance]:
    found = []
    for instance_id in ids:
        instance = ctx.world.alicloud.instance(instance_id)
        if instance is None or instance.region != region:
            raise ApiError('InvalidInstance.NotFound', f'The specified instance {instance_id} does not exist.', 404)
        found.append(instance)
    return found


def _content(ctx: CallContext, limit: int, name: str = 'CommandContent', encoding_name: str = 'ContentEncoding',
             too_long: str = 'CmdContent.ExceedLimit', bad: str = 'CmdContent.DecodeError', default_encoding: str = 'PlainText') -> bytes:
    raw = ctx.params.get(name)
    if raw is None or raw == '':
        raise ApiError(f'MissingParam.{name}', f'The parameter {name} is required.', 400)
    raw = str(raw)
    # An unknown encoding counts as the default: PlainText for RunCommand, Base64 for CreateCommand (PYSDK content_encoding).
    encoding = str(ctx.param(encoding_name, default_encoding)).lower()
    if encoding not in ('base64', 'plaintext'):
        encoding = default_encoding.lower()
    if encoding == 'base64':
        if len(raw) > limit:
            raise ApiError(too_long, f'The length of {name} exceeds the upper limit of {limit} bytes after Base64 encoding.', 403)
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(bad, f'The {name} is not valid Base64.', 400) from exc
    data = raw.encode('utf-8')
    if len(base64.b64encode(data)) > limit:
        raise ApiError(too_long, f'The length of {name} exceeds the upper limit of {limit} bytes after Base64 encoding.', 403)
    return data


def _timeout(ctx: CallContext, default: int, low: int = TIMEOUT_RANGE[0]) -> int:
    raw = ctx.param('Timeout')
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise ApiError('InvalidTimeout.ExceedLimit', 'The specified Timeout is not valid.', 403) from exc
    # The reference gives no upper bound and no code (issue9-alibaba.md B2): these are the emulator's.
    if not low <= value <= TIMEOUT_RANGE[1]:
        raise ApiError('InvalidTimeout.ExceedLimit', f'The Timeout must be between {low} and {TIMEOUT_RANGE[1]} seconds.', 403)
    return value


def _working_dir(ctx: CallContext, default: str = '') -> str:
    value = str(ctx.param('WorkingDir', default) or '')
    if value and not (value.startswith('/') or re.match(r'^[A-Za-z]:\\', value)) or '\0' in value or len(value) > 200:
        raise ApiError('InvalidParameter.WorkingDir', 'The specified WorkingDir is not an absolute path.', 400)
    return value


def _command_type(ctx: CallContext) -> str:
    value = str(ctx.require('Type'))
    if value not in COMMAND_TYPES:
        raise ApiError('InvalidCmdType.NotFound', f'The specified command type {value} does not exist.', 404)
    return value


def _defined_parameters(content: str, enabled: bool) -> None:
    """The {{name}} parameters a command defines (PYSDK RunCommand/CreateCommand command_content): at most 20,
    names of [A-Za-z0-9_-] up to 64 bytes, the acs:: prefix kept for the built-ins. Codes: DOCS21 CreateCommand."""
    if not enabled:
        return
    custom: set[str] = set()
    for name in _PARAM_RE.findall(content):
        if name.lower().startswith('acs::'):
            if name.lower() not in {b.lower() for b in BUILTIN_PARAMETERS}:
                raise ApiError('CmdParam.InvalidParamName', f'The parameter name {name} is not valid: the acs:: prefix is reserved '
                               'for built-in parameters.', 403)
            continue
        if len(name.encode('utf-8')) > MAX_PARAMETER_KEY:
            raise ApiError('CmdParamName.ExceedLimit', f'The parameter name {name[:20]}... is longer than {MAX_PARAMETER_KEY} bytes.', 403)
        if not _PARAM_NAME_RE.match(name):
            raise ApiError('CmdParam.InvalidParamName', f'The parameter name {name} is not valid: use letters, digits, _ and -.', 403)
        custom.add(name.lower())
    if len(custom) > MAX_DEFINED_PARAMETERS:
        # The limit is documented; its error code is in no source read.
        raise ApiError('ParameterCount.ExceedLimit', f'The command defines {len(custom)} parameters, more than {MAX_DEFINED_PARAMETERS}.', 403)


def _parameters(ctx: CallContext, command: Command) -> dict[str, str]:
    """The custom parameter values of RunCommand/InvokeCommand (PYSDK parameters; codes: DOCS25 InvokeCommand)."""
    raw = ctx.param('Parameters')
    values: dict[str, str] = {}
    if raw is not None:
        try:
            parsed = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise ApiError('InvalidParameter.Parameters', 'The specified Parameters is not a JSON object.', 400) from exc
        if not isinstance(parsed, dict):
            raise ApiError('InvalidParameter.Parameters', 'The specified Parameters is not a JSON object.', 400)
        if parsed and not command.enable_parameter:
            raise ApiError('Parameter.Disabled', 'Custom parameters are disabled for this command: set EnableParameter to true.', 400)
        if len(parsed) > MAX_PARAMETER_VALUES:
            raise ApiError('ParameterCount.ExceedLimit', f'At most {MAX_PARAMETER_VALUES} custom parameters may be given, not {len(parsed)}.', 403)
        for key, value in parsed.items():
            if not key:
                raise ApiError('InvalidParameter.Parameters', 'A parameter key is empty.', 400)
            if len(key) > MAX_PARAMETER_KEY:
                raise ApiError('ParameterKey.ExceedLimit', f'The parameter key {key[:20]}... is longer than {MAX_PARAMETER_KEY} characters.', 403)
            if key.lower() in {k.lower() for k in values}:
                raise ApiError('ParameterKey.Duplicate', f'The parameter {key} is given twice (names are case-insensitive).', 403)
            if not isinstance(value, str):
                raise ApiError('ParameterType.NotSupported', f'The value of parameter {key} must be a string.', 403)
            values[key] = value
    defined = {name.lower() for name in command.parameter_names}
    extra = [key for key in values if key.lower() not in defined]
    if extra:
        raise ApiError('Parameter.NotMatched', f'The parameters {", ".join(extra)} are not defined in the command.', 403)
    given = {key.lower() for key in values}
    missing = [name for name in command.parameter_names if name.lower() not in given]
    if missing:
        raise ApiError('Parameter.MissingValue', f'The command needs values for the parameters: {", ".join(missing)}.', 400)
    return values


def rate_seconds(frequency: str) -> int | None:
    """The interval of a rate(...) frequency in seconds, or None when it is not one."""
    match = _RATE_RE.match(frequency.strip())
    return int(match.group(1)) * _RATE_UNITS[match.group(2).lower()] if match else None


def _cron_values(field_text: str, low: int, high: int) -> list[int]:
    """The values a seconds/minutes/hours cron field allows: *, n, a-b, with /step, in comma lists."""
    found: set[int] = set()
    for part in field_text.split(','):
        base, _slash, step_text = part.partition('/')
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
    """The shortest gap in seconds between two runs of a cron expression (`<sec> <min> <hour> <dom> <month> <dow>
    [<year>] [<tz>]`), from its second, minute and hour fields (the day fields only lengthen gaps). ValueError
    when those fields do not parse."""
    fields = expression.split()
    if not 6 <= len(fields) <= 8:
        raise ValueError(expression)
    seconds = _cron_values(fields[0], 0, 59)
    minutes = _cron_values(fields[1], 0, 59)
    hours = _cron_values(fields[2], 0, 23)
    times = sorted(h * 3600 + m * 60 + sec for h in hours for m in minutes for sec in seconds)
    gaps = [b - a for a, b in zip(times, times[1:])] + [times[0] + 86400 - times[-1]]
    return min(gaps)


def _repeat(ctx: CallContext, timeout: int) -> tuple[str, str]:
    """RepeatMode and Frequency (PYSDK/DOCS25 repeat_mode and frequency; codes: DOCS25 InvokeCommand)."""
    mode = str(ctx.param('RepeatMode', 'Once'))
    if mode not in REPEAT_MODES:
        raise ApiError('InvalidRepeatMode.NotFound', f'The specified RepeatMode {mode} does not exist.', 404)
    frequency = str(ctx.param('Frequency', '') or '').strip()
    # "If Frequency is given, the mode is Period whatever RepeatMode says."
    if frequency:
        mode = 'Period'
    if mode != 'Period':
        return mode, ''
    if not frequency:
        raise ApiError('MissingParam.Frequency', 'A Frequency is required when RepeatMode is Period.', 400)
    rate = rate_seconds(frequency)
    if rate is not None:
        if not RATE_RANGE[0] <= rate <= RATE_RANGE[1] or rate <= timeout:
            raise ApiError('InvalidParam.Frequency', f'The rate interval of {frequency} must be between {RATE_RANGE[0]} seconds and '
                           f'7 days and longer than the Timeout ({timeout} seconds).', 400)
        return mode, frequency
    at = _AT_RE.match(frequency)
    if at is not None:
        try:
            datetime.datetime.strptime(at.group(1), '%Y-%m-%d %H:%M:%S')
        except ValueError as exc:
            raise ApiError('InvalidParam.Frequency', f'The time in {frequency} is not valid.', 400) from exc
        return mode, frequency
    try:
        interval = cron_min_interval(frequency)
    except ValueError as exc:
        raise ApiError('InvalidParam.Frequency', f'The specified Frequency {frequency} is not valid: use rate(...), at(...) '
                       'or a cron expression.', 400) from exc
    if interval < max(CRON_MIN_INTERVAL, timeout):
        raise ApiError('InvalidParam.Frequency', f'The cron expression {frequency} runs every {interval} seconds: at least '
                       f'{CRON_MIN_INTERVAL} seconds and the Timeout ({timeout} seconds) must pass between two runs.', 400)
    return mode, frequency


def _container(ctx: CallContext) -> tuple[str, str]:
    """ContainerId: 64 hex characters with an optional runtime prefix (PYSDK container_id; code: DOCS25)."""
    container_id = str(ctx.param('ContainerId', '') or '')
    container_name = str(ctx.param('ContainerName', '') or '')
    if container_id and not _CONTAINER_ID_RE.match(container_id):
        raise ApiError('InvalidContainerId.Malformed', 'The specified parameter ContainerId is not valid.', 400)
    if container_name and not _CONTAINER_NAME_RE.match(container_name):
        raise ApiError('InvalidContainerName.Malformed', 'The specified parameter ContainerName is not valid.', 400)
    return container_id, container_name


def _check_size(content: str, limit: int) -> None:
    """CommandContent after Base64, with the custom parameters substituted, within the limit (B1)."""
    size = len(base64.b64encode(content.encode('utf-8')))
    if size > limit:
        raise ApiError('CmdContent.ExceedLimit', f'The maximum length of a command is exceeded: {size} bytes after Base64 encoding '
                       f'and parameter substitution, above {limit}.', 403)


def _runnable(command: Command, instances: list[EcsInstance]) -> None:
    """Every instance must be able to run the command, or the call fails (DOCS25 InvokeCommand usage notes: "If
    multiple ECS instances are specified and one of the instances does not meet the requirements for running the
    command, the call fails"; InvalidInstance.NotMatch, 400 in DOCS25, 403 in DOCS21). The reference also lists
    per-instance codes (InstanceNotRunning, CommandNotApplicable) for what is found after the task was made: the
    emulator picks the stricter call-time failure for a stopped instance and a command of the wrong OS, and keeps
    the per-instance Aborted/ClientNotRunning for an agent that is offline at delivery."""
    for instance in instances:
        if instance.status != 'Running':
            raise ApiError('InvalidInstance.NotMatch', f'The specified instance type does not match the command: {instance.instance_id} '
                           f'is {instance.status}, not Running.', 400)
        if not _applicable(command.command_type, instance.os_type):
            raise ApiError('InvalidInstance.NotMatch', f'The specified instance type does not match the command: {instance.instance_id} '
                           f'runs {instance.os_type}, which cannot run {command.command_type}.', 400)


def _fingerprint(ctx: CallContext) -> str:
    request = {k: v for k, v in ctx.params.items() if k not in _NOT_REQUEST}
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def _idempotent(ctx: CallContext) -> dict[str, Any] | None:
    """The earlier answer for the same ClientToken and request; a changed request is refused."""
    token = ctx.param('ClientToken')
    if token is None:
        return None
    known = assist_state(ctx.state).tokens.get((ctx.action, str(token)))
    if known is None:
        return None
    if known[0] != _fingerprint(ctx):
        raise ApiError('IdempotentParameterMismatch', 'The request uses the same ClientToken as a previous, but different request.', 400)
    return known[1]


def _remember(ctx: CallContext, response: dict[str, Any]) -> dict[str, Any]:
    token = ctx.param('ClientToken')
    if token is not None:
        assist_state(ctx.state).tokens[(ctx.action, str(token))] = (_fingerprint(ctx), response)
    return response


def _new_id(prefix: str, region: str) -> str:
    return f'{prefix}-{region.split("-")[-1][:2]}0{secrets.token_hex(7)}'


# --------------------------------------------------------------------------- execution


def _substitute(content: str, values: dict[str, str], enabled: bool) -> str:
    """{{name}} replaced by its value (names are case-insensitive); unknown names stay as they are."""
    if not enabled:
        return content
    lowered = {key.lower(): value for key, value in values.items()}
    return _PARAM_RE.sub(lambda m: lowered.get(m.group(1).lower(), m.group(0)), content)


def _builtins(inv: Invocation, instance: EcsInstance) -> dict[str, str]:
    return {'ACS::InstanceId': instance.instance_id, 'ACS::InstanceName': instance.name, 'ACS::RegionId': inv.region,
            'ACS::InvokeId': inv.invoke_id, 'ACS::CommandId': inv.command.command_id}


def _target_root(state: EmulatorState, inv: Invocation, instance: EcsInstance) -> Path:
    """The instance sandbox, or the container's own sub-sandbox."""
    assert instance.sandbox is not None
    container = inv.container_id or inv.container_name
    if not container:
        return instance.sandbox
    key = re.sub(r'[^A-Za-z0-9_.\-]', '_', container.split('://')[-1].lstrip('/'))
    root = sandbox_dir(state.state_dir, 'ali-ecs-containers', instance.instance_id, key)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _inside(root: Path, path: str) -> Path | None:
    """A path of the instance (absolute, as the user wrote it) inside its sandbox, or None when it escapes."""
    candidate = (root / path.replace('\\', '/').split(':', 1)[-1].lstrip('/')).resolve()
    root = root.resolve()
    return candidate if candidate == root or root in candidate.parents else None


def _applicable(command_type: str, os_type: str) -> bool:
    if os_type == 'windows':
        return command_type in ('RunBatScript', 'RunPowerShellScript')
    return command_type == 'RunShellScript'


def _agent_ready(instance: EcsInstance) -> str:
    """'' when the instance can take a task now, else the per-instance error code."""
    if instance.status != 'Running':
        return 'InstanceNotRunning'
    if not instance.cloud_assistant.online:
        return 'ClientNotRunning'
    return ''


def _kill_main(process: Any) -> None:
    """SIGKILL to the script's main process only, as the agent does on timeout and cancel (ProcessCmd.Cancel and the
    timeout timer in agent/util/process/process.go: p.command.Process.Kill()). The process group the agent made for it
    is never signalled by the task engine, so children live on."""
    try:
        os.kill(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _agent_exit_code(returncode: int | None) -> int:
    """What the agent reports for an exit: Go's ProcessState.ExitCode() is -1 for a death by signal (process.go)."""
    if returncode is None or returncode < 0:
        return -1
    return returncode


async def _keep_reading(process: Any, collector: asyncio.Future) -> None:
    """After the agent reported, the pipes stay open until every writer is gone (the agent's copy goroutines keep
    reading, so a background child never gets SIGPIPE); then the process's resources are released."""
    try:
        await collector
    except asyncio.CancelledError:
        pass
    finally:
        process.close()


async def _execute(state: EmulatorState, inv: Invocation, run: InstanceRun, instance: EcsInstance, workdir: Path, root: Path) -> None:
    """One execution of the invocation's script on the instance, reported as the agent reports it."""
    settings: AssistSettings = state.world.alicloud.assist
    content = _substitute(inv.content, _builtins(inv, instance), True) if inv.command.enable_parameter else inv.content
    in_container = inv.in_container
    if in_container:
        # Container targets run the content with /bin/sh -c, no script file, so no interpreter line is honoured
        # (agent/taskengine/docker/processor.go, cri/processor.go). WorkingDir and Username have no effect (API reference).
        argv = ['/bin/sh', '-c', content]
        env = {'HOME': str(root), 'PWD': str(workdir)}
    else:
        scripts = Path(state.state_dir) / 'ali-assist' / 'scripts'
        scripts.mkdir(parents=True, exist_ok=True)
        script = scripts / f'{inv.invoke_id}-{instance.instance_id}.iv{run.repeats + 1}.sh'
        script.write_text(content, encoding='utf-8')
        # The agent writes the script with mode 0755 and runs `sh -c <file>`, so a shebang line is honoured
        # (agent/taskengine/host/processor.go, HostProcessor.Prepare).
        script.chmod(0o755)
        argv = ['sh', '-c', str(script)]
        env = {'HOME': str(root), 'PWD': str(workdir), 'USER': inv.username or 'root', 'LOGNAME': inv.username or 'root'}
    # Periodic tasks send no running output (Task.Run returns at once when Cronat is set), nor do container runs
    # (cri/processor.go writes stdout, then stderr, once ExecSync returned).
    report = OutputReport(settings.output_quota, stream_head=not in_container and inv.repeat_mode != 'Period')
    run.report = report
    run.reported = False
    run.output = bytearray()
    run.dropped = 0
    run.exit_code = None
    run.start_time = _now()
    run.finish_time = None
    agent = instance.cloud_assistant
    agent.active_task_count += 1
    agent.invocation_count += 1
    try:
        process = await state.runner.start(workdir, argv, env=env, merge_stderr=not in_container)
    except OSError:
        agent.active_task_count -= 1
        run.set('Error', 'ExecutionException')
        run.error_info = 'the command execution got an exception'
        return
    run.process = process
    run.set('Running')
    stdout, stderr = bytearray(), bytearray()

    async def collect() -> None:
        while (item := await process.read()) is not None:
            stream, data = item
            if run.reported:
                continue  # read and dropped: the report is made
            if in_container:
                (stderr if stream == STDERR else stdout).extend(data)
            else:
                report.add(data)  # one buffer for stdout and stderr, as the agent captures them

    async def ticker() -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            report.tick()
            if not run.reported:
                run.output = bytearray(report.head)  # the running reports, what the service shows while it runs

    collector = asyncio.ensure_future(collect())
    ticks = asyncio.ensure_future(ticker())
    timed_out = False
    try:
        if in_container:
            # ExecSync returns once the process exited and its output is drained (containerd container_execsync.go).
            await asyncio.wait_for(asyncio.gather(process.wait(), asyncio.shield(collector)), inv.timeout)
        else:
            await asyncio.wait_for(process.wait(), inv.timeout)
    except asyncio.TimeoutError:
        timed_out = True
        if not in_container:
            # The Docker and CRI processors kill nothing on timeout (they stop waiting); the host one kills the main process.
            _kill_main(process)
            await process.wait()
    finally:
        agent.active_task_count = max(0, agent.active_task_count - 1)
    if not in_container:
        try:
            await asyncio.wait_for(asyncio.shield(collector), LATE_OUTPUT_SECONDS)
        except asyncio.TimeoutError:
            pass
    ticks.cancel()
    run.process = None
    asyncio.ensure_future(_keep_reading(process, collector))
    if run.reported:
        return  # stopped: Task.Cancel reported already, and the later end is not reported (basetask.go)
    run.reported = True
    if in_container:
        report.add(bytes(stdout) + bytes(stderr))
    output, dropped = report.final()
    run.output, run.dropped = bytearray(output), dropped
    # The agent reports exit code 1 on timeout (process.go), the process's own code otherwise.
    run.exit_code = 1 if timed_out else _agent_exit_code(process.returncode)
    run.repeats += 1
    if timed_out:
        run.set('Timeout', 'ExecutionTimeout')
    elif run.exit_code == 0:
        run.set('Success')
    else:
        run.set('Failed', 'ExitCodeNonzero')


async def _run_instance(state: EmulatorState, inv: Invocation, run: InstanceRun) -> None:
    await asyncio.sleep(DELIVERY_SECONDS)
    if run.status != 'Pending':
        return  # cancelled while being delivered
    instance = state.world.alicloud.instance(run.instance_id)
    assert instance is not None and instance.sandbox is not None
    problem = _agent_ready(instance)
    if problem:
        run.set('Aborted', problem)
        return
    if not _applicable(inv.command.command_type, instance.os_type):
        run.set('Invalid', 'CommandNotApplicable')
        return
    root = _target_root(state, inv, instance)
    # WorkingDir has no effect in a container (API reference, ContainerId): the run starts in the container's root.
    workdir = _inside(root, inv.working_dir) if inv.working_dir and not inv.in_container else root
    if workdir is None or not workdir.is_dir():
        run.set('Invalid', 'DirectoryNotExists')
        return
    if inv.repeat_mode == 'DryRun':
        # The prechecks passed; nothing runs. What the record then shows is in no source: Success, no output.
        run.exit_code = 0
        run.set('Success')
        return
    if inv.repeat_mode == 'Once':
        await _execute(state, inv, run, instance, workdir, root)
        return
    run.set('Scheduled')
    interval = rate_seconds(inv.frequency)
    if inv.repeat_mode != 'Period' or interval is None:
        return  # cron, at(...) and reboot modes wait for events the emulator never produces
    while True:
        await asyncio.sleep(interval)
        if run.stop_requested or run.status != 'Scheduled':
            return
        await _execute(state, inv, run, instance, workdir, root)
        if run.stop_requested:
            return
        # Between runs the record shows the last run's output with the schedule still active.
        last_error = (run.error_code, run.error_info, run.finish_time)
        run.status = 'Scheduled'
        run.error_code, run.error_info, run.finish_time = last_error


def _start(state: EmulatorState, inv: Invocation) -> None:
    for run in inv.runs:
        run.task = asyncio.ensure_future(_run_instance(state, inv, run))


async def _cancel(run: InstanceRun, in_container: bool) -> None:
    """The agent's Task.Cancel (basetask.go): the stopped report first (what was kept so far, exit code 0), then
    the kill of the main process (host only: the Docker and CRI processors' Cancel does nothing)."""
    await asyncio.sleep(DELIVERY_SECONDS)
    process, report = run.process, run.report
    if run.reported or process is None or report is None:
        return
    run.reported = True
    output, dropped = report.stopped()
    run.output, run.dropped = bytearray(output), dropped
    run.exit_code = 0
    run.repeats += 1
    run.set('Terminated', 'ExecutionInterrupted')
    run.stop_time = run.finish_time
    if not in_container:
        _kill_main(process)


def _stop_run(settings: AssistSettings, inv: Invocation, run: InstanceRun) -> None:
    """StopInvocation for one instance: runs not started are cancelled (API reference), later scheduled runs never
    start; a started run is killed (the agent, stop_started 'kill') or left to finish (the reference, 'continue')."""
    run.stop_requested = True
    if run.status in ('Pending', 'Scheduled'):
        run.set('Cancelled')
        run.stop_time = run.finish_time
        if run.task is not None:
            run.task.cancel()
    elif run.status == 'Running' and run.process is not None and settings.stop_started == 'kill':
        run.set('Stopping')
        asyncio.ensure_future(_cancel(run, inv.in_container))


# --------------------------------------------------------------------------- commands


def _new_command(ctx: CallContext, region: str, kept: bool) -> Command:
    command_type = _command_type(ctx)
    limit = KEPT_CONTENT_LIMIT if kept else CONTENT_LIMIT
    # CreateCommand takes Base64 by default, RunCommand plain text (PYSDK content_encoding).
    content = _content(ctx, limit, default_encoding='Base64' if ctx.action == 'CreateCommand' else 'PlainText')
    try:
        text = content.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise ApiError('CmdContent.DecodeError', 'The CommandContent is not UTF-8 text.', 400) from exc
    name = str(ctx.param('Name', '') or '')
    if kept and ctx.action == 'CreateCommand' and not name:
        raise ApiError('MissingParam.Name', 'The parameter Name is required.', 400)
    enable_parameter = _bool(ctx, 'EnableParameter', False)
    _defined_parameters(text, enable_parameter)
    return Command(command_id=_new_id('c', region), name=name or f'command-{secrets.token_hex(4)}', command_type=command_type,
                   content=text, description=str(ctx.param('Description', '') or ''), working_dir=_working_dir(ctx),
                   timeout=_timeout(ctx, DEFAULT_TIMEOUT), enable_parameter=enable_parameter, kept=kept)


def _invoke(ctx: CallContext, region: str, command: Command, instances: list[EcsInstance], limit: int,
            min_timeout: int = TIMEOUT_RANGE[0]) -> Invocation:
    parameters = _parameters(ctx, command)
    content = _substitute(command.content, parameters, command.enable_parameter)
    _check_size(content, limit)
    timeout = _timeout(ctx, command.timeout, min_timeout)
    mode, frequency = _repeat(ctx, timeout)
    container_id, container_name = _container(ctx)
    _runnable(command, instances)
    inv = Invocation(
        invoke_id=_new_id('t', region), command=command, region=region,
        runs=[InstanceRun(instance_id=i.instance_id) for i in instances], content=content, timeout=timeout,
        working_dir=_working_dir(ctx, command.working_dir), username=str(ctx.param('Username', '') or ''),
        parameters=parameters, repeat_mode=mode, frequency=frequency, container_id=container_id, container_name=container_name,
        termination_mode=str(ctx.param('TerminationMode', 'Process')),
    )
    command.invoke_times += 1
    assist_state(ctx.state).invocations[inv.invoke_id] = inv
    _start(ctx.state, inv)
    return inv


@ACTIONS.register('RunCommand')
async def run_command(ctx: CallContext) -> dict[str, Any]:
    region = _region(ctx)
    earlier = _idempotent(ctx)
    if earlier is not None:
        return earlier
    ids = _instance_ids(ctx, MAX_INSTANCES)
    kept = _bool(ctx, 'KeepCommand', False)
    command = _new_command(ctx, region, kept=kept)
    instances = _instances(ctx, region, ids)
    state = assist_state(ctx.state)
    inv = _invoke(ctx, region, command, instances, KEPT_CONTENT_LIMIT if kept else CONTENT_LIMIT)
    state.commands[command.command_id] = command
    return _remember(ctx, {'CommandId': command.command_id, 'InvokeId': inv.invoke_id})


@ACTIONS.register('CreateCommand')
async def create_command(ctx: CallContext) -> dict[str, Any]:
    region = _region(ctx)
    earlier = _idempotent(ctx)
    if earlier is not None:
        return earlier
    command = _new_command(ctx, region, kept=True)
    assist_state(ctx.state).commands[command.command_id] = command
    return _remember(ctx, {'CommandId': command.command_id})


def _command(ctx: CallContext) -> Command:
    command_id = str(ctx.require('CommandId'))
    command = assist_state(ctx.state).commands.get(command_id)
    if command is None or not command.kept:
        # The code is spelt Cmd (DOCS21 and DOCS25 InvokeCommand error tables).
        raise ApiError('InvalidCmdId.NotFound', f'The specified command {command_id} does not exist.', 404)
    return command


@ACTIONS.register('InvokeCommand')
async def invoke_command(ctx: CallContext) -> dict[str, Any]:
    region = _region(ctx)
    earlier = _idempotent(ctx)
    if earlier is not None:
        return earlier
    ids = _instance_ids(ctx, MAX_INSTANCES)
    command = _command(ctx)
    instances = _instances(ctx, region, ids)
    inv = _invoke(ctx, region, command, instances, KEPT_CONTENT_LIMIT, INVOKE_MIN_TIMEOUT)
    return _remember(ctx, {'InvokeId': inv.invoke_id})


@ACTIONS.register('DeleteCommand')
async def delete_command(ctx: CallContext) -> dict[str, Any]:
    _region(ctx)
    command = _command(ctx)
    del assist_state(ctx.state).commands[command.command_id]
    return {}


def _encode(data: bytes, encoding: str | None) -> str:
    if str(encoding or 'Base64').lower() == 'plaintext':
        return data.decode('utf-8', errors='replace')
    return base64.b64encode(data).decode('ascii')


def _page(ctx: CallContext, items: list[Any], query: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """NextToken/MaxResults or PageNumber/PageSize paging, at most 50 per page."""
    meta: dict[str, Any] = {'TotalCount': len(items)}
    if _uses_token_paging(ctx):
        size = int_param(ctx.params, 'MaxResults', 10, 1, MAX_PAGE)
        chunk, meta['NextToken'] = token_page(items, ctx.param('NextToken'), size, query)
        meta.update({'PageNumber': 1, 'PageSize': size})
    else:
        number = int_param(ctx.params, 'PageNumber', 1, 1, 1_000_000)
        size = int_param(ctx.params, 'PageSize', 10, 1, MAX_PAGE)
        chunk = number_page(items, number, size)
        meta.update({'PageNumber': number, 'PageSize': size, 'NextToken': ''})
    return chunk, meta


def _no_tags() -> dict[str, Any]:
    return {'Tag': []}


@ACTIONS.register('DescribeCommands')
async def describe_commands(ctx: CallContext) -> dict[str, Any]:
    region = _region(ctx)
    filters = {name: ctx.param(name) for name in ('CommandId', 'Name', 'Type')}
    found = [c for c in assist_state(ctx.state).commands.values()
             if c.kept
             and (filters['CommandId'] is None or c.command_id == filters['CommandId'])
             and (filters['Name'] is None or c.name == filters['Name'])
             and (filters['Type'] is None or c.command_type == filters['Type'])]
    found.sort(key=lambda c: c.creation_time, reverse=True)
    chunk, meta = _page(ctx, found, ['DescribeCommands', region, filters])
    encoding = ctx.param('ContentEncoding')
    commands = [{
        'CommandId': c.command_id, 'Name': c.name, 'Type': c.command_type, 'Description': c.description,
        'CommandContent': _encode(c.content.encode('utf-8'), encoding), 'WorkingDir': c.working_dir, 'Timeout': c.timeout,
        'EnableParameter': c.enable_parameter, 'ParameterNames': {'ParameterName': c.parameter_names},
        'CreationTime': _time(c.creation_time), 'InvokeTimes': c.invoke_times, 'Latest': True, 'Version': 1, 'Provider': '',
        'Category': '', 'Launcher': '', 'ResourceGroupId': '', 'Tags': _no_tags(),
    } for c in chunk]
    return {**meta, 'Commands': {'Command': commands}}


# --------------------------------------------------------------------------- invocations


def _instance_view(run: InstanceRun, encoding: str | None, include_output: bool) -> dict[str, Any]:
    view = {
        'InstanceId': run.instance_id, 'InvocationStatus': run.status, 'InstanceInvokeStatus': legacy_status(run.status),
        'ExitCode': run.exit_code if run.exit_code is not None else 0, 'Dropped': run.dropped, 'ErrorCode': run.error_code,
        'ErrorInfo': run.error_info, 'StartTime': _time(run.start_time), 'FinishTime': _time(run.finish_time),
        'StopTime': _time(run.stop_time), 'Repeats': run.repeats, 'CreationTime': _time(run.update_time), 'UpdateTime': _time(run.update_time),
        'Timed': False, 'OssOutputStatus': '', 'OssOutputUri': '', 'OssOutputErrorCode': '', 'OssOutputErrorInfo': '',
    }
    if include_output:
        view['Output'] = _encode(bytes(run.output), encoding)
    return view


def _matches_status(inv_status: str, wanted: str | None) -> bool:
    return wanted is None or wanted in (inv_status, legacy_status(inv_status))


@ACTIONS.register('DescribeInvocations')
async def describe_invocations(ctx: CallContext) -> dict[str, Any]:
    region = _region(ctx)
    names = ('InvokeId', 'CommandId', 'CommandName', 'CommandType', 'InstanceId', 'InvokeStatus', 'RepeatMode')
    filters = {name: ctx.param(name) for name in names}
    include_output = _bool(ctx, 'IncludeOutput', False)
    if include_output and filters['InvokeId'] is None and filters['InstanceId'] is None:
        # "When IncludeOutput is true, InvokeId or InstanceId must be given" (PYSDK, GOSDK describe_invocations_request_model.go);
        # the code the service answers is in no source read.
        raise ApiError('InvalidParameter', 'The specified parameter IncludeOutput is not valid: give InvokeId or InstanceId with it.', 400)
    # Timed defaults to false: Once invocations and finished ones; true: the scheduled ones still active (PYSDK).
    timed = _bool(ctx, 'Timed', False)
    found = [inv for inv in assist_state(ctx.state).invocations.values()
             if inv.region == region and inv.timed == timed
             and (filters['InvokeId'] is None or inv.invoke_id == filters['InvokeId'])
             and (filters['CommandId'] is None or inv.command.command_id == filters['CommandId'])
             and (filters['CommandName'] is None or inv.command.name == filters['CommandName'])
             and (filters['CommandType'] is None or inv.command.command_type == filters['CommandType'])
             and (filters['InstanceId'] is None or inv.run(str(filters['InstanceId'])) is not None)
             and (filters['RepeatMode'] is None or inv.repeat_mode == filters['RepeatMode'])
             and _matches_status(inv.status, filters['InvokeStatus'])]
    found.sort(key=lambda i: i.creation_time, reverse=True)
    chunk, meta = _page(ctx, found, ['DescribeInvocations', region, filters, timed])
    encoding = ctx.param('ContentEncoding')
    invocations = []
    for inv in chunk:
        status = inv.status
        invocations.append({
            'InvokeId': inv.invoke_id, 'CommandId': inv.command.command_id, 'CommandName': inv.command.name,
            'CommandType': inv.command.command_type, 'CommandDescription': inv.command.description,
            'CommandContent': _encode(inv.command.content.encode('utf-8'), encoding),
            'Parameters': json.dumps(inv.parameters) if inv.parameters else '', 'InvocationStatus': status,
            'InvokeStatus': legacy_status(status), 'RepeatMode': inv.repeat_mode, 'Frequency': inv.frequency, 'Timed': inv.timed,
            'CreationTime': _time(inv.creation_time), 'Timeout': inv.timeout, 'Username': inv.username, 'WorkingDir': inv.working_dir,
            'ContainerId': inv.container_id, 'ContainerName': inv.container_name, 'Launcher': '', 'TerminationMode': inv.termination_mode,
            'OssOutputDelivery': '', 'Tags': _no_tags(),
            'InvokeInstances': {'InvokeInstance': [_instance_view(r, encoding, include_output) for r in inv.runs]},
        })
    return {**meta, 'Invocations': {'Invocation': invocations}}


@ACTIONS.register('DescribeInvocationResults')
async def describe_invocation_results(ctx: CallContext) -> dict[str, Any]:
    region = _region(ctx)
    filters = {name: ctx.param(name) for name in ('InvokeId', 'CommandId', 'InstanceId', 'InvokeRecordStatus')}
    rows = []
    for inv in assist_state(ctx.state).invocations.values():
        if inv.region != region or filters['InvokeId'] not in (None, inv.invoke_id) or filters['CommandId'] not in (None, inv.command.command_id):
            continue
        for run in inv.runs:
            if filters['InstanceId'] not in (None, run.instance_id) or not _matches_status(run.status, filters['InvokeRecordStatus']):
                continue
            rows.append((inv, run))
    chunk, meta = _page(ctx, rows, ['DescribeInvocationResults', region, filters])
    encoding = ctx.param('ContentEncoding')
    results = [{
        'InstanceId': run.instance_id, 'InvokeId': inv.invoke_id, 'CommandId': inv.command.command_id,
        'InvocationStatus': run.status, 'InvokeRecordStatus': legacy_status(run.status),
        'ExitCode': run.exit_code if run.exit_code is not None else 0, 'Output': _encode(bytes(run.output), encoding),
        'Dropped': run.dropped, 'ErrorCode': run.error_code, 'ErrorInfo': run.error_info, 'StartTime': _time(run.start_time),
        'FinishedTime': _time(run.finish_time), 'StopTime': _time(run.stop_time), 'Repeats': run.repeats, 'Username': inv.username,
        'ContainerId': inv.container_id, 'ContainerName': inv.container_name, 'Launcher': '', 'TerminationMode': inv.termination_mode,
        'OssOutputDelivery': '', 'OssOutputStatus': '', 'OssOutputUri': '', 'OssOutputErrorCode': '', 'OssOutputErrorInfo': '',
        'Tags': _no_tags(),
    } for inv, run in chunk]
    return {'Invocation': {**meta, 'InvocationResults': {'InvocationResult': results}}}


@ACTIONS.register('StopInvocation')
async def stop_invocation(ctx: CallContext) -> dict[str, Any]:
    _region(ctx)
    invoke_id = str(ctx.require('InvokeId'))
    inv = assist_state(ctx.state).invocations.get(invoke_id)
    if inv is None:
        raise ApiError('InvalidInvokeId.NotFound', f'The specified invocation {invoke_id} does not exist.', 404)
    ids = _instance_ids(ctx, MAX_STOP_INSTANCES, required=False)
    for run in inv.runs:
        if not ids or run.instance_id in ids:
            _stop_run(ctx.world.alicloud.assist, inv, run)
    return {}


# --------------------------------------------------------------------------- files


async def _send_file_to(state: EmulatorState, task: SendFileTask, run: InstanceRun) -> None:
    await asyncio.sleep(DELIVERY_SECONDS)
    instance = state.world.alicloud.instance(run.instance_id)
    assert instance is not None and instance.sandbox is not None
    problem = _agent_ready(instance)
    if problem:
        run.set('Aborted', problem)
        return
    run.start_time = _now()
    run.set('Running')
    directory = _inside(instance.sandbox, task.target_dir)
    if directory is None:
        run.set('Invalid', 'DirectoryNotExists')
        return
    target = directory / task.name
    if target.exists() and not task.overwrite:
        run.set('Failed', 'FileAlreadyExists')
        return
    try:
        mode = int(task.file_mode, 8) if task.file_mode else 0o644
    except ValueError:
        run.set('Failed', 'InvalidFileMode')
        return
    directory.mkdir(parents=True, exist_ok=True)
    target.write_bytes(task.content)
    # FileOwner/FileGroup are recorded only: the emulator cannot change owners.
    os.chmod(target, mode)
    run.set('Success')


@ACTIONS.register('SendFile')
async def send_file(ctx: CallContext) -> dict[str, Any]:
    region = _region(ctx)
    earlier = _idempotent(ctx)
    if earlier is not None:
        return earlier
    ids = _instance_ids(ctx, MAX_SEND_FILE_INSTANCES)
    name = str(ctx.require('Name'))
    target_dir = str(ctx.require('TargetDir'))
    if '/' in name or name in ('.', '..'):
        raise ApiError('InvalidParameter.Name', 'The specified file Name is not valid.', 400)
    content = _content(ctx, SEND_FILE_LIMIT, 'Content', 'ContentType', 'Content.ExceedLimit', 'Content.DecodeError')
    instances = _instances(ctx, region, ids)
    task = SendFileTask(invoke_id=_new_id('f', region), region=region, name=name, target_dir=target_dir, content=content,
                        content_type=str(ctx.param('ContentType', 'PlainText')), file_mode=str(ctx.param('FileMode', '0644')),
                        file_owner=str(ctx.param('FileOwner', 'root')), file_group=str(ctx.param('FileGroup', 'root')),
                        overwrite=_bool(ctx, 'Overwrite', False), description=str(ctx.param('Description', '') or ''),
                        runs=[InstanceRun(instance_id=i.instance_id) for i in instances])
    assist_state(ctx.state).send_files[task.invoke_id] = task
    for run in task.runs:
        run.task = asyncio.ensure_future(_send_file_to(ctx.state, task, run))
    return _remember(ctx, {'InvokeId': task.invoke_id})


@ACTIONS.register('DescribeSendFileResults')
async def describe_send_file_results(ctx: CallContext) -> dict[str, Any]:
    region = _region(ctx)
    filters = {name: ctx.param(name) for name in ('InvokeId', 'InstanceId', 'Name', 'InvocationStatus')}
    found = [t for t in assist_state(ctx.state).send_files.values()
             if t.region == region and filters['InvokeId'] in (None, t.invoke_id) and filters['Name'] in (None, t.name)
             and (filters['InstanceId'] is None or any(r.instance_id == filters['InstanceId'] for r in t.runs))
             and _matches_status(overall_status([r.status for r in t.runs]), filters['InvocationStatus'])]
    found.sort(key=lambda t: t.creation_time, reverse=True)
    chunk, meta = _page(ctx, found, ['DescribeSendFileResults', region, filters])
    invocations = [{
        'InvokeId': t.invoke_id, 'Name': t.name, 'TargetDir': t.target_dir, 'Description': t.description,
        'Content': _encode(t.content, t.content_type), 'ContentType': t.content_type, 'FileMode': t.file_mode, 'FileOwner': t.file_owner,
        'FileGroup': t.file_group, 'Overwrite': t.overwrite, 'CreationTime': _time(t.creation_time), 'VmCount': len(t.runs),
        'InvocationStatus': overall_status([r.status for r in t.runs]), 'Tags': _no_tags(),
        'InvokeInstances': {'InvokeInstance': [{
            'InstanceId': r.instance_id, 'InvocationStatus': r.status, 'ErrorCode': r.error_code, 'ErrorInfo': r.error_info,
            'CreationTime': _time(t.creation_time), 'StartTime': _time(r.start_time), 'FinishTime': _time(r.finish_time),
            'UpdateTime': _time(r.update_time),
        } for r in t.runs]},
    } for t in chunk]
    return {**meta, 'Invocations': {'Invocation': invocations}}
