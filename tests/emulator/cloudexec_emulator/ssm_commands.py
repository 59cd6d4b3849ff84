# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSM Run Command: SendCommand, ListCommands, ListCommandInvocations, GetCommandInvocation, CancelCommand.

The actions register on :data:`aws_ssm.ACTIONS`. A command has one invocation per managed node; each runs as the
agent's ``aws:runShellScript`` plugin does (amazon-ssm-agent, read at 1c217c89; facts in
/work/research/ssm-resume-and-shell.md section 3.3):

- the ``commands`` joined with ``\\n`` (plus a final ``\\n``) into ``_script.sh`` in the command's orchestration
  directory, run as ``sh -c <script>`` (agent/plugins/runscript/runshellscript.go; pluginutil.go CreateScriptFile),
  as root, in a process group of its own (executers_unix.go prepareProcess, Setpgid), stdout and stderr apart;
- in ``workingDirectory`` when it is absolute, else in the agent's own directory, ``/usr/bin`` (runscript.go
  runCommands; the agent's systemd unit packaging/linux/amazon-ssm-agent.service has WorkingDirectory=/usr/bin/);
- ``executionTimeout`` as the agent reads it: a value outside 5..172800 silently becomes 3600
  (pluginutil.go ValidateExecutionTimeout); on timeout or cancel the whole group gets SIGKILL (executers_unix.go
  killProcess, ``syscall.Kill(-pid)``) and the exit code is 137 (constants_unix.go CommandStoppedPreemptivelyExitCode),
  so the status is TimedOut or Cancelled (pluginutil_unix.go GetStatus);
- output: stdout kept to 24000 bytes, the last 20 replaced by ``--output truncated--`` (runpluginutil.go, pluginutil.go
  StringPrefix: an output of exactly 24000 bytes is cut too). The agent cuts stderr at 24000 as well
  (runpluginutil.go L268 uses MaxStdoutLength) while the API reference (GetCommandInvocation StandardErrorContent)
  says "the first 8,000 characters": the stricter 8000 is emulated. Both are empty until the plugin finished
  (API reference). ListCommandInvocations' CommandPlugins[].Output is the agent's combined string of 2500 characters
  at most (iohandler.go TruncateOutput).

The service side, from the API reference and the Run Command user guide ("Understanding command statuses",
"Run commands at scale"):

- an invocation is Pending until delivered, InProgress while it runs, then Success / Failed / TimedOut (StatusDetails
  ExecutionTimedOut) / Cancelled; ResponseCode is -1 until the plugin reported;
- a node whose agent is not connected (PingStatus ConnectionLost, a stopped instance) keeps its invocation Delayed
  ("the target wasn't available ... The system will try to send the command again") until TimeoutSeconds plus the
  document's executionTimeout have passed, then TimedOut / DeliveryTimedOut (user guide: Pending "If the command isn't
  received by the agent before the length of time passes that is equal to the sum of the Timeout (seconds) parameter
  and the Execution timeout parameter, the status changes to Delivery Timed Out"); ``aws.ssm.delivery_timeout_seconds``
  shortens that for tests;
- a node that no longer exists for Systems Manager (PingStatus Inactive: deregistered) is Undeliverable at once
  ("The command can't be delivered to the managed node. The managed node might not exist or might not be
  responding"). Which PingStatus leads to which of the two is not published: the stricter split (a long wait for a
  node that may come back) is emulated;
- MaxConcurrency (default 50) invocations run at once: a percentage of the targets, rounded down, at least 1 (the
  guide does not say how it rounds: down is the stricter); MaxErrors (default 0): once Failed and ExecutionTimedOut
  invocations exceed it, invocations not yet sent become Cancelled / Terminated ("the system stops sending the
  command to additional targets"); DeliveryTimedOut and Undeliverable do not count;
- GetCommandInvocation / ListCommandInvocations see a new command only ``aws.ssm.invocation_visible_ms`` after
  SendCommand (eventual consistency: GetCommandInvocation answers InvocationDoesNotExist);
- CancelCommand: pending invocations are Cancelled at once, running ones go through Cancelling (the agent kills the
  process group) to Cancelled.

Targets: ``InstanceIds`` (at most 50, each well formed and a node of the world, else InvalidInstanceId; a node of the
wrong platform: UnsupportedPlatformType; an id given twice: DuplicateInstanceId) or ``Targets`` (at most 5; keys
``InstanceIds``, ``tag:<key>``, ``tag-key``; another key is a ValidationException), which resolve to the managed nodes
(DescribeInstanceInformation's: a stopped instance is not one) that match them all.
"""
from __future__ import annotations

import asyncio
import datetime
import math
import os
import re
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .aws_ssm import ACTIONS, max_results, next_token_page, validation_error
from .context import CallContext, EmulatorState
from .errors import ApiError
from .sandbox import STDERR, node_home
from .ssm_nodes import node_for_target, valid_node_id
from .world import ManagedNode

EXTENSION_KEY = 'ssm-commands'

# Command documents and their one plugin (AWS-RunShellScript / AWS-RunPowerShellScript document content).
DOCUMENTS = {
    'AWS-RunShellScript': {'plugin': 'aws:runShellScript', 'dir': 'awsrunShellScript', 'platforms': ('Linux', 'MacOS'),
                           'script': '_script.sh'},
    'AWS-RunPowerShellScript': {'plugin': 'aws:runPowerShellScript', 'dir': 'awsrunPowerShellScript',
                                'platforms': ('Windows', 'Linux', 'MacOS'), 'script': '_script.ps1'},
}
# The documents' parameters (both: commands, workingDirectory, executionTimeout; commands required).
DOCUMENT_PARAMETERS = ('commands', 'workingDirectory', 'executionTimeout')
# executionTimeout's allowedPattern in both documents: 1..172800 as a string.
EXECUTION_TIMEOUT_PATTERN = re.compile(r'^([1-9][0-9]{0,4}|1[0-6][0-9]{4}|17[0-1][0-9]{3}|172[0-7][0-9]{2}|172800)$')
DEFAULT_EXECUTION_TIMEOUT = 3600
# The agent's own bounds (pluginutil.go): outside them it applies the default.
AGENT_TIMEOUT_RANGE = (5, 172800)
# Request limits (botocore ssm service-2.json: InstanceIdList max 50, Targets max 5, Target Values max 50,
# TimeoutSeconds 30..2592000, Comment max 100, S3 bucket 3..63, key prefix max 500, MaxConcurrency / MaxErrors).
MAX_INSTANCE_IDS = 50
MAX_TARGETS = 5
MAX_TARGET_VALUES = 50
TIMEOUT_SECONDS_RANGE = (30, 2592000)
# TimeoutSeconds unset: the API reference gives no default; the console fills in 600 (its "Timeout (seconds)").
DEFAULT_TIMEOUT_SECONDS = 600
COMMENT_MAX = 100
MAX_CONCURRENCY_PATTERN = re.compile(r'^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$')
MAX_ERRORS_PATTERN = re.compile(r'^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$')
DEFAULT_MAX_CONCURRENCY = '50'
DEFAULT_MAX_ERRORS = '0'
COMMAND_ID_LENGTH = 36
# Output limits (see the module docstring).
MAX_STDOUT = 24000
MAX_STDERR = 8000
TRUNCATED_SUFFIX = '--output truncated--'
MAX_PLUGIN_OUTPUT = 2500
ERROR_TITLE = '\n----------ERROR-------\n'
TRUNCATE_OUT = '\n---Output truncated---'
TRUNCATE_ERROR = '\n---Error truncated----'
# The agent's exit code for a process it killed on timeout or cancel (constants_unix.go).
STOPPED_EXIT_CODE = 137
# How long the service takes to hand a command to a connected agent, and the agent to start or kill it.
DELIVERY_SECONDS = 0.05
# After the script exits, how long the agent's copies may still read output left in the pipes.
LATE_OUTPUT_SECONDS = 1.0
# Delayed: the service retries delivery this often while the node is unreachable.
RETRY_SECONDS = 1.0

FINAL_DETAILS = ('Success', 'Failed', 'ExecutionTimedOut', 'DeliveryTimedOut', 'Cancelled', 'Terminated', 'Undeliverable')
# Status for each StatusDetails value. The reference lists both sets but not the mapping for the last three: Undeliverable
# reads as Failed and Terminated as Cancelled (the enum has no value of their own).
STATUS_OF = {'Pending': 'Pending', 'Delayed': 'Delayed', 'InProgress': 'InProgress', 'Success': 'Success', 'Failed': 'Failed',
             'ExecutionTimedOut': 'TimedOut', 'DeliveryTimedOut': 'TimedOut', 'Cancelled': 'Cancelled', 'Cancelling': 'Cancelling',
             'Terminated': 'Cancelled', 'Undeliverable': 'Failed'}
# StatusDetails as the API writes them ("In Progress", "Delivery Timed Out"...).
DETAIL_TEXT = {'InProgress': 'In Progress', 'ExecutionTimedOut': 'Execution Timed Out', 'DeliveryTimedOut': 'Delivery Timed Out'}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _epoch(when: datetime.datetime | None) -> float | None:
    return when.timestamp() if when else None


@dataclass
class NodeInvocation:
    """One node's copy of a command."""
    node_id: str
    details: str = 'Pending'
    response_code: int = -1
    stdout: bytes = b''
    stderr: bytes = b''
    started: datetime.datetime | None = None
    finished: datetime.datetime | None = None
    process: Any = None
    task: asyncio.Future | None = None
    cancel_requested: bool = False

    @property
    def status(self) -> str:
        return STATUS_OF[self.details]

    @property
    def final(self) -> bool:
        return self.details in FINAL_DETAILS

    @property
    def error(self) -> bool:
        """Counts against MaxErrors (Failed and Execution Timed Out; the guide's Undeliverable and Delivery Timed Out do not)."""
        return self.details in ('Failed', 'ExecutionTimedOut')

    def finish(self, details: str, code: int | None = None) -> None:
        self.details = details
        if code is not None:
            self.response_code = code
        self.finished = _now()


@dataclass
class Command:
    command_id: str
    document: str
    parameters: dict[str, list[str]]
    execution_timeout: int
    timeout_seconds: int
    comment: str
    instance_ids: list[str]
    targets: list[dict[str, Any]]
    max_concurrency: str
    max_errors: str
    output_s3_bucket: str
    output_s3_prefix: str
    output_s3_region: str
    cloudwatch: dict[str, Any] | None
    region: str
    requested: datetime.datetime
    visible_at: float
    invocations: dict[str, NodeInvocation] = field(default_factory=dict)
    cancel_requested: bool = False
    runner: asyncio.Future | None = None

    @property
    def plugin(self) -> str:
        return str(DOCUMENTS[self.document]['plugin'])

    def visible(self) -> bool:
        return asyncio.get_event_loop().time() >= self.visible_at

    def limit(self, value: str, total: int, minimum: int) -> int:
        """A MaxConcurrency / MaxErrors value as a count of these targets (percentages rounded down)."""
        if value.endswith('%'):
            return max(minimum, math.floor(int(value[:-1]) * total / 100))
        return int(value)

    @property
    def errors(self) -> int:
        return sum(1 for inv in self.invocations.values() if inv.error)

    @property
    def status(self) -> tuple[str, str]:
        """The command's Status and StatusDetails from its invocations (user guide, "Command status")."""
        invocations = list(self.invocations.values())
        if not all(inv.final for inv in invocations):
            if self.cancel_requested:
                return 'Cancelling', 'Cancelling'
            if all(inv.details == 'Pending' for inv in invocations):
                return 'Pending', 'Pending'
            return 'InProgress', 'InProgress'
        if self.cancel_requested and any(inv.details == 'Cancelled' for inv in invocations):
            return 'Cancelled', 'Cancelled'
        if not invocations:
            # No managed node matched the targets ("NoInstancesInTag", a ListCommands Status filter value).
            return 'Success', 'NoInstancesInTag'
        max_errors = self.limit(self.max_errors, len(invocations), 0)
        if self.errors > max_errors:
            timed_out = [inv for inv in invocations if inv.details == 'ExecutionTimedOut']
            return ('TimedOut', 'ExecutionTimedOut') if timed_out and len(timed_out) >= self.errors - len(timed_out) else ('Failed', 'Failed')
        if all(inv.details == 'Undeliverable' for inv in invocations):
            # "if all invocations in a command have the status Undeliverable, then the command status returned is Failed"
            return 'Failed', 'Undeliverable'
        if all(inv.details in ('Success', 'Undeliverable') for inv in invocations):
            return 'Success', 'Success'
        return 'Success', 'Incomplete'


class CommandsState:
    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}


def commands_state(state: EmulatorState) -> CommandsState:
    found = state.extensions.get(EXTENSION_KEY)
    if found is None:
        found = state.extensions[EXTENSION_KEY] = CommandsState()
    return found


# --------------------------------------------------------------------------- request checks


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError('SerializationException', f'{where} must be a list of strings', 400)
    return value


def _document(ctx: CallContext) -> str:
    name = ctx.params.get('DocumentName')
    if not isinstance(name, str) or not name:
        raise validation_error('documentName', name, 'Member must not be null')
    if not re.match(r'^[a-zA-Z0-9_\-.:/]{3,128}$', name):
        raise validation_error('documentName', name, 'Member must satisfy regular expression pattern: ^[a-zA-Z0-9_\\-.:/]{3,128}$')
    # An ARN of an AWS-owned document names it by its last part.
    short = name.rsplit('/', 1)[-1] if name.startswith('arn:') else name
    if short not in DOCUMENTS:
        # Only the two shell documents are emulated; any other is "not found" (InvalidDocument: "The specified SSM
        # document doesn't exist").
        raise ApiError('InvalidDocument', f'Document with name {name} does not exist.', 400)
    version = ctx.params.get('DocumentVersion')
    if version not in (None, '$LATEST', '$DEFAULT', '1'):
        raise ApiError('InvalidDocumentVersion', f'Document version {version} does not exist for document {name}.', 400)
    return short


def _parameters(ctx: CallContext) -> tuple[dict[str, list[str]], int]:
    """The document parameters, checked as the service checks them against the document (InvalidParameters)."""
    raw = ctx.params.get('Parameters') or {}
    if not isinstance(raw, dict):
        raise ApiError('SerializationException', 'Parameters must be a map', 400)
    params: dict[str, list[str]] = {}
    for key, values in raw.items():
        if key not in DOCUMENT_PARAMETERS:
            raise ApiError('InvalidParameters', f'Parameter "{key}" is not defined in the document.', 400)
        params[key] = _strings(values, f'Parameters.{key}')
    commands = params.get('commands')
    if not commands or not any(c.strip() for c in commands):
        raise ApiError('InvalidParameters', 'Parameter "commands" is required and must not be empty.', 400)
    timeout = params.get('executionTimeout', [str(DEFAULT_EXECUTION_TIMEOUT)])
    if len(timeout) != 1 or not EXECUTION_TIMEOUT_PATTERN.match(timeout[0]):
        raise ApiError('InvalidParameters', f'Parameter "executionTimeout" value {timeout} does not match its allowed pattern '
                       '(1 to 172800 seconds).', 400)
    if len(params.get('workingDirectory', [''])) != 1:
        raise ApiError('InvalidParameters', 'Parameter "workingDirectory" takes one value.', 400)
    # The agent's reading of the value (pluginutil.go ValidateExecutionTimeout): under 5 it runs with the default.
    seconds = int(timeout[0])
    if not AGENT_TIMEOUT_RANGE[0] <= seconds <= AGENT_TIMEOUT_RANGE[1]:
        seconds = DEFAULT_EXECUTION_TIMEOUT
    return params, seconds


def _pattern(ctx: CallContext, name: str, pattern: re.Pattern[str], default: str) -> str:
    value = ctx.params.get(name)
    if value is None:
        return default
    if not isinstance(value, str) or not 1 <= len(value) <= 7 or not pattern.match(value):
        raise validation_error(name[0].lower() + name[1:], value, f'Member must satisfy regular expression pattern: {pattern.pattern}')
    return value


def _node_error(ids: list[str], account: str) -> ApiError:
    # The service's text for ids it cannot use ("Instances [[i-...]] not in a valid state for account ..."): InvalidInstanceId
    # covers unknown ids, terminated instances and nodes that are not managed (API reference, SendCommand errors).
    listed = ', '.join(ids)
    return ApiError('InvalidInstanceId', f'Instances [[{listed}]] not in a valid state for account {account}', 400)


def _by_instance_ids(ctx: CallContext, ids: list[str], document: str) -> list[ManagedNode]:
    if len(ids) > MAX_INSTANCE_IDS:
        raise validation_error('instanceIds', ids, f'Member must have length less than or equal to {MAX_INSTANCE_IDS}')
    if len(set(ids)) != len(ids):
        # DuplicateInstanceId is one of SendCommand's errors (botocore's model): a repeated id is refused, not merged.
        raise ApiError('DuplicateInstanceId', 'You can\u2019t specify a managed node ID more than once.', 400)
    nodes: list[ManagedNode] = []
    bad: list[str] = []
    for node_id in ids:
        node = node_for_target(ctx, node_id) if valid_node_id(node_id) else None
        # A stopped instance is in a valid state (its invocation waits); a terminated one is not.
        if node is None or (node.is_ec2 and node.state in ('terminated', 'shutting-down')):
            bad.append(node_id)
        else:
            nodes.append(node)
    if bad:
        raise _node_error(bad, ctx.world.aws.account_id)
    wrong = [n.node_id for n in nodes if n.platform_type not in DOCUMENTS[document]['platforms']]
    if wrong:
        raise ApiError('UnsupportedPlatformType', f'The document {document} does not support the platform type of {", ".join(wrong)}.', 400)
    return nodes


def _by_targets(ctx: CallContext, targets: Any, document: str) -> list[ManagedNode]:
    if not isinstance(targets, list) or len(targets) > MAX_TARGETS:
        raise validation_error('targets', targets, f'Member must have length less than or equal to {MAX_TARGETS}')
    aws = ctx.world.aws
    nodes = [n for n in aws.managed_nodes if n.managed] if ctx.region == aws.region else []
    for target in targets:
        key = target.get('Key') if isinstance(target, dict) else None
        values = _strings(target.get('Values') or [], 'Targets.Values') if isinstance(target, dict) else []
        if not isinstance(key, str) or not 1 <= len(key) <= 163:
            raise validation_error('targets.member.key', key, 'Member must have length between 1 and 163')
        if not values or len(values) > MAX_TARGET_VALUES:
            raise validation_error('targets.member.values', values, f'Member must have length between 1 and {MAX_TARGET_VALUES}')
        if key == 'InstanceIds':
            nodes = [n for n in nodes if n.node_id in values]
        elif key == 'tag-key':
            nodes = [n for n in nodes if any(v in n.tags for v in values)]
        elif key.startswith('tag:') and len(key) > 4:
            name = key[4:]
            nodes = [n for n in nodes if n.tags.get(name) in values]
        else:
            # resource-groups:* keys are not emulated. What SendCommand answers for a key it cannot resolve is not
            # published (its error list has no target error): refused as a validation error, the stricter reading.
            raise ApiError('ValidationException', f'Target key {key} is not valid.', 400)
    # Nodes whose platform the document does not support are left out of a tag target (they are not "targets" of it).
    return [n for n in nodes if n.platform_type in DOCUMENTS[document]['platforms']]


def _timeout_seconds(ctx: CallContext) -> int:
    value = ctx.params.get('TimeoutSeconds')
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError('SerializationException', 'TimeoutSeconds must be an integer', 400)
    low, high = TIMEOUT_SECONDS_RANGE
    if not low <= value <= high:
        raise validation_error('timeoutSeconds', value, f'Member must have value between {low} and {high}')
    return value


def _text(ctx: CallContext, name: str, low: int, high: int) -> str:
    value = ctx.params.get(name)
    if value is None:
        return ''
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise validation_error(name[0].lower() + name[1:], value, f'Member must have length between {low} and {high}')
    return value


# --------------------------------------------------------------------------- the agent


def _truncate(data: bytes, limit: int) -> bytes:
    """pluginutil.go StringPrefix: under the limit as is, else the first limit-20 bytes and the suffix."""
    if len(data) < limit:
        return data
    return data[:limit - len(TRUNCATED_SUFFIX)] + TRUNCATED_SUFFIX.encode()


def _plugin_output(stdout: bytes, stderr: bytes, capacity: int = MAX_PLUGIN_OUTPUT) -> str:
    """iohandler.go TruncateOutput, byte for byte."""
    title = ERROR_TITLE.encode() if stderr else b''
    available = capacity - len(title)
    if len(stdout) + len(stderr) < available:
        out = stdout + title + stderr
    elif len(stdout) > available // 2 and len(stderr) > available // 2:
        size = available - len(TRUNCATE_ERROR) - len(TRUNCATE_OUT)
        out = stdout[:size // 2] + TRUNCATE_OUT.encode() + title + stderr[:size // 2] + TRUNCATE_ERROR.encode()
    elif len(stdout) <= available // 2:
        size = available - len(TRUNCATE_ERROR)
        out = stdout + title + stderr[:size - len(stdout)] + TRUNCATE_ERROR.encode()
    else:
        size = available - len(TRUNCATE_OUT)
        out = stdout[:size - len(stderr)] + TRUNCATE_OUT.encode() + title + stderr
    return out.decode('utf-8', errors='replace')


def _inside(root: Path, path: str) -> Path | None:
    candidate = (root / path.lstrip('/')).resolve()
    root = root.resolve()
    return candidate if candidate == root or root in candidate.parents else None


def _kill_group(process: Any) -> None:
    """executers_unix.go killProcess: SIGKILL to the process group (the minus sign)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _execute(state: EmulatorState, command: Command, inv: NodeInvocation, node: ManagedNode) -> None:
    """The agent runs the plugin: one script, a timeout, two output streams."""
    assert node.sandbox is not None
    doc = DOCUMENTS[command.document]
    inv.details = 'InProgress'
    inv.started = _now()
    # The orchestration directory as the agent lays it out (runscript.go; <instance>/document/orchestration/<command>/<plugin>).
    orchestration = (node.sandbox / 'var' / 'lib' / 'amazon' / 'ssm' / node.node_id / 'document' / 'orchestration'
                     / command.command_id / str(doc['dir']) / f'0.{doc["dir"]}')
    orchestration.mkdir(parents=True, exist_ok=True)
    script = orchestration / str(doc['script'])
    script.write_text('\n'.join(command.parameters['commands']) + '\n', encoding='utf-8')
    script.chmod(0o700)
    working = command.parameters.get('workingDirectory', [''])[0]
    if working.startswith('/'):
        workdir = _inside(node.sandbox, working)
    else:
        workdir = node.sandbox / 'usr' / 'bin'
        workdir.mkdir(parents=True, exist_ok=True)
    if command.document == 'AWS-RunPowerShellScript' and node.platform_type != 'Windows':
        # Linux: /usr/bin/pwsh -f _script.ps1 (constants_unix.go); without PowerShell installed the start fails.
        argv = ['/usr/bin/pwsh', '-f', str(script)]
    else:
        # Windows nodes cannot be emulated: their PowerShell runs under sh, so only portable lines (echo) behave.
        argv = ['sh', '-c', str(script)]
    if workdir is None or not workdir.is_dir():
        # command.Dir does not exist: Start fails, the plugin is marked failed with exit code 1 (executers.go, runscript.go).
        inv.stderr = f'failed to run commands: fork/exec {argv[0]}: no such file or directory (chdir {working})'.encode()
        inv.finish('Failed', 1)
        return
    home = node_home(node.sandbox, 'root')
    env = {'HOME': str(home), 'USER': 'root', 'LOGNAME': 'root', 'PWD': str(workdir)}
    try:
        process = await state.runner.start(workdir, argv, env=env)
    except OSError as exc:
        inv.stderr = f'failed to run commands: {exc.strerror or exc}'.encode()
        inv.finish('Failed', 1)
        return
    inv.process = process
    process.close_stdin()
    stdout, stderr = bytearray(), bytearray()

    async def collect() -> None:
        while (item := await process.read()) is not None:
            stream, data = item
            (stderr if stream == STDERR else stdout).extend(data)

    collector = asyncio.ensure_future(collect())
    timed_out = cancelled = False
    waiter = asyncio.ensure_future(process.wait())
    try:
        deadline = asyncio.get_event_loop().time() + command.execution_timeout
        while not waiter.done():
            if inv.cancel_requested:
                cancelled = True
                break
            remaining = deadline - asyncio.get_event_loop().time()
            if remaining <= 0:
                timed_out = True
                break
            await asyncio.wait([waiter], timeout=min(remaining, 0.05))
        if timed_out or cancelled:
            _kill_group(process)
            await waiter
    finally:
        inv.process = None
    try:
        await asyncio.wait_for(asyncio.shield(collector), LATE_OUTPUT_SECONDS)
    except asyncio.TimeoutError:
        # A background child still holds the pipes: the agent's writers stop (executers.go cancellableWriter on
        # timeout and cancel; after a normal exit Go's Wait returns once the pipes close, emulated by this bound).
        collector.cancel()
    process.close()
    inv.stdout, inv.stderr = bytes(stdout), bytes(stderr)
    if timed_out:
        inv.finish('ExecutionTimedOut', STOPPED_EXIT_CODE)
    elif cancelled:
        inv.finish('Cancelled', STOPPED_EXIT_CODE)
    else:
        code = process.returncode
        # Go's ExitStatus() of a process killed by a signal is -1 (executers.go).
        code = -1 if code is None or code < 0 else code
        inv.finish('Success' if code == 0 else 'Failed', code)


def _delivery_seconds(state: EmulatorState, command: Command) -> float:
    override = state.world.aws.ssm.delivery_timeout_seconds
    return override if override is not None else command.timeout_seconds + command.execution_timeout


async def _deliver(state: EmulatorState, command: Command, inv: NodeInvocation) -> None:
    """Send one invocation to its node: run it, or wait for the node until the delivery timeout."""
    node = state.world.aws.managed_node(inv.node_id)
    assert node is not None
    await asyncio.sleep(DELIVERY_SECONDS)
    if inv.final:
        return
    if node.ping_status == 'Inactive':
        inv.finish('Undeliverable')
        return
    deadline = command.requested.timestamp() + _delivery_seconds(state, command)
    while not node.connected:
        inv.details = 'Delayed'
        if _now().timestamp() >= deadline:
            inv.finish('DeliveryTimedOut')
            return
        await asyncio.sleep(min(RETRY_SECONDS, max(0.01, deadline - _now().timestamp())))
        if inv.final:
            return
    await _execute(state, command, inv, node)


async def _run(state: EmulatorState, command: Command) -> None:
    """The service's rate control: MaxConcurrency invocations at a time, stop sending after MaxErrors."""
    total = len(command.invocations)
    concurrency = command.limit(command.max_concurrency, total, 1)
    max_errors = command.limit(command.max_errors, total, 0)
    running: set[asyncio.Future] = set()
    for inv in command.invocations.values():
        while len(running) >= concurrency:
            finished, _pending = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running -= finished
        if inv.final:
            continue  # cancelled while queued
        if command.errors > max_errors:
            inv.finish('Terminated')
            continue
        inv.task = asyncio.ensure_future(_deliver(state, command, inv))
        running.add(inv.task)
    if running:
        await asyncio.wait(running)


# --------------------------------------------------------------------------- actions


@ACTIONS.register('SendCommand')
async def send_command(ctx: CallContext) -> dict[str, Any]:
    document = _document(ctx)
    params, execution_timeout = _parameters(ctx)
    ids, targets = ctx.params.get('InstanceIds'), ctx.params.get('Targets')
    if ids and targets:
        raise ApiError('ValidationException', 'You can specify InstanceIds or Targets, not both.', 400)
    if not ids and not targets:
        raise ApiError('ValidationException', 'Either InstanceIds or Targets must be specified.', 400)
    nodes = _by_instance_ids(ctx, _strings(ids, 'InstanceIds'), document) if ids else _by_targets(ctx, targets, document)
    timeout_seconds = _timeout_seconds(ctx)
    comment = _text(ctx, 'Comment', 0, COMMENT_MAX)
    bucket = _text(ctx, 'OutputS3BucketName', 3, 63)
    prefix = _text(ctx, 'OutputS3KeyPrefix', 0, 500)
    s3_region = _text(ctx, 'OutputS3Region', 3, 20) or (ctx.region or '')
    cloudwatch = ctx.params.get('CloudWatchOutputConfig')
    command = Command(
        command_id=str(uuid.uuid4()), document=document, parameters=params, execution_timeout=execution_timeout,
        timeout_seconds=timeout_seconds, comment=comment, instance_ids=[n.node_id for n in nodes] if ids else [],
        targets=targets or [], max_concurrency=_pattern(ctx, 'MaxConcurrency', MAX_CONCURRENCY_PATTERN, DEFAULT_MAX_CONCURRENCY),
        max_errors=_pattern(ctx, 'MaxErrors', MAX_ERRORS_PATTERN, DEFAULT_MAX_ERRORS), output_s3_bucket=bucket,
        output_s3_prefix=prefix, output_s3_region=s3_region, cloudwatch=cloudwatch if isinstance(cloudwatch, dict) else None,
        region=ctx.region or ctx.world.aws.region, requested=_now(),
        visible_at=asyncio.get_event_loop().time() + ctx.world.aws.ssm.invocation_visible_ms / 1000,
        invocations={n.node_id: NodeInvocation(node_id=n.node_id) for n in nodes})
    commands_state(ctx.state).commands[command.command_id] = command
    command.runner = asyncio.ensure_future(_run(ctx.state, command))
    return {'Command': _command_view(command)}


def _s3_url(command: Command, node_id: str, stream: str) -> str:
    if not command.output_s3_bucket:
        return ''
    doc = DOCUMENTS[command.document]['dir']
    key = '/'.join(p for p in (command.output_s3_prefix.strip('/'), command.command_id, node_id, doc, f'0.{doc}', stream) if p)
    return f'https://s3.{command.output_s3_region}.amazonaws.com/{command.output_s3_bucket}/{key}'


def _command_view(command: Command) -> dict[str, Any]:
    status, details = command.status
    invocations = list(command.invocations.values())
    view: dict[str, Any] = {
        'CommandId': command.command_id, 'DocumentName': command.document, 'DocumentVersion': '$DEFAULT',
        'Comment': command.comment, 'ExpiresAfter': command.requested.timestamp() + command.timeout_seconds + command.execution_timeout,
        'Parameters': command.parameters, 'InstanceIds': command.instance_ids, 'Targets': command.targets,
        'RequestedDateTime': command.requested.timestamp(), 'Status': status, 'StatusDetails': details,
        'OutputS3Region': command.output_s3_region, 'OutputS3BucketName': command.output_s3_bucket,
        'OutputS3KeyPrefix': command.output_s3_prefix, 'MaxConcurrency': command.max_concurrency, 'MaxErrors': command.max_errors,
        'TargetCount': len(invocations), 'CompletedCount': sum(1 for i in invocations if i.final),
        'ErrorCount': command.errors, 'DeliveryTimedOutCount': sum(1 for i in invocations if i.details == 'DeliveryTimedOut'),
        'ServiceRole': '', 'NotificationConfig': {'NotificationArn': '', 'NotificationEvents': [], 'NotificationType': ''},
        'TimeoutSeconds': command.timeout_seconds,
        'CloudWatchOutputConfig': command.cloudwatch or {'CloudWatchLogGroupName': '', 'CloudWatchOutputEnabled': False},
    }
    return view


def _invocation_status(inv: NodeInvocation) -> tuple[str, str]:
    """Status and StatusDetails (as the API spells them) of an invocation; a running one being killed is Cancelling."""
    if inv.cancel_requested and not inv.final:
        return 'Cancelling', 'Cancelling'
    return inv.status, DETAIL_TEXT.get(inv.details, inv.details)


# CommandPluginStatus has no Delayed or Cancelling: the plugin is still Pending or InProgress then.
PLUGIN_STATUS = {'Delayed': 'Pending', 'Cancelling': 'InProgress'}


def _plugin_view(command: Command, inv: NodeInvocation) -> dict[str, Any]:
    status, details = _invocation_status(inv)
    plugin: dict[str, Any] = {
        'Name': command.plugin, 'Status': PLUGIN_STATUS.get(status, status),
        'StatusDetails': details, 'ResponseCode': inv.response_code,
        'Output': _plugin_output(inv.stdout, inv.stderr) if inv.final else '',
        'StandardOutputUrl': _s3_url(command, inv.node_id, 'stdout'), 'StandardErrorUrl': _s3_url(command, inv.node_id, 'stderr'),
        'OutputS3Region': command.output_s3_region, 'OutputS3BucketName': command.output_s3_bucket,
        'OutputS3KeyPrefix': command.output_s3_prefix,
    }
    if inv.started:
        plugin['ResponseStartDateTime'] = _epoch(inv.started)
    if inv.finished and inv.started:
        plugin['ResponseFinishDateTime'] = _epoch(inv.finished)
    return plugin


def _invocation_view(ctx: CallContext, command: Command, inv: NodeInvocation, details: bool) -> dict[str, Any]:
    node = ctx.world.aws.managed_node(inv.node_id)
    status, detail_text = _invocation_status(inv)
    view: dict[str, Any] = {
        'CommandId': command.command_id, 'InstanceId': inv.node_id, 'InstanceName': node.computer_name if node else '',
        'Comment': command.comment, 'DocumentName': command.document, 'DocumentVersion': '$DEFAULT',
        'RequestedDateTime': command.requested.timestamp(), 'Status': status, 'StatusDetails': detail_text, 'TraceOutput': '',
        'StandardOutputUrl': _s3_url(command, inv.node_id, 'stdout'), 'StandardErrorUrl': _s3_url(command, inv.node_id, 'stderr'),
        'CommandPlugins': [_plugin_view(command, inv)] if details else [], 'ServiceRole': '',
        'NotificationConfig': {'NotificationArn': '', 'NotificationEvents': [], 'NotificationType': ''},
        'CloudWatchOutputConfig': command.cloudwatch or {'CloudWatchLogGroupName': '', 'CloudWatchOutputEnabled': False},
    }
    return view


def _command_id(ctx: CallContext, required: bool = True) -> str | None:
    value = ctx.params.get('CommandId')
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) != COMMAND_ID_LENGTH:
        raise validation_error('commandId', value, f'Member must have length equal to {COMMAND_ID_LENGTH}')
    return value


def _known(ctx: CallContext, command_id: str) -> Command:
    command = commands_state(ctx.state).commands.get(command_id)
    if command is None or command.region != (ctx.region or ctx.world.aws.region):
        raise ApiError('InvalidCommandId', f'Command {command_id} was not found.', 400)
    return command


def _visible(ctx: CallContext) -> list[Command]:
    region = ctx.region or ctx.world.aws.region
    found = [c for c in commands_state(ctx.state).commands.values() if c.region == region and c.visible()]
    return sorted(found, key=lambda c: c.requested, reverse=True)


@ACTIONS.register('ListCommands')
async def list_commands(ctx: CallContext) -> dict[str, Any]:
    size = max_results(ctx, 1, 50, 50)
    command_id = _command_id(ctx, required=False)
    instance_id = ctx.params.get('InstanceId')
    commands = _visible(ctx)
    if command_id is not None:
        commands = [c for c in commands if c.command_id == command_id]
    if instance_id:
        commands = [c for c in commands if instance_id in c.invocations]
    chunk, token = next_token_page(ctx, commands, size, {'c': command_id, 'i': instance_id})
    answer: dict[str, Any] = {'Commands': [_command_view(c) for c in chunk]}
    if token:
        answer['NextToken'] = token
    return answer


@ACTIONS.register('ListCommandInvocations')
async def list_command_invocations(ctx: CallContext) -> dict[str, Any]:
    size = max_results(ctx, 1, 50, 50)
    command_id = _command_id(ctx, required=False)
    instance_id = ctx.params.get('InstanceId')
    details = bool(ctx.params.get('Details', False))
    pairs = [(c, inv) for c in _visible(ctx) for inv in c.invocations.values()
             if (command_id is None or c.command_id == command_id) and (not instance_id or inv.node_id == instance_id)]
    chunk, token = next_token_page(ctx, pairs, size, {'c': command_id, 'i': instance_id, 'd': details})
    answer: dict[str, Any] = {'CommandInvocations': [_invocation_view(ctx, c, inv, details) for c, inv in chunk]}
    if token:
        answer['NextToken'] = token
    return answer


@ACTIONS.register('GetCommandInvocation')
async def get_command_invocation(ctx: CallContext) -> dict[str, Any]:
    command_id = _command_id(ctx)
    assert command_id is not None
    instance_id = ctx.params.get('InstanceId')
    if not isinstance(instance_id, str) or not instance_id:
        raise validation_error('instanceId', instance_id, 'Member must not be null')
    if not valid_node_id(instance_id):
        raise ApiError('InvalidInstanceId', f'Instance Id {instance_id} is not valid.', 400)
    command = commands_state(ctx.state).commands.get(command_id)
    plugin = ctx.params.get('PluginName')
    inv = command.invocations.get(instance_id) if command is not None else None
    if command is None or inv is None or not command.visible():
        # "The command ID and managed node ID you specified didn't match any invocations": also right after SendCommand.
        raise ApiError('InvocationDoesNotExist', 'The command ID and managed node ID you specified didn\u2019t match any invocations. '
                       'Verify the command ID and the managed node ID and try again.', 400)
    if plugin not in (None, '', command.plugin):
        raise ApiError('InvalidPluginName', f'The plugin name {plugin} is not valid for this document.', 400)
    status, details = _invocation_status(inv)
    answer: dict[str, Any] = {
        'CommandId': command.command_id, 'InstanceId': inv.node_id, 'Comment': command.comment, 'DocumentName': command.document,
        'DocumentVersion': '$DEFAULT', 'PluginName': command.plugin, 'ResponseCode': inv.response_code,
        'Status': status, 'StatusDetails': details,
        # Empty until the plugin finished (API reference, StandardOutputContent / StandardErrorContent).
        'StandardOutputContent': _truncate(inv.stdout, MAX_STDOUT).decode('utf-8', errors='replace') if inv.final else '',
        'StandardOutputUrl': _s3_url(command, inv.node_id, 'stdout'),
        'StandardErrorContent': _truncate(inv.stderr, MAX_STDERR).decode('utf-8', errors='replace') if inv.final else '',
        'StandardErrorUrl': _s3_url(command, inv.node_id, 'stderr'),
        'CloudWatchOutputConfig': command.cloudwatch or {'CloudWatchLogGroupName': '', 'CloudWatchOutputEnabled': False},
    }
    if inv.started:
        answer['ExecutionStartDateTime'] = inv.started.strftime('%Y-%m-%dT%H:%M:%S.%fZ')
        end = inv.finished or _now()
        answer['ExecutionElapsedTime'] = f'PT{(end - inv.started).total_seconds():.3f}S'
        if inv.finished:
            answer['ExecutionEndDateTime'] = inv.finished.strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    return answer


@ACTIONS.register('CancelCommand')
async def cancel_command(ctx: CallContext) -> dict[str, Any]:
    command_id = _command_id(ctx)
    assert command_id is not None
    command = _known(ctx, command_id)
    ids = _strings(ctx.params.get('InstanceIds') or [], 'InstanceIds')
    if len(ids) != len(set(ids)):
        raise ApiError('DuplicateInstanceId', 'You can\u2019t specify a managed node ID in more than one association.', 400)
    unknown = [i for i in ids if i not in command.invocations]
    if unknown:
        raise ApiError('InvalidInstanceId', f'Instance Id {unknown[0]} is not part of command {command_id}.', 400)
    if not ids:
        command.cancel_requested = True
    for inv in command.invocations.values():
        if ids and inv.node_id not in ids or inv.final:
            continue
        inv.cancel_requested = True
        if inv.details in ('Pending', 'Delayed'):
            # Not started (queued, pending delivery, delayed): cancelled by the service at once; a started one is killed
            # by the agent (_execute sees cancel_requested).
            if inv.task is not None:
                inv.task.cancel()
            inv.finish('Cancelled')
    # "Attempts to cancel the command ... There is no guarantee that the command will be terminated": the answer is empty.
    return {}
