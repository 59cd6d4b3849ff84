# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS Systems Manager (JSON 1.1, ``X-Amz-Target: AmazonSSM.<Action>``, SigV4 service ``ssm``): the SSM product.

One action table, :data:`ACTIONS`, filled by several modules, each registering with ``@ACTIONS.register('Name')``
(server.py imports them all):

- here: **ResumeSession**, **TerminateSession** (any Session Manager session: ECS Exec's and StartSession's) and the
  helpers the others share (:func:`validation_error`, :func:`max_results`, :func:`next_token_page`);
- ``ssm_nodes.py``: **DescribeInstanceInformation**, **ListTagsForResource** (managed nodes, from the world's
  ``aws.managed_nodes``), and the node lookups other actions use (``ssm_nodes.node_for_target``);
- ``ssm_documents.py``: **GetDocument**, **DescribeDocument** of Session documents (the account's
  SSM-SessionManagerRunShell, AWS-StartInteractiveCommand, the world's ``aws.session_documents``);
- ``ssm_sessions.py``: **StartSession**, **DescribeSessions**; the sessions run on the same data channel as ECS Exec
  (:mod:`ssm_agent`), with the agent behaving as on a managed node (``ssm_sessions.NodeSession``).

Run Command (SendCommand, ListCommandInvocations, GetCommandInvocation, CancelCommand) belongs in a module of its own,
``ssm_commands.py``, registering on this same table (``from .aws_ssm import ACTIONS``) and imported in server.py next
to the others; its Command documents (AWS-RunShellScript, AWS-RunPowerShellScript) would join ``ssm_documents``'
catalogue, and its commands run in the node sandboxes (``ManagedNode.sandbox``) through ``ctx.state.runner``. EC2's
DescribeInstances is query protocol: ``ec2_instances.py``, called from :mod:`aws_query`.

ResumeSession and TerminateSession:

- **ResumeSession** ``{"SessionId"}`` -> ``{"SessionId", "TokenValue", "StreamUrl"}``: "Connections can be resumed for
  disconnected sessions, but not terminated sessions" (API reference, API_ResumeSession; aws-sdk-go ssm/api.go
  ResumeSession). The same session gets a new single-use token and a stream URL; the agent goes on from its sequence
  numbers (see ssm_agent.AgentSession.attach). A reconnection resets the idle timer (Session Manager user guide,
  session-preferences-timeout). Unknown, ended or terminated sessions: ``DoesNotExistException``, the error the API
  lists for it (errors: DoesNotExistException, BadRequest, InternalServerError).
- **TerminateSession** ``{"SessionId"}`` -> ``{"SessionId"}``: ends the session for good (the agent's cancel: the command
  is killed, as ssm_agent does when a session ends). "A terminated session can't be resumed" (api.go TerminateSession).

StartSession's sessions are resumable: that is what ResumeSession is for. Whether these accept ECS Exec sessions (ids
``ecs-execute-command-...``) is not established: session-manager-plugin sends its ResumeSession to the endpoint it was
given, which ``aws ecs execute-command`` sets to ECS's, and no AWS page or field report says that SSM's endpoint
resumes them. So by default both answer ``DoesNotExistException`` for them (the stricter behaviour); the world's
``aws.exec.resumable: true`` makes SSM serve them.
"""
from __future__ import annotations

import time
from typing import Any, Sequence, TypeVar

from . import paging
from .aws_exec import ChannelSession, ExecSession, registry, stream_url
from .context import ActionTable, CallContext
from .errors import ApiError

TARGET_PREFIX = 'AmazonSSM'
SIGNING_NAME = 'ssm'
SERVICE = 'aws-ssm'
# SessionId: 1 to 96 characters (API reference, ResumeSession / TerminateSession request syntax).
SESSION_ID_MAX = 96

ACTIONS = ActionTable()

T = TypeVar('T')


def validation_error(field: str, value: Any, constraint: str) -> ApiError:
    """The JSON services' ValidationException for one member, in AWS's words ("1 validation error detected: ...")."""
    return ApiError('ValidationException', f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
                    f'constraint: {constraint}', 400)


def max_results(ctx: CallContext, low: int, high: int, default: int, field: str = 'maxResults') -> int:
    """``MaxResults`` within the model's range (botocore checks only the minimum on the client)."""
    value = ctx.params.get('MaxResults')
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError('SerializationException', 'MaxResults must be an integer', 400)
    if value < low:
        raise validation_error(field, value, f'Member must have value greater than or equal to {low}')
    if value > high:
        raise validation_error(field, value, f'Member must have value less than or equal to {high}')
    return value


def next_token_page(ctx: CallContext, items: Sequence[T], size: int, query: Any) -> tuple[list[T], str | None]:
    """One page and the next token; a token from another query (or none of ours) is ``InvalidNextToken``."""
    token = ctx.params.get('NextToken')
    try:
        return paging.page(items, token or None, size, query)
    except paging.BadToken as exc:
        raise ApiError('InvalidNextToken', 'The specified token isn\u2019t valid.', 400) from exc


def _session_id(ctx: CallContext) -> str:
    value = ctx.params.get('SessionId')
    if not isinstance(value, str) or not 1 <= len(value) <= SESSION_ID_MAX:
        raise ApiError('ValidationException', "1 validation error detected: Value at 'sessionId' failed to satisfy constraint: "
                       f'Member must have length between 1 and {SESSION_ID_MAX}', 400)
    return value


def _served(ctx: CallContext, session: ChannelSession) -> bool:
    """SSM serves its own sessions; ECS Exec's only when the world says so (see the module docstring)."""
    return not isinstance(session, ExecSession) or ctx.world.aws.exec_settings.resumable


def _live_session(ctx: CallContext, session_id: str) -> ChannelSession:
    session = registry(ctx.state).find(session_id)
    if session is None or not _served(ctx, session):
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
    sessions = registry(ctx.state)
    session = sessions.sessions.get(session_id)
    # A StartSession session whose token ran out unused has ended too (ECS Exec keeps its stricter answer).
    ended = session is not None and (session.closed or (not isinstance(session, ExecSession)
                                                        and sessions.expired(session, time.monotonic())))
    if session is not None and ended and _served(ctx, session):
        # Terminating an ended session changes nothing (the API lists no error for it).
        return {'SessionId': session.session_id}
    session = _live_session(ctx, session_id)
    if session.agent is not None:
        await session.agent.terminate()
    registry(ctx.state).close(session)
    return {'SessionId': session.session_id}
