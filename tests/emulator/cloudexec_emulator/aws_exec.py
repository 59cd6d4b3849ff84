# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Amazon ECS ``ExecuteCommand``, and the registry of every Session Manager session (ECS Exec and SSM StartSession).

ExecuteCommand validates the target the way ECS does and answers a session: an id, a websocket URL on
this emulator (``/v1/data-channel/<id>``, served by :mod:`ssm_agent`) and a token. The token works once
and only for ``token_ttl_seconds``; the registry also enforces the per-container session limit, counting
sessions whose agent side runs (connected, or disconnected and waiting to be resumed) and tokens issued but
not yet used (the agent reserves a session worker as soon as ECS tells it about the session).
SSM's ResumeSession (:mod:`aws_ssm`) gives a disconnected session a new token through :meth:`ExecRegistry.renew`.

Every kind of session is a :class:`ChannelSession`: what the agent end (:mod:`ssm_agent`) needs to know of it is
the target id, the session plugin (the handshake's SessionType), the KMS key, the timings, and :meth:`launch`:
what it runs, where, as whom. :class:`ExecSession` is ECS Exec's (the agent in ECS container mode);
``ssm_sessions.NodeSession`` is StartSession's on a managed node.
"""
from __future__ import annotations

import base64
import secrets
import shlex
import time
import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .aws_ecs import ACTIONS, _cluster, _invalid
from .context import CallContext, EmulatorState
from .errors import ApiError
from .world import EcsCluster, EcsContainer, EcsExecSettings, EcsTask

EXTENSION_KEY = 'aws-ecs-exec'
# Counter service name for the data channel in GET /_emulator/calls ("ws" section).
WS_SERVICE = 'aws-ecs-exec'

NOT_ENABLED_MESSAGE = ('The execute command failed because execute command was not enabled when the task was run or the execute command '
                       'agent isn\u2019t running. Wait and try again or run a new task with execute command enabled and try again.')
# What ECS says when the agent cannot take the session (agent down, or all its session workers busy).
INTERNAL_ERROR_MESSAGE = 'The execute command failed due to an internal error. Try again later.'


@dataclass
class Launch:
    """What the agent starts for a session: the program on a PTY in a sandbox, and what it types in right after."""
    sandbox: Path
    argv: list[str]
    # Environment on top of the sandbox's clean one (HOME, USER... of the session user); None: the sandbox's own.
    env: dict[str, str] | None = None
    # Typed into the terminal as soon as the program runs (a Standard_Stream session's shell profile), newline added.
    profile: str = ''


class LaunchRefused(Exception):
    """The agent cannot start the session's program; the message goes to the client in channel_closed."""


@dataclass(kw_only=True)
class ChannelSession:
    """A Session Manager session as the registry and the agent end see it, whoever started it."""
    session_id: str
    token: str
    # The agent's timings for this session: token_ttl_seconds, idle_timeout_seconds, agent_start_ms, output_delay_ms.
    settings: Any
    # When the current token was issued (by ExecuteCommand, or by ResumeSession).
    issued_at: float = field(default_factory=time.monotonic)
    # Set when a websocket presented the current token; the token is spent from then on.
    token_used: bool = False
    closed: bool = False
    # Wall-clock end of the session (DescribeSessions EndDate), set when it closes.
    ended_at: datetime.datetime | None = None
    # The agent end (ssm_agent.AgentSession) once a first websocket connected; it outlives that websocket.
    agent: Any = None
    # Tokens of this session already spent, so a reused one is refused as such.
    spent_tokens: list[str] = field(default_factory=list)

    # Counters of its data channel (GET /_emulator/calls "ws" section), and the action its fault rules name.
    ws_service: ClassVar[str] = WS_SERVICE
    fault_action: ClassVar[str] = 'ExecuteCommand'
    # The session plugin, as the handshake's SessionType action names it.
    plugin_name: ClassVar[str] = 'InteractiveCommands'
    # What a KMS key that does not match is called in the channel_closed reason.
    kms_key_origin: ClassVar[str] = 'cluster KMS key'

    @property
    def target(self) -> str:
        raise NotImplementedError

    @property
    def kms_key_id(self) -> str | None:
        """The KMS key ARN that encrypts this session (the agent then asks for a handshake), or None."""
        return None

    def launch(self) -> Launch:
        """What to start; raises :class:`LaunchRefused` with the agent's reason when it cannot."""
        raise NotImplementedError


@dataclass(kw_only=True)
class ExecSession(ChannelSession):
    """An ECS Exec session: the agent runs in container mode."""
    cluster: EcsCluster
    task: EcsTask
    container: EcsContainer
    command: str

    @property
    def target(self) -> str:
        """The SSM target id of an ECS container, as the CLI passes it to the session manager plugin."""
        return f'ecs:{self.cluster.name}_{self.task.task_id}_{self.container.runtime_id}'

    @property
    def kms_key_id(self) -> str | None:
        return self.cluster.kms_key_id

    def launch(self) -> Launch:
        # Container mode: the command is split like a shell would (google/shlex) and run directly, as root in the
        # container (amazon-ssm-agent agent/session/shell/shell_unix.go StartCommandExecutor: ContainerMode).
        try:
            argv = shlex.split(self.command, posix=True)
        except ValueError as exc:
            raise LaunchRefused(f'Failed to parse commands input: {exc}') from exc
        if not argv or self.container.sandbox is None:
            raise LaunchRefused('Unable to start command: no command')
        return Launch(sandbox=self.container.sandbox, argv=argv)


class TokenRefused(Exception):
    """The websocket's token is unknown, already used, expired, or for another session."""


class ExecRegistry:
    """All exec sessions of this emulator process."""

    def __init__(self, settings: EcsExecSettings) -> None:
        self.settings = settings
        self.sessions: dict[str, ChannelSession] = {}

    @staticmethod
    def expired(session: ChannelSession, now: float) -> bool:
        """A session that never connected and whose token can no longer be used: nothing holds a worker for it."""
        return session.agent is None and not session.token_used and now - session.issued_at > session.settings.token_ttl_seconds

    def live(self, task: EcsTask, container: EcsContainer) -> int:
        """Sessions holding one of the container's session workers: started on the agent (connected or waiting for
        the client to resume), or issued with a token still usable."""
        now = time.monotonic()
        return sum(1 for s in self.sessions.values()
                   if isinstance(s, ExecSession) and s.task is task and s.container is container and not s.closed
                   and not self.expired(s, now))

    def issue(self, cluster: EcsCluster, task: EcsTask, container: EcsContainer, command: str) -> ExecSession:
        session = ExecSession(session_id=f'ecs-execute-command-{secrets.token_hex(9)[:17]}', token=new_token(), settings=self.settings,
                              cluster=cluster, task=task, container=container, command=command)
        self.sessions[session.session_id] = session
        return session

    def add(self, session: ChannelSession) -> ChannelSession:
        """Register a session another API started (SSM StartSession)."""
        self.sessions[session.session_id] = session
        return session

    def claim(self, session_id: str, token: str) -> ChannelSession:
        """Spend the token of ``session_id``; raises :class:`TokenRefused` with the reason."""
        session = self.sessions.get(session_id)
        if session is None:
            raise TokenRefused('invalid token')
        if any(secrets.compare_digest(old, token) for old in session.spent_tokens):
            raise TokenRefused('token already used')
        if session.closed:
            raise TokenRefused('session ended')
        if not secrets.compare_digest(session.token, token):
            raise TokenRefused('invalid token')
        if session.token_used:
            raise TokenRefused('token already used')
        if time.monotonic() - session.issued_at > session.settings.token_ttl_seconds:
            if session.agent is None:
                session.closed = True   # never started: its reserved worker is free again
            raise TokenRefused('token expired')
        session.token_used = True
        session.spent_tokens.append(session.token)
        return session

    def renew(self, session: ChannelSession) -> None:
        """ResumeSession: a new single-use token for the same session (the old ones stop working)."""
        if not session.token_used:
            session.spent_tokens.append(session.token)
        session.token = new_token()
        session.issued_at = time.monotonic()
        session.token_used = False

    def find(self, session_id: str) -> ChannelSession | None:
        """The session, unless it is unknown or over."""
        session = self.sessions.get(session_id)
        if session is None or session.closed or self.expired(session, time.monotonic()):
            return None
        return session

    def close(self, session: ChannelSession) -> None:
        session.closed = True
        if session.ended_at is None:
            session.ended_at = datetime.datetime.now(datetime.timezone.utc)


def new_token() -> str:
    # Real tokens are long opaque base64 strings; the exact form does not matter to clients.
    return base64.b64encode(secrets.token_bytes(192)).decode()


def _cell_number() -> str:
    # Raw base64 with '+' and '/' guaranteed, as in the real streamUrl: clients must not re-encode the query.
    return base64.b64encode(secrets.token_bytes(30) + b'\xfb\xff\xbf').decode()


def stream_url(state: EmulatorState, session: ChannelSession) -> str:
    """A websocket URL of the session's data channel (every one handed out works; each names a new cell)."""
    base = state.base_url
    ws_base = 'ws' + base[len('http'):] if base.startswith('http') else base
    return f'{ws_base}/v1/data-channel/{session.session_id}?role=publish_subscribe&cell-number={_cell_number()}'


def registry(state: EmulatorState) -> ExecRegistry:
    reg = state.extensions.get(EXTENSION_KEY)
    if reg is None:
        reg = state.extensions[EXTENSION_KEY] = ExecRegistry(state.world.aws.exec_settings)
    return reg


def _find_task(cluster: EcsCluster, ref: str) -> EcsTask | None:
    return next((t for t in cluster.tasks if ref in (t.task_id, t.arn)), None)


@ACTIONS.register('ExecuteCommand')
async def execute_command(ctx: CallContext) -> dict:
    command = ctx.require('command')
    task_ref = ctx.require('task')
    interactive = ctx.params.get('interactive')
    if interactive is None:
        raise ctx.missing('interactive')
    if interactive is not True:
        raise _invalid('Interactive is the only mode supported currently.')
    if not isinstance(command, str) or not isinstance(task_ref, str):
        raise _invalid('command and task must be strings.')
    cluster = _cluster(ctx, ctx.param('cluster'))
    task = _find_task(cluster, task_ref)
    if task is None:
        raise _invalid('The specified task is not found. Specify a valid task and try again.')
    if task.last_status != 'RUNNING':
        raise _invalid(f'The execute command failed because the task is in {task.last_status} status. '
                       'Execute command can only be run on a task in RUNNING status.')
    if not task.enable_execute_command:
        raise _invalid(NOT_ENABLED_MESSAGE)
    name = ctx.param('container')
    if name is None:
        if len(task.containers) > 1:
            raise _invalid('The task has more than one container. Specify a container name and try again.')
        container = task.containers[0]
    else:
        found = next((c for c in task.containers if c.name == name), None)
        if found is None:
            raise _invalid('The specified container is not found. Specify a valid container name and try again.')
        container = found
    if container.last_status != 'RUNNING':
        raise _invalid(f'The execute command failed because the container is in {container.last_status} status.')
    if container.agent_status != 'RUNNING':
        raise ApiError('TargetNotConnectedException', INTERNAL_ERROR_MESSAGE, 400)
    reg = registry(ctx.state)
    if reg.live(task, container) >= reg.settings.session_limit:
        # The agent has no free session worker (SessionWorkersLimit: the ECS agent writes sessionLimit, default 2, into
        # its config; amazon-ecs-agent agent/engine/execcmd/manager_init_task.go). The SSM agent then just stops taking
        # sessions (amazon-ssm-agent mgsinteractor.go processSessionRelatedMessages); what ECS answers is not
        # documented. Field reports of busy agents show this error (aws/containers-roadmap#2518), kept over a hang.
        raise ApiError('TargetNotConnectedException', INTERNAL_ERROR_MESSAGE, 400)
    session = reg.issue(cluster, task, container, command)
    return {
        'clusterArn': cluster.arn, 'containerArn': container.arn, 'containerName': container.name, 'interactive': True,
        'taskArn': task.arn,
        'session': {'sessionId': session.session_id, 'streamUrl': stream_url(ctx.state, session), 'tokenValue': session.token},
    }
