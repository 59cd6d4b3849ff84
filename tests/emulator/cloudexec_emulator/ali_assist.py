# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alibaba Cloud Assistant (ECS 2014-05-26): commands, invocations and file pushes run in instance sandboxes.

The actions register into :data:`ali_ecs.ACTIONS`. An invocation runs one asyncio task per instance:
Pending (delivery), then the instance and its agent are checked as the service does when it hands the
task over (a stopped instance or an offline agent gives ``Aborted`` with ``InstanceNotRunning`` /
``ClientNotRunning``: the API call itself succeeds), then the script runs as a real process in the
instance's sandbox (``sh -c <script file>``, stdout and stderr in one buffer, the last 24 KB kept and the
rest counted in ``Dropped``), ending in Success, Failed (``ExitCodeNonzero``), Timeout
(``ExecutionTimeout``, process group killed) or Terminated (StopInvocation). The overall status follows
the rules of the DescribeInvocations reference (Pending > Scheduled > Running > Stopping, then Success /
Failed / Stopped / PartialFailed).

What the emulator cannot do, and does instead (see README "Cloud Assistant"):
- Username is recorded and returned but the process runs as the emulator's user.
- Windows instances: RunBatScript/RunPowerShellScript content runs under ``sh`` (so only portable
  one-liners such as ``echo`` behave); RunShellScript on Windows, and Bat/PowerShell on Linux, end
  ``Invalid`` with ``CommandNotApplicable``.
- Containers (ContainerId/ContainerName) get a sub-sandbox per container, created on first use.
- RepeatMode Period runs ``rate(<n><s|m|h|d>)`` frequencies on a timer; cron and ``at(...)`` are
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ali_ecs import ACTIONS, _region, _uses_token_paging
from .aliparams import int_param, iso_time, number_page, repeat_list, token_page
from .context import CallContext, EmulatorState
from .errors import ApiError
from .sandbox import sandbox_dir
from .world import EcsInstance

EXTENSION_KEY = 'ali-assist'

# Limits of the service (alibaba.md: confirmed from the SDK and the API reference).
MAX_INSTANCES = 100
MAX_SEND_FILE_INSTANCES = 50
MAX_STOP_INSTANCES = 50
CONTENT_LIMIT = 24 * 1024          # CommandContent, counted after Base64
SEND_FILE_LIMIT = 32 * 1024        # SendFile Content, counted after Base64
OUTPUT_LIMIT = 24 * 1024           # output kept per execution; the rest is reported in Dropped
MAX_PAGE = 50                      # MaxResults/PageSize of the Describe* calls here
TIMEOUT_RANGE = (1, 86400)
DEFAULT_TIMEOUT = 60
# How long the service takes to hand a task to the agent; short, so tests see Pending only briefly.
DELIVERY_SECONDS = 0.05
DRAIN_GRACE_SECONDS = 1.0

COMMAND_TYPES = ('RunShellScript', 'RunBatScript', 'RunPowerShellScript')
REPEAT_MODES = ('Once', 'Period', 'NextRebootOnly', 'EveryReboot')
FINAL = frozenset(('Success', 'Failed', 'Error', 'Timeout', 'Cancelled', 'Terminated', 'Invalid', 'Aborted'))
FAILED_CLASS = frozenset(('Failed', 'Error', 'Timeout', 'Invalid', 'Aborted'))
STOPPED_CLASS = frozenset(('Cancelled', 'Terminated'))

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

_PARAM_RE = re.compile(r'\{\{\s*([A-Za-z0-9_\-:]+)\s*\}\}')
_RATE_RE = re.compile(r'^rate\((\d+)([smhd])\)$')
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
        if not self.enable_parameter:
            return []
        names: list[str] = []
        for name in _PARAM_RE.findall(self.content):
            if not name.startswith('ACS::') and name not in names:
                names.append(name)
        return names


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


def _content(ctx: CallContext, name: str = 'CommandContent', encoding_name: str = 'ContentEncoding', limit: int = CONTENT_LIMIT,
             too_long: str = 'CmdContent.ExceedLimit', bad: str = 'CmdContent.DecodeError') -> bytes:
    raw = ctx.params.get(name)
    if raw is None or raw == '':
        raise ApiError(f'MissingParam.{name}', f'The parameter {name} is required.', 400)
    raw = str(raw)
    # An unknown encoding counts as PlainText, as the API reference says.
    if str(ctx.param(encoding_name, 'PlainText')).lower() == 'base64':
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


def _timeout(ctx: CallContext, default: int) -> int:
    raw = ctx.param('Timeout')
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise ApiError('InvalidTimeout.ExceedLimit', 'The specified Timeout is not valid.', 403) from exc
    if not TIMEOUT_RANGE[0] <= value <= TIMEOUT_RANGE[1]:
        raise ApiError('InvalidTimeout.ExceedLimit', f'The Timeout must be between {TIMEOUT_RANGE[0]} and {TIMEOUT_RANGE[1]} seconds.', 403)
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


def _parameters(ctx: CallContext, command: Command) -> dict[str, str]:
    raw = ctx.param('Parameters')
    values: dict[str, str] = {}
    if raw is not None:
        try:
            parsed = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise ApiError('InvalidParameter.Parameters', 'The specified Parameters is not a JSON object.', 400) from exc
        if not isinstance(parsed, dict):
            raise ApiError('InvalidParameter.Parameters', 'The specified Parameters is not a JSON object.', 400)
        values = {str(k): '' if v is None else str(v) for k, v in parsed.items()}
    if values and not command.enable_parameter:
        raise ApiError('Parameter.Disabled', 'Custom parameters are disabled for this command: set EnableParameter to true.', 403)
    missing = [n for n in command.parameter_names if n not in values]
    if missing:
        raise ApiError('Parameter.Missing', f'The command needs values for the parameters: {", ".join(missing)}.', 400)
    return values


def _repeat(ctx: CallContext) -> tuple[str, str]:
    mode = str(ctx.param('RepeatMode', 'Once'))
    if mode not in REPEAT_MODES:
        raise ApiError('InvalidRepeatMode', f'The specified RepeatMode {mode} is not valid.', 400)
    frequency = str(ctx.param('Frequency', '') or '')
    if mode == 'Period':
        if not frequency:
            raise ApiError('MissingParam.Frequency', 'A Frequency is required when RepeatMode is Period.', 400)
        if not (_RATE_RE.match(frequency) or frequency.startswith('at(') or len(frequency.split()) in (6, 7)):
            raise ApiError('InvalidParam.Frequency', f'The specified Frequency {frequency} is not valid.', 400)
    return mode, frequency


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
    if not enabled:
        return content
    return _PARAM_RE.sub(lambda m: values.get(m.group(1), m.group(0)), content)


def _builtins(inv: Invocation, instance: EcsInstance) -> dict[str, str]:
    return {'ACS::InstanceId': instance.instance_id, 'ACS::InstanceName': instance.name, 'ACS::RegionId': inv.region,
            'ACS::InvokeId': inv.invoke_id, 'ACS::CommandId': inv.command.command_id}


def _target_root(state: EmulatorState, inv: Invocation, instance: EcsInstance) -> Path:
    """The instance sandbox, or the container's own sub-sandbox."""
    assert instance.sandbox is not None
    container = inv.container_id or inv.container_name
    if not container:
        return instance.sandbox
    key = re.sub(r'[^A-Za-z0-9_.\-]', '_', container.split('://')[-1])
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


async def _execute(state: EmulatorState, inv: Invocation, run: InstanceRun, instance: EcsInstance, workdir: Path, root: Path) -> None:
    """One execution of the invocation's script on the instance, to its end."""
    content = _substitute(inv.content, _builtins(inv, instance), True) if inv.command.enable_parameter else inv.content
    if inv.container_id or inv.container_name:
        # Container targets run the content directly with /bin/sh -c (alibaba.md).
        argv = ['/bin/sh', '-c', content]
    else:
        scripts = Path(state.state_dir) / 'ali-assist' / 'scripts'
        scripts.mkdir(parents=True, exist_ok=True)
        script = scripts / f'{inv.invoke_id}-{instance.instance_id}-{run.repeats}.sh'
        script.write_text(content, encoding='utf-8')
        script.chmod(0o700)
        # The agent writes the script to a file and runs `sh -c <file>`, so a shebang line is honoured.
        argv = ['sh', '-c', str(script)]
    env = {'HOME': str(root), 'PWD': str(workdir), 'USER': inv.username or 'root', 'LOGNAME': inv.username or 'root'}
    run.output = bytearray()
    run.dropped = 0
    run.exit_code = None
    run.start_time = _now()
    run.finish_time = None
    agent = instance.cloud_assistant
    agent.active_task_count += 1
    agent.invocation_count += 1
    try:
        process = await state.runner.start(workdir, argv, env=env, merge_stderr=True)
    except OSError:
        agent.active_task_count -= 1
        run.set('Error', 'ExecutionException')
        run.error_info = 'the command execution got an exception'
        return
    run.process = process
    run.set('Running')

    async def collect() -> None:
        while (item := await process.read()) is not None:
            stream, data = item
            del stream  # one buffer for stdout and stderr, as the agent captures them
            run.output.extend(data)
            if len(run.output) > OUTPUT_LIMIT:
                # The agent keeps the tail and reports how much it cut.
                cut = len(run.output) - OUTPUT_LIMIT
                del run.output[:cut]
                run.dropped += cut

    collector = asyncio.ensure_future(collect())
    timed_out = False
    try:
        exit_code = await asyncio.wait_for(process.wait(), inv.timeout)
    except asyncio.TimeoutError:
        timed_out = True
        process.kill()
        exit_code = await process.wait()
    finally:
        agent.active_task_count = max(0, agent.active_task_count - 1)
    # The command is over: whatever it left running in the background goes too.
    process.kill()
    try:
        await asyncio.wait_for(asyncio.shield(collector), DRAIN_GRACE_SECONDS)
    except asyncio.TimeoutError:
        collector.cancel()
    finally:
        process.close()
        run.process = None
    run.exit_code = exit_code
    run.repeats += 1
    if run.stop_requested:
        run.set('Terminated', 'ExecutionInterrupted')
        run.stop_time = run.finish_time
    elif timed_out:
        run.set('Timeout', 'ExecutionTimeout')
    elif exit_code == 0:
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
    workdir = _inside(root, inv.working_dir) if inv.working_dir else root
    if workdir is None or not workdir.is_dir():
        run.set('Invalid', 'DirectoryNotExists')
        return
    if inv.repeat_mode == 'Once':
        await _execute(state, inv, run, instance, workdir, root)
        return
    run.set('Scheduled')
    rate = _RATE_RE.match(inv.frequency)
    if inv.repeat_mode != 'Period' or rate is None:
        return  # cron, at(...) and reboot modes wait for events the emulator never produces
    interval = int(rate.group(1)) * _RATE_UNITS[rate.group(2)]
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


def _stop_run(run: InstanceRun) -> None:
    run.stop_requested = True
    if run.status in ('Pending', 'Scheduled'):
        run.set('Cancelled')
        run.stop_time = run.finish_time
        if run.task is not None:
            run.task.cancel()
    elif run.status == 'Running' and run.process is not None:
        run.set('Stopping')
        run.process.kill()


# --------------------------------------------------------------------------- commands


def _new_command(ctx: CallContext, region: str, kept: bool) -> Command:
    command_type = _command_type(ctx)
    content = _content(ctx)
    try:
        text = content.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise ApiError('CmdContent.DecodeError', 'The CommandContent is not UTF-8 text.', 400) from exc
    name = str(ctx.param('Name', '') or '')
    if kept and ctx.action == 'CreateCommand' and not name:
        raise ApiError('MissingParam.Name', 'The parameter Name is required.', 400)
    return Command(command_id=_new_id('c', region), name=name or f'command-{secrets.token_hex(4)}', command_type=command_type,
                   content=text, description=str(ctx.param('Description', '') or ''), working_dir=_working_dir(ctx),
                   timeout=_timeout(ctx, DEFAULT_TIMEOUT), enable_parameter=_bool(ctx, 'EnableParameter', False), kept=kept)


def _invoke(ctx: CallContext, region: str, command: Command, instances: list[EcsInstance]) -> Invocation:
    parameters = _parameters(ctx, command)
    mode, frequency = _repeat(ctx)
    timeout = _timeout(ctx, command.timeout)
    inv = Invocation(
        invoke_id=_new_id('t', region), command=command, region=region,
        runs=[InstanceRun(instance_id=i.instance_id) for i in instances],
        content=_substitute(command.content, parameters, command.enable_parameter), timeout=timeout,
        working_dir=_working_dir(ctx, command.working_dir), username=str(ctx.param('Username', '') or ''),
        parameters=parameters, repeat_mode=mode, frequency=frequency,
        container_id=str(ctx.param('ContainerId', '') or ''), container_name=str(ctx.param('ContainerName', '') or ''),
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
    command = _new_command(ctx, region, kept=_bool(ctx, 'KeepCommand', False))
    instances = _instances(ctx, region, ids)
    state = assist_state(ctx.state)
    inv = _invoke(ctx, region, command, instances)
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
        raise ApiError('InvalidCommandId.NotFound', f'The specified command {command_id} does not exist.', 404)
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
    inv = _invoke(ctx, region, command, instances)
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
    found = [inv for inv in assist_state(ctx.state).invocations.values()
             if inv.region == region
             and (filters['InvokeId'] is None or inv.invoke_id == filters['InvokeId'])
             and (filters['CommandId'] is None or inv.command.command_id == filters['CommandId'])
             and (filters['CommandName'] is None or inv.command.name == filters['CommandName'])
             and (filters['CommandType'] is None or inv.command.command_type == filters['CommandType'])
             and (filters['InstanceId'] is None or inv.run(str(filters['InstanceId'])) is not None)
             and (filters['RepeatMode'] is None or inv.repeat_mode == filters['RepeatMode'])
             and _matches_status(inv.status, filters['InvokeStatus'])]
    found.sort(key=lambda i: i.creation_time, reverse=True)
    chunk, meta = _page(ctx, found, ['DescribeInvocations', region, filters])
    encoding = ctx.param('ContentEncoding')
    include_output = _bool(ctx, 'IncludeOutput', False)
    invocations = []
    for inv in chunk:
        status = inv.status
        invocations.append({
            'InvokeId': inv.invoke_id, 'CommandId': inv.command.command_id, 'CommandName': inv.command.name,
            'CommandType': inv.command.command_type, 'CommandDescription': inv.command.description,
            'CommandContent': _encode(inv.command.content.encode('utf-8'), encoding),
            'Parameters': json.dumps(inv.parameters) if inv.parameters else '', 'InvocationStatus': status,
            'InvokeStatus': legacy_status(status), 'RepeatMode': inv.repeat_mode, 'Frequency': inv.frequency, 'Timed': False,
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
            _stop_run(run)
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
    content = _content(ctx, 'Content', 'ContentType', SEND_FILE_LIMIT, 'Content.ExceedLimit', 'Content.DecodeError')
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
