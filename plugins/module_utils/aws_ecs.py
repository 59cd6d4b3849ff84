# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""ECS Exec targets and sessions: find the task and container, check they can exec, start a session.

Shared by the aws_ecs_exec module, the aws_ecs connection plugin and the preflight checks, so every
entry point refuses a bad target with the same message before it calls ExecuteCommand.
"""

from __future__ import annotations

import shlex
import time
import typing as t
from dataclasses import dataclass, field

from ansible_collections.cloudexec.core.plugins.module_utils import aws, exec_checks, remote_shell, session_brokers
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, DeadlineExceeded, SessionClosed, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.poll import ECS_EXEC_AGENT, Poller
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.session import (
    DataChannelConnectFailed,
    DataChannelSession,
    SessionDropped,
)

EXEC_AGENT = exec_checks.EXEC_AGENT
# TargetNotConnectedException from ExecuteCommand is tried again, with back-off, for this long at most (or the
# caller's shorter timeout): an agent that reports RUNNING a little before its channel is up, or one whose few
# session workers are all busy (SessionWorkersLimit, 2 per container unless ECS says otherwise) until one ends.
NOT_CONNECTED_WAIT = 60.0
# ECS Exec's idle session timeout: 20 minutes, not configurable. A session whose client went away without ending it
# keeps its worker until then (the agent is not told; see docs/aws_ecs.md).
ECS_EXEC_IDLE_MINUTES = 20
# The ECS API accepts a task by ARN or by its id (32 hex digits, or older uuid-like ids).
_TASK_ARN_PREFIX = 'arn:'


@dataclass(frozen=True)
class EcsTarget:
    """A container of a running task that ECS Exec can reach."""

    cluster_arn: str
    task_arn: str
    container_name: str
    runtime_id: str | None
    launch_type: str | None
    platform_version: str | None

    @property
    def task_id(self) -> str:
        """The task id, the last part of its ARN."""
        return self.task_arn.rsplit('/', 1)[-1]

    @property
    def ssm_target(self) -> str:
        """The target name ECS uses for the session: ecs:<cluster>_<task id>_<runtime id>."""
        cluster = self.cluster_arn.rsplit('/', 1)[-1]
        return f'ecs:{cluster}_{self.task_id}_{self.runtime_id or ""}'


@dataclass
class EcsSession:
    """What ExecuteCommand returned. The token and URL are secrets: never logged, never returned."""

    session_id: str
    stream_url: str = field(repr=False)
    token: str = field(repr=False)
    target: EcsTarget | None = None


def _exec_problems(task: dict[str, t.Any], container: dict[str, t.Any]) -> list[tuple[str, str]]:
    """Why ExecuteCommand would fail on this container, as (code, remedy) pairs; empty when it can run."""
    return [(t.cast(str, check.code), t.cast(str, check.remedy)) for check in exec_checks.ecs_exec_problems(task, container)]


def cluster_from_task_arn(task: str) -> str | None:
    """The cluster name in a task ARN of the long format (task/CLUSTER/ID); None for ids and old ARNs."""
    if not task.startswith(_TASK_ARN_PREFIX):
        return None
    resource = task.split(':', 5)[-1]
    parts = resource.split('/')
    return parts[1] if len(parts) == 3 and parts[0] == 'task' and parts[1] else None


def describe_task(client: t.Any, cluster: str | None, task: str) -> dict[str, t.Any]:
    """DescribeTasks for one task, with a clear error when it does not exist."""
    if not task:
        raise ValidationError('task', 'a task ARN or id is required')
    kwargs: dict[str, t.Any] = {'tasks': [task], 'include': ['TAGS']}
    # ECS looks in the cluster named "default" when none is given, even for a task ARN that names its
    # cluster (arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID): take the cluster from such an ARN.
    cluster = cluster or cluster_from_task_arn(task)
    if cluster:
        kwargs['cluster'] = cluster
    try:
        answer = aws.call(client, 'describe_tasks', **kwargs)
    except CloudExecError as error:
        if error.code == 'ClusterNotFoundException' and not cluster:
            error.remedy = 'No cluster was given, so ECS looked in the cluster named "default": set cluster to the name or ARN of the task\'s cluster'
        raise
    tasks = answer.get('tasks') or []
    if not tasks:
        reason = (answer.get('failures') or [{}])[0].get('reason', 'MISSING')
        where = f'cluster {cluster}' if cluster else 'the default cluster'
        raise CloudExecError(f'Task {task} was not found in {where} ({reason})', code='TaskNotFound', provider='aws',
                             remedy='Check task and cluster; stopped tasks disappear from ECS after about an hour',
                             retryable=False)
    return tasks[0]


def resolve_target(client: t.Any, cluster: str | None, task: str, container: str | None, check_exec: bool = True) -> EcsTarget:
    """Find the container ECS Exec would reach, refusing what ExecuteCommand would refuse, with a remedy."""
    described = describe_task(client, cluster, task)
    chosen, check = exec_checks.choose_container(described.get('containers') or [], container, f'task {task}')
    if chosen is None:
        raise ValidationError('container', check.detail)
    if check_exec:
        problems = _exec_problems(described, chosen)
        if problems:
            code, remedy = problems[0]
            raise CloudExecError(f'Cannot exec into container {chosen.get("name")} of task {task}', code=code, provider='aws',
                                 remedy=remedy, retryable=False)
    return EcsTarget(cluster_arn=described.get('clusterArn', ''), task_arn=described['taskArn'], container_name=chosen['name'],
                     runtime_id=chosen.get('runtimeId'), launch_type=described.get('launchType'),
                     platform_version=described.get('platformVersion'))


def shell_command(script: str, shell: str = '/bin/sh') -> str:
    """The ExecuteCommand `command` that runs script in shell.

    The agent splits the command like a POSIX shell (google/shlex) and runs it without a shell, so the
    script travels as one single-quoted argument of `sh -c`.
    """
    return f'{shell} -c {shlex.quote(script)}'


def execute_command(client: t.Any, target: EcsTarget, command: str, timeout: float = 30.0) -> EcsSession:
    """Call ExecuteCommand; TargetNotConnectedException is tried again with back-off for a bounded time.

    When it persists although the container's agent is RUNNING, the error says that its sessions may all be
    in use, names this controller's brokers that hold one, and what to do.
    """
    def start() -> dict[str, t.Any]:
        try:
            return aws.call(client, 'execute_command', cluster=target.cluster_arn, task=target.task_arn,
                            container=target.container_name, command=command, interactive=True)
        except CloudExecError as error:
            if error.code == 'TargetNotConnectedException':
                # The agent can report RUNNING a few seconds before its channel is up, and a busy one frees a
                # session worker when one of its sessions ends.
                error.retryable = True
            raise

    wait = min(timeout, NOT_CONNECTED_WAIT)
    try:
        answer = Poller(wait, policy=ECS_EXEC_AGENT,
                        what=f'ExecuteCommand on {target.task_id}/{target.container_name}').call(start)
    except CloudExecError as error:
        cause = error if error.code == 'TargetNotConnectedException' else error.__cause__
        if isinstance(cause, CloudExecError) and cause.code == 'TargetNotConnectedException':
            raise not_connected_error(client, target, cause, wait) from None
        raise
    session = answer.get('session') or {}
    if not session.get('streamUrl') or not session.get('tokenValue'):
        raise CloudExecError('ExecuteCommand returned no session', code='NoSession', provider='aws',
                             remedy='Retry; if it persists, check the ECS service health', retryable=True)
    return EcsSession(session_id=session.get('sessionId', ''), stream_url=session['streamUrl'], token=session['tokenValue'],
                      target=target)


def _agent_status(client: t.Any, target: EcsTarget) -> str | None:
    """The container's ExecuteCommandAgent status as DescribeTasks reports it now (None: unknown)."""
    try:
        task = describe_task(client, target.cluster_arn, target.task_arn)
    except CloudExecError:
        return None
    container = next((c for c in task.get('containers') or [] if c.get('name') == target.container_name), {})
    agent = next((a for a in container.get('managedAgents') or [] if a.get('name') == EXEC_AGENT), {})
    return agent.get('lastStatus')


def not_connected_error(client: t.Any, target: EcsTarget, error: CloudExecError, waited: float) -> CloudExecError:
    """TargetNotConnectedException that outlasted the retries, told for what it most likely is.

    ECS answers it when the agent cannot take the session. With the agent RUNNING, that is an agent whose
    session workers are all busy: ECS Exec gives a container 2 unless ECS sets otherwise (amazon-ecs-agent
    manager_init_task.go defaultSessionLimit), and an idle session of a connection plugin keeps its worker for
    the plugin's idle_timeout. (What AWS answers at the limit is not documented; the agent itself just stops
    taking sessions, see docs/aws_ecs.md.)
    """
    where = f'{target.task_id}/{target.container_name}'
    status = _agent_status(client, target)
    if status != 'RUNNING':
        error.message = f'ExecuteCommand on {where} kept failing for {waited:g} seconds: {error.message}'
        if status:
            error.remedy = f'The ECS Exec agent in the container is {status} now. ' + (error.remedy or '')
        return error
    ours = session_brokers.holders(f'aws_ecs:{where}')
    said = error.message.split(': ', 1)[1] if error.message.startswith('ExecuteCommand failed: ') else error.message
    message = (f'ExecuteCommand on {where} was refused for {waited:g} seconds ("{said.rstrip(".")}") although the '
               "container's ECS Exec agent is RUNNING: its sessions may all be in use (an agent takes 2 at a time unless ECS "
               'sets otherwise; an idle session of a connection stays open until its idle_timeout, and one whose client '
               f'vanished for up to {ECS_EXEC_IDLE_MINUTES} minutes)')
    if ours:
        message += ('. Session brokers of this controller hold sessions to it: '
                    + ', '.join(session_brokers.describe(stats) for stats in ours))
        remedy = ('End them with meta: reset_connection in the play that opened them, or let them go sooner with a shorter '
                  'idle_timeout (ansible_aws_ecs_idle_timeout); or retry later. Other controllers (AWX jobs, colleagues, '
                  'another control directory) may hold the rest')
    else:
        message += f'. No session broker of this controller (control directory {session_brokers.control_dir()}) holds one'
        remedy = ('Retry later: other controllers (AWX jobs, colleagues, plays with another control directory) may hold the '
                  'sessions; their connections give them back on meta: reset_connection or after their idle_timeout')
    return CloudExecError(message, code='TargetNotConnectedException', provider='aws', remedy=remedy, status=error.status,
                          request_id=error.request_id, retryable=False)


@dataclass
class ScriptRun:
    """The outcome of one command run in its own ECS Exec session."""

    session_id: str
    result: remote_shell.CommandResult
    stats: dict[str, t.Any]


def run_script(client: t.Any, target: EcsTarget, command: str | t.Sequence[str], *, shell: str = '/bin/sh',
               chdir: str | None = None, creates: str | None = None, removes: str | None = None, timeout: float = 600,
               log: t.Callable[[str], None] | None = None, clock: t.Callable[[], float] = time.monotonic,
               generate_data_key: t.Callable[[str, dict[str, str]], tuple[bytes, bytes]] | None = None,
               resume_session: t.Callable[[str], tuple[str | None, str]] | None = None, end_on_deadline: bool = True) -> ScriptRun:
    """Run one command in a fresh session and read its framed output until the end marker.

    The deadline covers the whole run; when it passes the session is closed, the command's processes are ended
    from a second session (end_command) and the error says what became of them.
    generate_data_key (aws.kms_data_key_provider) answers clusters that encrypt sessions with KMS;
    resume_session (aws.ssm_session_resumer) brings a lost connection back to the same session.
    """
    nonce = remote_shell.new_nonce()
    script = remote_shell.wrap(command, nonce, chdir=chdir, creates=creates, removes=removes)
    deadline = clock() + timeout
    session = execute_command(client, target, shell_command(script, shell), timeout=min(timeout, 60))
    parser = remote_shell.OutputParser(nonce)
    channel = DataChannelSession(session.stream_url, session.token, session_id=session.session_id, target_id=target.ssm_target, log=log,
                                 generate_data_key=generate_data_key, resume_session=resume_session)
    where = f'{target.task_id}/{target.container_name}'
    with channel:
        try:
            result = remote_shell.read_result(channel.read, parser, deadline=deadline, clock=clock)
        except SessionClosed as exc:
            # Output before channel_closed has all been delivered: the end marker must be in it.
            result = parser.result
            if result is None:
                raise CloudExecError(f'The session to {where} closed before the command reported its exit code',
                                     code='SessionClosedEarly', provider='aws', retryable=False,
                                     remedy=('The command ran at least in part: check its effects before running it again'
                                             if parser.started else
                                             f'Check that {shell} exists in the container')) from exc
        except (SessionDropped, DataChannelConnectFailed) as exc:
            # ECS Exec starts the command as soon as the agent accepts the channel, not when output
            # arrives (the first output comes about a second later): once the channel was opened, a
            # loss never proves that the command did not run.
            raise CloudExecError(f'The connection to {where} was lost while the command ran ({exc.message})',
                                 code='SessionDropped', provider='aws', retryable=False,
                                 remedy=('The command had started and may have finished: check its effects before running it again'
                                         if parser.started else
                                         'The command may have run: check its effects before running it again')) from exc
    if result is None and not end_on_deadline:
        raise DeadlineExceeded(f'The command in {where} did not finish within {timeout:g} seconds')
    if result is None:
        # Closing the session does not surely end the command (the agent keeps a disconnected session, and kills
        # only the shell's pid when a session ends): a second session ends its processes, found by the nonce.
        clause, worrying = end_command(client, target, nonce, shell=shell, log=log, clock=clock,
                                       generate_data_key=generate_data_key, resume_session=resume_session)
        state = 'it had started' if parser.started else 'no output had come yet'
        raise DeadlineExceeded(f'The command in {where} did not finish within {timeout:g} seconds ({state}); {clause}',
                               remedy='Raise timeout, or run long jobs in the background (nohup) and poll for them'
                               + ('; check whether it still runs' if worrying else ''))
    return ScriptRun(session_id=session.session_id, result=result,
                     stats=channel.stats.as_dict())


# How long ending an overrun command may take (a second session and the kill script).
KILL_TIMEOUT = 30.0


def end_command(client: t.Any, target: EcsTarget, nonce: str, *, shell: str = '/bin/sh', **run_options: t.Any) -> tuple[str, bool]:
    """End, from a second session, the processes of the command whose script holds nonce; (what happened, worrying).

    worrying means the command may still run.
    """
    kill_nonce = remote_shell.new_nonce()
    script = remote_shell.find_by_nonce_script(nonce) + remote_shell.kill_tree_script('"$__ce_r"', '"$__ce_rt"', nonce=kill_nonce)
    try:
        run = run_script(client, target, script, shell=shell, timeout=KILL_TIMEOUT, end_on_deadline=False, **run_options)
    except CloudExecError as exc:
        return f'it may still be running: no session could be opened to end it ({exc.code}: {exc.message})', True
    return remote_shell.describe_kill_outcome(remote_shell.parse_kill_outcome(run.result.stdout, kill_nonce))
