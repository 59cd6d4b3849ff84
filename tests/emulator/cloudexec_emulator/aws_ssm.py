# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS Systems Manager (JSON 1.1, ``X-Amz-Target: AmazonSSM.<Action>``, SigV4 service ``ssm``): the SSM product's actions.

For now the Session Manager calls a client needs around an ECS Exec session (the sessions themselves are made by
ExecuteCommand, :mod:`aws_exec`, and run by :mod:`ssm_agent`):

- **ResumeSession** ``{"SessionId"}`` -> ``{"SessionId", "TokenValue", "StreamUrl"}``: "Connections can be resumed for
  disconnected sessions, but not terminated sessions" (API reference, API_ResumeSession; aws-sdk-go ssm/api.go
  ResumeSession). The same session gets a new single-use token and a stream URL; the agent goes on from its sequence
  numbers (see ssm_agent.AgentSession.attach). A reconnection resets the idle timer (Session Manager user guide,
  session-preferences-timeout). Unknown, ended or terminated sessions: ``DoesNotExistException``, the error the API
  lists for it (errors: DoesNotExistException, BadRequest, InternalServerError).
- **TerminateSession** ``{"SessionId"}`` -> ``{"SessionId"}``: ends the session for good (the agent's cancel: the command
  is killed, as ssm_agent does when a session ends). "A terminated session can't be resumed" (api.go TerminateSession).

Whether these accept ECS Exec sessions (ids ``ecs-execute-command-...``) is not established: session-manager-plugin
sends its ResumeSession to the endpoint it was given, which ``aws ecs execute-command`` sets to ECS's, and no AWS
page or field report says that SSM's endpoint resumes them. So by default both answer ``DoesNotExistException`` for
them (the stricter behaviour); the world's ``aws.exec.resumable: true`` makes SSM serve them. Register new actions
with ``@ACTIONS.register('Name')``.
"""
from __future__ import annotations

import time
from typing import Any

from .aws_exec import ExecSession, registry, stream_url
from .context import ActionTable, CallContext
from .errors import ApiError

TARGET_PREFIX = 'AmazonSSM'
SIGNING_NAME = 'ssm'
SERVICE = 'aws-ssm'
# SessionId: 1 to 96 characters (API reference, ResumeSession / TerminateSession request syntax).
SESSION_ID_MAX = 96

ACTIONS = ActionTable()


def _session_id(ctx: CallContext) -> str:
    value = ctx.params.get('SessionId')
    if not isinstance(value, str) or not 1 <= len(value) <= SESSION_ID_MAX:
        raise ApiError('ValidationException', "1 validation error detected: Value at 'sessionId' failed to satisfy constraint: "
                       f'Member must have length between 1 and {SESSION_ID_MAX}', 400)
    return value


def _live_session(ctx: CallContext, session_id: str) -> ExecSession:
    session = registry(ctx.state).find(session_id)
    if session is None or not ctx.world.aws.exec_settings.resumable:
        raise ApiError('DoesNotExistException', f'Session with id {session_id} does not exist.', 400)
    return session


@ACTIONS.register('ResumeSession')
async def resume_session(ctx: CallContext) -> dict[str, Any]:
    session_id = _session_id(ctx)
    session = _live_session(ctx, session_id)
    if session.agent is not None and (session.agent.closing or session.agent.done.is_set()):
        # The command ended (or the idle timeout struck) and the agent is closing the channel: nothing to resume.
        raise ApiError('DoesNotExistException', f'Session with id {session_id} does not exist.', 400)
    registry(ctx.state).renew(session)
    if session.agent is not None:
        session.agent.last_activity = time.monotonic()
    return {'SessionId': session.session_id, 'TokenValue': session.token, 'StreamUrl': stream_url(ctx.state, session)}


@ACTIONS.register('TerminateSession')
async def terminate_session(ctx: CallContext) -> dict[str, Any]:
    session_id = _session_id(ctx)
    session = registry(ctx.state).sessions.get(session_id)
    if session is not None and session.closed and ctx.world.aws.exec_settings.resumable:
        # Terminating an ended session changes nothing (the API lists no error for it).
        return {'SessionId': session.session_id}
    session = _live_session(ctx, session_id)
    if session.agent is not None:
        await session.agent.terminate()
    registry(ctx.state).close(session)
    return {'SessionId': session.session_id}
