# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Session Manager sessions on managed nodes: StartSession and DescribeSessions, and what the node's agent runs.

**StartSession** ``{Target, DocumentName?, Parameters?, Reason?}`` -> ``{SessionId, TokenValue, StreamUrl}`` (API
reference, API_StartSession). Checked in this order: ``Target`` (1..400 characters), ``Reason`` (1..256, one line),
``DocumentName`` (pattern, then it must exist: InvalidDocument; none given: the shell, "If no document name is
provided, a shell to the managed node is launched by default"), ``Parameters`` (only those the document defines, each
one value of at most 65535 characters, every parameter without a default given: InvalidParameters, the error the SDK's
StartSession lists), then the target: a node the world does not have, one whose agent is not Online, or an instance
that is not running answer ``TargetNotConnected`` "<target> is not connected." - what the service answers for
an unknown id as for an offline node (aws/session-manager-plugin#5: ``--target i-123456`` ->
"TargetNotConnected ... i-123456 is not connected."; aws-samples/sagemaker-ssh-helper#1 for an offline mi- node).
StartSession lists no InvalidInstanceId. The session id is the caller's name, a dash and 17 hex digits (the AWS CLI's
example "Starting session with SessionId: Jane-Roe-07a16060613c408b5"): the IAM user's name, or an assumed role's
session name. The token works once, within ``aws.ssm.token_ttl_seconds``; the stream URL is the data channel of
:mod:`ssm_agent`, as for ECS Exec.

**What the agent runs** (:meth:`NodeSession.launch`; amazon-ssm-agent agent/session/shell/shell_unix.go
StartCommandExecutor, agent/framework/docparser/docparser.go):

- Standard_Stream (SSM-SessionManagerRunShell, or any Standard_Stream document): plain ``sh`` on a PTY (no shell
  properties: ``exec.Command("sh")``), interactive, so it prints its prompt; the document's ``shellProfile.linux``
  (or the node's ``shell_profile``, see world.ManagedNode) typed in right after start (``runShellProfile``). No
  handshake unless the preferences name a ``kmsKeyId`` (sessionplugin.go: RequireHandshake is false for
  Standard_Stream); with one, the KMS handshake exactly as ECS Exec's, SessionType ``Standard_Stream``.
- InteractiveCommands (AWS-StartInteractiveCommand...): ``sh -c <properties.linux.commands>`` with ``{{ name }}``
  replaced by the parameters (not split and run directly as in ECS's container mode). Run As and KMS come from the
  account's preferences, the document having no inputs [inference: the agent reads them from the session's
  configuration, which the service fills from the preferences].
- The session user: with ``runAsEnabled`` the principal's ``SSMSessionRunAs`` tag, else ``runAsDefaultUser``
  (docparser: the principal's user takes precedence); no user: "please set the RunAs default user"; a user the node
  does not have: "failed to start pty since RunAs user <u> does not exist" (the session ends with
  ``Unable to start command: ...`` and DescribeSessions says Failed). Run As off: ``ssm-user`` (the agent runs as
  root, as its systemd unit does). ``runAsElevated`` documents: root.
- The emulator cannot switch users: the shell runs as the emulator's own user. The session user shows in its
  environment: ``HOME`` = ``<sandbox>/home/<user>`` (the agent sets HOME=/home/<user>, root's included) and ``USER`` /
  ``LOGNAME`` = the user - those two stand for the uid switch (the real agent sets only HOME; a client must learn the
  user with ``id -un``, which the emulator cannot fake). The shell starts in the node's sandbox root, not in HOME: the
  agent sets no working directory, so a real shell starts in the agent's own (``/usr/bin`` under its systemd unit).
- Windows nodes run ``sh`` as well (the emulator has no PowerShell); only portable commands behave.

**DescribeSessions** ``{State: Active|History, MaxResults 1..200, NextToken, Filters}``: Active lists Connecting
(issued, never connected), Connected, Disconnected (the client went away; resumable) and Terminating sessions;
History lists Terminated and Failed ones, with EndDate. Filters (at most 6): InvokedAfter, InvokedBefore (timestamps
such as 2024-08-29T00:00:00Z), Target, Owner, Status, SessionId, AccessType. Newest first. ECS Exec sessions are not
listed (whether SSM lists them is not established). Errors: InvalidFilterKey, InvalidNextToken, ValidationException.
"""
from __future__ import annotations

import datetime
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .aws_exec import ChannelSession, ExecRegistry, Launch, LaunchRefused, new_token, registry, stream_url
from .aws_ssm import ACTIONS, max_results, next_token_page, validation_error
from .context import CallContext
from .errors import ApiError
from .sandbox import node_home
from .ssm_documents import check_name, default_inputs, find_document, invalid_document
from .ssm_nodes import node_for_target
from .world import PREFERENCES_DOCUMENT, SSM_DEFAULT_USER, AwsCredential, ManagedNode, SessionDocument, SessionInputs

WS_SERVICE = 'aws-ssm-session'
# The IAM principal tag that names a session's Run As user (Session Manager user guide, "Turn on Run As support").
RUN_AS_TAG = 'SSMSessionRunAs'
# botocore ssm service-2.json: SessionTarget 1..400, SessionReason ^.{1,256}$, SessionManagerParameterValue 1..65535.
TARGET_MAX = 400
REASON_PATTERN = re.compile(r'^.{1,256}$')
PARAMETER_VALUE_MAX = 65535
SESSION_STATES = ('Active', 'History')
ACTIVE_STATUSES = ('Connecting', 'Connected', 'Disconnected', 'Terminating')
SESSION_FILTER_KEYS = ('InvokedAfter', 'InvokedBefore', 'Target', 'Owner', 'Status', 'SessionId', 'AccessType')
SESSION_STATUSES = ('Connected', 'Connecting', 'Disconnected', 'Terminated', 'Terminating', 'Failed')
MAX_SESSION_FILTERS = 6
# DescribeSessions' default page size is not documented.
DEFAULT_SESSION_PAGE = 20
_PARAMETER_REFERENCE = re.compile(r'\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}')


@dataclass
class NodeSettings:
    """The agent's timings for one node session (ChannelSession.settings)."""
    token_ttl_seconds: float
    idle_timeout_seconds: float
    agent_start_ms: int
    output_delay_ms: int


@dataclass(kw_only=True)
class NodeSession(ChannelSession):
    """A StartSession session on a managed node."""
    node: ManagedNode
    document: SessionDocument | None
    inputs: SessionInputs
    owner: str
    # The principal's SSMSessionRunAs tag, as the service resolves it when the session starts.
    principal_run_as: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    started_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))

    ws_service: ClassVar[str] = WS_SERVICE
    fault_action: ClassVar[str] = 'StartSession'
    kms_key_origin: ClassVar[str] = 'session preferences KMS key'

    @property
    def document_name(self) -> str:
        return self.document.name if self.document is not None else PREFERENCES_DOCUMENT

    @property
    def session_type(self) -> str:
        return self.document.session_type if self.document is not None else 'Standard_Stream'

    @property
    def plugin_name(self) -> str:  # type: ignore[override]
        return self.session_type

    @property
    def target(self) -> str:
        return self.node.node_id

    @property
    def kms_key_id(self) -> str | None:
        return self.inputs.kms_key_id

    def _user(self) -> str:
        """The session user, as StartCommandExecutor picks it (see the module docstring)."""
        if self.session_type == 'InteractiveCommands' and self.document is not None \
                and self.document.linux_properties.get('runAsElevated') is True:
            return 'root'
        if not self.inputs.run_as_enabled:
            return SSM_DEFAULT_USER
        user = self.principal_run_as or self.inputs.run_as_default_user
        if not user.strip():
            raise LaunchRefused('Unable to start command: please set the RunAs default user')
        if not self.node.has_user(user):
            raise LaunchRefused(f'Unable to start command: failed to start pty since RunAs user {user} does not exist')
        return user

    def launch(self) -> Launch:
        sandbox = self.node.sandbox
        if sandbox is None:
            raise LaunchRefused('Unable to start command: the node has no sandbox')
        user = self._user()
        elevated = user == 'root' and self.session_type == 'InteractiveCommands'
        # runAsElevated: HOME=/root (RootHomeEnvVariable); any other user: HOME=/home/<user> (HomeEnvVariable + user).
        home = sandbox / 'root' if elevated else node_home(sandbox, user)
        home.mkdir(parents=True, exist_ok=True)
        env = {'HOME': str(home), 'USER': user, 'LOGNAME': user}
        if self.session_type == 'Standard_Stream':
            profile = self.node.shell_profile if self.node.shell_profile is not None else self.inputs.shell_profile_linux
            # runShellProfile writes nothing for a blank profile.
            return Launch(sandbox=sandbox, argv=['sh'], env=env, profile=profile if profile.strip() else '')
        commands = str(self.document.linux_properties.get('commands', '')) if self.document is not None else ''
        commands = _PARAMETER_REFERENCE.sub(lambda m: self.parameters.get(m.group(1), m.group(0)), commands)
        # A blank command gives the plain shell (StartCommandExecutor: GetShellCommand empty -> "sh").
        return Launch(sandbox=sandbox, argv=['sh', '-c', commands] if commands.strip() else ['sh'], env=env)

    @property
    def status(self) -> str:
        """DescribeSessions' Status."""
        agent = self.agent
        if self.closed or (agent is not None and agent.done.is_set()):
            return 'Failed' if agent is not None and agent.failed else 'Terminated'
        if agent is None:
            return 'Terminated' if ExecRegistry.expired(self, time.monotonic()) else 'Connecting'
        if agent.closing:
            return 'Terminating'
        return 'Connected' if agent.conn is not None else 'Disconnected'

    def end_date(self) -> datetime.datetime:
        if self.ended_at is not None:
            return self.ended_at
        # Never connected and its token ran out: the session ended then.
        return self.started_at + datetime.timedelta(seconds=self.settings.token_ttl_seconds)


def _principal_name(principal: str) -> str:
    """The name Session Manager puts in session ids: an IAM user's name, an assumed role's session name."""
    tail = principal.rsplit(':', 1)[-1]
    return tail.rsplit('/', 1)[-1] or 'session'


def _settings(ctx: CallContext, inputs: SessionInputs) -> NodeSettings:
    ssm = ctx.world.aws.ssm
    idle = ssm.idle_timeout_seconds if ssm.idle_timeout_seconds is not None else inputs.idle_timeout_minutes * 60.0
    return NodeSettings(token_ttl_seconds=ssm.token_ttl_seconds, idle_timeout_seconds=idle, agent_start_ms=ssm.agent_start_ms,
                        output_delay_ms=ssm.output_delay_ms)


def _parameters(ctx: CallContext, document: SessionDocument | None) -> dict[str, str]:
    """StartSession's Parameters against the document's: InvalidParameters for any other, or a missing one."""
    raw = ctx.params.get('Parameters') or {}
    if not isinstance(raw, dict):
        raise ApiError('SerializationException', 'Parameters must be a map of names to lists of values', 400)
    defined = document.parameters if document is not None else {}
    values: dict[str, str] = {}
    for name, given in raw.items():
        if name not in defined:
            raise ApiError('InvalidParameters', f'The parameter {name} is not defined in the document. You can only supply values to '
                           'parameters defined in the SSM document.', 400)
        if not isinstance(given, list) or not all(isinstance(v, str) for v in given):
            raise ApiError('SerializationException', f'Parameters.{name} must be a list of strings', 400)
        for value in given:
            if not 1 <= len(value) <= PARAMETER_VALUE_MAX:
                raise validation_error(f'parameters.{name}', '...', f'Member must have length between 1 and {PARAMETER_VALUE_MAX}')
        if defined[name].get('type', 'String') == 'String' and len(given) != 1:
            raise ApiError('InvalidParameters', f'The parameter {name} is a String: give exactly one value.', 400)
        values[name] = ','.join(given)
    for name, spec in defined.items():
        if name not in values:
            if 'default' not in spec:
                raise ApiError('InvalidParameters', f'You must specify values for all required parameters in the SSM document: {name}.', 400)
            values[name] = str(spec['default'])
    return values


@ACTIONS.register('StartSession')
async def start_session(ctx: CallContext) -> dict[str, Any]:
    target = ctx.params.get('Target')
    if not isinstance(target, str) or not 1 <= len(target) <= TARGET_MAX:
        raise validation_error('target', target, f'Member must have length between 1 and {TARGET_MAX}')
    reason = ctx.params.get('Reason')
    if reason is not None and (not isinstance(reason, str) or not REASON_PATTERN.match(reason)):
        raise validation_error('reason', reason, 'Member must satisfy regular expression pattern: ^.{1,256}$')
    name = ctx.params.get('DocumentName')
    document: SessionDocument | None = None
    if name is not None:
        document = find_document(ctx, check_name(name, 'documentName'))
        if document is None:
            raise invalid_document(name)
    parameters = _parameters(ctx, document)
    node = node_for_target(ctx, target)
    if node is None or not node.connected:
        raise ApiError('TargetNotConnected', f'{target} is not connected.', 400)
    inputs = (document.inputs if document is not None else None) or default_inputs(ctx.world)
    credential = ctx.credential
    assert isinstance(credential, AwsCredential)
    session = NodeSession(
        session_id=f'{_principal_name(credential.principal)}-{secrets.token_hex(9)[:17]}', token=new_token(),
        settings=_settings(ctx, inputs), node=node, document=document, inputs=inputs, owner=credential.principal,
        principal_run_as=credential.tags.get(RUN_AS_TAG), parameters=parameters, reason=reason)
    registry(ctx.state).add(session)
    return {'SessionId': session.session_id, 'TokenValue': session.token, 'StreamUrl': stream_url(ctx.state, session)}


def _timestamp(value: str, key: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
    except ValueError as exc:
        raise validation_error('filters.value', value, f'{key} takes a timestamp such as 2024-08-29T00:00:00Z') from exc
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def _session_filters(ctx: CallContext) -> list[tuple[str, str]]:
    raw = ctx.params.get('Filters')
    if raw is None:
        return []
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SESSION_FILTERS:
        raise validation_error('filters', '...', f'Member must have length between 1 and {MAX_SESSION_FILTERS}')
    pairs = []
    for item in raw:
        key, value = (item.get('key'), item.get('value')) if isinstance(item, dict) else (None, None)
        if key not in SESSION_FILTER_KEYS:
            raise ApiError('InvalidFilterKey', f'The filter key {key} is not valid.', 400)
        if not isinstance(value, str) or not 1 <= len(value) <= 400:
            raise validation_error('filters.value', value, 'Member must have length between 1 and 400')
        if key in ('InvokedAfter', 'InvokedBefore'):
            _timestamp(value, key)
        if key == 'Status' and value not in SESSION_STATUSES:
            raise validation_error('filters.value', value, f'Status is one of {", ".join(SESSION_STATUSES)}')
        pairs.append((key, value))
    return pairs


def _matches(session: NodeSession, key: str, value: str) -> bool:
    if key == 'InvokedAfter':
        return session.started_at >= _timestamp(value, key)
    if key == 'InvokedBefore':
        return session.started_at < _timestamp(value, key)
    return {'Target': session.target, 'Owner': session.owner, 'Status': session.status, 'SessionId': session.session_id,
            'AccessType': 'Standard'}[key] == value


def _session_view(session: NodeSession) -> dict[str, Any]:
    status = session.status
    view: dict[str, Any] = {'SessionId': session.session_id, 'Target': session.target, 'Status': status,
                            'StartDate': session.started_at.timestamp(), 'DocumentName': session.document_name,
                            'Owner': session.owner, 'AccessType': 'Standard'}
    if status in ('Terminated', 'Failed'):
        view['EndDate'] = session.end_date().timestamp()
    if session.reason:
        view['Reason'] = session.reason
    if session.inputs.max_session_duration:
        view['MaxSessionDuration'] = session.inputs.max_session_duration
    return view


@ACTIONS.register('DescribeSessions')
async def describe_sessions(ctx: CallContext) -> dict[str, Any]:
    state = ctx.params.get('State')
    if state not in SESSION_STATES:
        raise validation_error('state', state, 'Member must satisfy enum value set: [Active, History]')
    size = max_results(ctx, 1, 200, DEFAULT_SESSION_PAGE)
    pairs = _session_filters(ctx)
    sessions = [s for s in registry(ctx.state).sessions.values() if isinstance(s, NodeSession)]
    if ctx.region != ctx.world.aws.region:
        sessions = []
    wanted = [s for s in sessions if (s.status in ACTIVE_STATUSES) == (state == 'Active')
              and all(_matches(s, key, value) for key, value in pairs)]
    wanted.sort(key=lambda s: s.started_at, reverse=True)
    chunk, token = next_token_page(ctx, [s.session_id for s in wanted], size, {'state': state, 'filters': pairs})
    by_id = {s.session_id: s for s in wanted}
    answer: dict[str, Any] = {'Sessions': [_session_view(by_id[i]) for i in chunk]}
    if token:
        answer['NextToken'] = token
    return answer
