# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Client transport of the SSM Session Manager data channel (what ECS ExecuteCommand hands out).

DataChannelSession owns the websocket (the `websockets` library's sync client) and the clock, and
drives the sans-I/O DataChannelState(role=Role.CLIENT) from channel.py. It starts no thread of its
own: every acknowledgement, resend and handshake answer happens inside a call of read(), flush() or
send(), so the caller pumps. The websockets library keeps its own reader thread for the socket;
nothing of ours runs there.

    with DataChannelSession(stream_url, token, session_id=sid) as session:
        session.send(b'echo hi\\n')
        data = session.read(timeout=5)      # b'' on timeout; SessionClosed once the agent ends it

A connection that is lost without channel_closed is resumed when a `resume_session` callable is given
(ResumeSession through SSM, see aws.ssm_session_resumer): a new websocket with the new token, the same
ClientId, and the channel's state kept (channel.DataChannelState.reconnected), so no input is applied
twice and no output is lost or delivered twice. Attempts are bounded (RESUME_ATTEMPTS, with back-off);
when the session cannot be resumed, the loss is reported as before (SessionDropped, "may have run").

Secrets: the token authenticates the session and the stream URL (its path and its query) locates
it, so neither is ever put into a log line, an exception or a repr; only the host is named. The
tokens and URLs that ResumeSession hands out are secrets the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import typing as t
import urllib.parse
import uuid

from ansible_collections.cloudexec.core.plugins.module_utils import websocket
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, SessionClosed
from ansible_collections.cloudexec.core.plugins.module_utils.poll import Poller, SSM_RESUME
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.channel import (
    RESEND_GIVE_UP_AFTER,
    ChannelClosedEvent,
    DataChannelState,
    EncryptionChallengeReceived,
    HandshakeCompleted,
    HandshakeRequested,
    PublicationPaused,
    PublicationStarted,
    Role,
    StreamData,
    UnexpectedMessage,
)
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.kms import GenerateDataKey, SessionCipher, new_session_key
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.messages import (
    ACKNOWLEDGE,
    OUTPUT_STREAM_DATA,
    AgentMessage,
    PayloadType,
    SSMProtocolError,
)
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.payloads import (
    ACTION_KMS_ENCRYPTION,
    ChannelClosed,
    EncryptionChallenge,
    HandshakeRequest,
    KMSEncryptionRequest,
    answer_handshake,
    build_open_data_channel,
    build_size,
    kms_encryption_result,
    parse_acknowledge,
    parse_exit_code,
)
from ansible_collections.cloudexec.core.plugins.module_utils.version import USER_AGENT
from ansible_collections.cloudexec.core.plugins.module_utils.websocket import CLOSE_TIMEOUT, ConnectionClosed, sanitize as _sanitize

PROVIDER = 'aws'

# Stream names used by read_streams().
STDOUT = 'stdout'
STDERR = 'stderr'

# How long input is held after open() when the agent has sent nothing yet. The agent asks for a
# handshake (KMS) as its first message, and input sent during a handshake is acknowledged but dropped;
# without a handshake the first output (about a second in) releases the input earlier.
DEFAULT_INPUT_HOLD = 2.0
# read() keeps pulling frames that are already queued, up to this many, to hand back larger chunks.
_COALESCE_FRAMES = 256
# Shortest wait handed to recv(): a deadline that is due "now" must not turn into a spin.
_MIN_WAIT = 0.001
# The terminal size sent right after opening, (cols, rows): what AWS's client sends when its stdout is not a
# terminal (shellsession.go handleTerminalResize). The agent starts the PTY with no size (0 x 0) otherwise.
DEFAULT_TERMINAL_SIZE = (300, 100)
# Resuming a lost connection, as AWS's client does (sessionhandler.go OpenDataChannel: RepeatableExponentialRetryer,
# first call at once, then delays from 100-200 ms doubling up to 5 s, 5 retries): at most RESUME_ATTEMPTS
# ResumeSession calls and reconnections per loss, within RESUME_TIMEOUT seconds.
RESUME_ATTEMPTS = SSM_RESUME.max_retries + 1
RESUME_TIMEOUT = 60.0

_WS_LOGGER = websocket.quiet_logger('ssm')
_LOGGER = logging.getLogger(__name__)


# ResumeSession errors that say this session will not come back (as opposed to throttling, 5xx, the network).
_RESUME_REFUSED_CODES = frozenset(('DoesNotExistException', 'BadRequest', 'BadRequestException', 'InvalidParameters',
                                   'ValidationException', 'UnknownOperationException', 'SessionTimedOut'))

_CONNECT_REMEDY = ('Check that this host can reach the ssmmessages endpoint on port 443 (network route, proxy settings, or an '
                   'ssmmessages VPC endpoint for private subnets), then start a new session with ExecuteCommand: its token '
                   'is single use and expires within minutes')

# ResumeSession for a session id: (stream URL or None for the original one, token); raises CloudExecError,
# retryable when trying again may help (throttling, 5xx, network), not when the session cannot be resumed.
ResumeSession = t.Callable[[str], t.Tuple[t.Optional[str], str]]


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
class DataChannelConnectFailed(CloudExecError):
    """The websocket could not be opened, or the service closed it before the session started."""

    def __init__(self, message: str, *, status: int | None = None, input_sent: bool = False, remedy: str = _CONNECT_REMEDY) -> None:
        super().__init__(message, code='DataChannelConnectFailed', provider=PROVIDER, remedy=remedy, status=status,
                         retryable=False)
        self.input_sent = input_sent


class SessionDropped(CloudExecError):
    """The connection was lost mid-session (and could not be resumed); `input_sent` says whether the command may have seen input."""

    def __init__(self, message: str, *, input_sent: bool, input_acknowledged: bool,
                 resume_error: CloudExecError | None = None) -> None:
        super().__init__(message, code='SessionDropped', provider=PROVIDER, retryable=False,
                         remedy='Start a new session; check whether the command ran before repeating it' if input_sent
                         else 'Start a new session')
        self.input_sent = input_sent
        self.input_acknowledged = input_acknowledged
        # Why ResumeSession did not bring the session back (None: it was not tried).
        self.resume_error = resume_error


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SessionStats:
    """Counters of one session; payload contents are never kept."""

    opened_at: float | None = None        # wall clock (epoch seconds) when the websocket opened
    connect_seconds: float | None = None  # how long connecting took
    frames_sent: int = 0                  # binary frames (stream messages, resends, acks)
    frames_received: int = 0
    stream_messages_sent: int = 0         # first transmissions of input_stream_data messages
    stream_messages_received: int = 0     # output_stream_data messages, duplicates included
    acks_sent: int = 0
    acks_received: int = 0
    resends: int = 0
    bytes_in: int = 0                     # output bytes handed to the caller
    bytes_out: int = 0                    # input bytes taken from the caller
    wire_bytes_in: int = 0
    wire_bytes_out: int = 0
    invalid_frames: int = 0               # dropped as malformed (the agent resends them)
    pauses: int = 0                       # pause_publication received
    resumes: int = 0                      # lost connections replaced through ResumeSession
    resume_attempts: int = 0              # ResumeSession calls (and reconnections) tried

    def as_dict(self) -> dict[str, t.Any]:
        """Return the counters as a plain dict (for module results and debug logs)."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _default_log(line: str) -> None:
    _LOGGER.debug('%s', line)


# ---------------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------------
class DataChannelSession:
    """One SSM data channel session over a websocket, pumped by the caller (no threads of ours).

    stream_url and token come from ECS ExecuteCommand (session.streamUrl, session.tokenValue).
    session_id and target_id ("ecs:<cluster>_<taskId>_<runtimeId>") are only needed for KMS.
    generate_data_key(key_id, encryption_context) -> (plaintext, ciphertext_blob) must call KMS
    GenerateDataKey with NumberOfBytes=64; without it a KMS-encrypted session is refused.
    resume_session(session_id) -> (stream_url or None, token) calls SSM ResumeSession; without it (or
    without session_id) a lost connection ends the session. terminal_size (cols, rows) is sent as soon as
    the agent takes input; None sends none.
    """

    def __init__(self, stream_url: str, token: str, *, session_id: str | None = None, target_id: str | None = None,
                 connect_timeout: float = 30.0, log: t.Callable[[str], None] | None = None,
                 connect: t.Callable[..., t.Any] | None = None, clock: t.Callable[[], float] = time.monotonic,
                 client_version: str = USER_AGENT, proxy: str | bool | None = True,
                 extra_headers: t.Mapping[str, str] | None = None, ssl_context: t.Any = None,
                 generate_data_key: GenerateDataKey | None = None, input_hold: float = DEFAULT_INPUT_HOLD,
                 give_up_after: float = RESEND_GIVE_UP_AFTER, resume_session: ResumeSession | None = None,
                 terminal_size: tuple[int, int] | None = DEFAULT_TERMINAL_SIZE,
                 sleep: t.Callable[[float], None] = time.sleep) -> None:
        if connect is None:
            websocket.require('ECS Exec sessions')
        parts = urllib.parse.urlsplit(stream_url or '')
        if parts.scheme not in ('wss', 'ws') or not parts.hostname:
            # The URL itself stays out of the message: its path and query locate the session.
            raise CloudExecError('the data channel stream URL must be a wss:// URL with a host', code='InvalidParameter',
                                 provider='cloudexec', retryable=False,
                                 remedy='Pass session.streamUrl from the ExecuteCommand response unchanged')
        if not token:
            raise CloudExecError('the data channel token is empty', code='InvalidParameter', provider='cloudexec',
                                 retryable=False, remedy='Pass session.tokenValue from the ExecuteCommand response')
        self._stream_url = stream_url
        self._token = token
        self._redact = websocket.Redactor(stream_url, token)
        self.host = parts.hostname if parts.port is None else '%s:%d' % (parts.hostname, parts.port)
        self.session_id = session_id
        self.target_id = target_id
        self.connect_timeout = connect_timeout
        self.client_version = client_version
        self.input_hold = input_hold
        self._log_callback = log or _default_log
        self._connect = connect
        self._clock = clock
        self._proxy = proxy
        self._extra_headers = dict(extra_headers or {})
        self._ssl_context = ssl_context
        self._generate_data_key = generate_data_key
        self._resume_session = resume_session
        self.terminal_size = terminal_size
        self._sleep = sleep
        # One ClientId for every connection of this session, as AWS's client keeps it across reconnects.
        self._client_id = str(uuid.uuid4())
        self._resume_failures = 0   # resumed connections lost again before anything arrived on them
        self._frames_on_connection = 0
        self._channel = DataChannelState(Role.CLIENT, give_up_after=give_up_after)
        self.stats = SessionStats()
        self.session_type: str | None = None
        self.exit_code: int | None = None
        self._ws: t.Any = None
        self._opened = False
        self._closed_by_us = False
        self._opened_mono = 0.0
        self._frames_seen = 0              # binary frames from the service (0: it never spoke)
        self._agent_spoke = False          # a stream message arrived: the session exists on the agent
        self._handshake: str | None = None  # None, 'requested' or 'complete'
        # Input waiting for the agent to be ready: (payload type, data, from the caller: not our own terminal size).
        self._held: list[tuple[int, bytearray, bool]] = []
        self._chunks: list[tuple[str, bytes]] = []
        self._highest_sent = -1            # highest sequence number put on the socket
        self._first_input_seq: int | None = None  # sequence number of the first caller input message
        self._input_acked = False
        self._closed_info: ChannelClosed | None = None
        self._failure: CloudExecError | None = None
        self._write_closed = False          # a send met a closed connection; receiving decides what it means
        self._write_closed_at = 0.0
        self._cipher: SessionCipher | None = None        # the session key, once KMS gave one

    # -- presentation ------------------------------------------------------------------------
    def __repr__(self) -> str:
        return 'DataChannelSession(host=%r, session_id=%r, state=%r)' % (self.host, self.session_id, self.state)

    __str__ = __repr__

    @property
    def state(self) -> str:
        """'new', 'open', 'ended' (agent closed it), 'failed' or 'closed' (closed by us)."""
        if self._closed_by_us:
            return 'closed'
        if self._failure is not None:
            return 'failed'
        if self._closed_info is not None:
            return 'ended'
        return 'open' if self._opened else 'new'

    @property
    def ready(self) -> bool:
        """True when input goes out at once; before that it is held (see DEFAULT_INPUT_HOLD)."""
        if self._handshake is not None:
            return self._handshake == 'complete'
        if self._agent_spoke:
            return True
        return self._opened and self._clock() - self._opened_mono >= self.input_hold

    @property
    def input_sent(self) -> bool:
        """True once any input (or terminal size) message of the caller went onto the socket."""
        return self._first_input_seq is not None and self._highest_sent >= self._first_input_seq

    @property
    def unacknowledged(self) -> int:
        """Input messages sent or queued but not yet acknowledged, plus held input."""
        return self._channel.unacked_count + len(self._held)

    def _log(self, line: str) -> None:
        self._log_callback(self._redact(line))

    # -- opening -----------------------------------------------------------------------------
    def open(self) -> None:
        """Connect the websocket and send the OpenDataChannel frame; raises DataChannelConnectFailed."""
        if self._opened or self._closed_by_us:
            raise CloudExecError('the data channel session was already opened', code='DataChannelAlreadyOpen',
                                 provider='cloudexec', retryable=False, remedy='Create a new DataChannelSession per session')
        self._opened = True
        scheme = urllib.parse.urlsplit(self._stream_url).scheme
        self._log('opening the SSM data channel to %s%s' % (self.host, '' if scheme == 'wss' else ' (unencrypted ws://)'))
        self._log_proxy()
        started = self._clock()
        try:
            self._ws = self._dial(self._stream_url)
        except DataChannelConnectFailed as exc:
            self._failure = exc
            raise exc from None
        self._opened_mono = self._clock()
        self.stats.connect_seconds = self._opened_mono - started
        self.stats.opened_at = time.time()
        try:
            self._ws.send(self._open_frame(self._token))  # a str: the only TEXT frame; everything after is binary
        except ConnectionClosed as exc:
            self._set_failure(DataChannelConnectFailed('the service at %s closed the websocket before the session was opened%s'
                                                       % (self.host, self._close_details(exc))))
            raise self._failure from None
        self._log('data channel websocket to %s open after %.2f s; OpenDataChannel sent' % (self.host, self.stats.connect_seconds))
        if self.terminal_size is not None:
            # Sent once the agent takes input (it has no PTY before the command starts, and drops input during a handshake).
            self._submit(PayloadType.SIZE, build_size(*self.terminal_size), caller=False)

    def _open_frame(self, token: str) -> str:
        """The OpenDataChannel text frame: the same ClientId on every connection, a new RequestId each time."""
        return build_open_data_channel(token, client_id=self._client_id, client_version=self.client_version,
                                       request_id=str(uuid.uuid4()))

    def _dial(self, url: str) -> t.Any:
        """Open a websocket to url; raises DataChannelConnectFailed (whose text never holds the URL)."""
        try:
            return websocket.connect(url, connect=self._connect, connect_timeout=self.connect_timeout, logger=_WS_LOGGER,
                                     user_agent=self.client_version, proxy=self._proxy, extra_headers=self._extra_headers,
                                     ssl_context=self._ssl_context)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # OSError, TimeoutError, InvalidHandshake, InvalidURI, InvalidProxy...: all mean "no channel".
            # `from None`: the original exception's text may carry the URL.
            raise self._connect_error(exc) from None

    def _log_proxy(self) -> None:
        if self._proxy is True and websocket.HAS_WEBSOCKETS:
            try:
                from websockets.proxy import get_proxy  # pylint: disable=import-outside-toplevel
                from websockets.uri import parse_uri  # pylint: disable=import-outside-toplevel
                proxy = get_proxy(parse_uri(self._stream_url))
            except (ImportError, ValueError, OSError, AttributeError):
                return
        else:
            proxy = self._proxy or None
        if proxy:
            # Name the proxy's host only: its URL may hold credentials.
            parsed = urllib.parse.urlsplit(str(proxy))
            self._log('connecting through the proxy %s://%s (from %s)' % (
                parsed.scheme, parsed.hostname, 'the environment' if self._proxy is True else 'the proxy option'))

    def _connect_error(self, exc: BaseException) -> DataChannelConnectFailed:
        status = getattr(getattr(exc, 'response', None), 'status_code', None)
        if isinstance(status, int):
            hint = {401: 'the token or the request signature was not accepted', 403: 'the token was rejected or has expired',
                    404: 'the session does not exist (it ended, or the token was already used)'}.get(status, '')
            return DataChannelConnectFailed('the ssmmessages endpoint at %s refused the websocket upgrade with HTTP %d%s'
                                            % (self.host, status, ': ' + hint if hint else ''), status=status)
        if isinstance(exc, TimeoutError):
            what = 'timed out after %g seconds' % self.connect_timeout
        elif isinstance(exc, OSError):
            what = 'failed: %s%s' % (type(exc).__name__, ' (%s)' % exc.strerror if exc.strerror else '')
        else:
            what = 'failed: %s: %s' % (type(exc).__name__, _sanitize(str(exc), self._redact, 200))
        return DataChannelConnectFailed('connecting the SSM data channel websocket to %s %s' % (self.host, what))

    # -- the public pump ---------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue input for the remote terminal; it is sent now unless held (not ready, publication paused).

        Raises SessionDropped (or SessionClosed) when the connection is found closed; to tell the two
        apart it may read for up to CLOSE_TIMEOUT seconds. Output that arrived before stays readable.
        """
        self._check_usable()
        data = bytes(data)
        if not data:
            return
        self.stats.bytes_out += len(data)
        self._submit(PayloadType.OUTPUT, data)
        self._settle_write_loss()
        self._raise_failure()

    def read_streams(self, timeout: float) -> list[tuple[str, bytes]]:
        """Pump for up to timeout seconds; return [(STDOUT|STDERR, bytes), ...] in order, [] on timeout.

        Raises SessionClosed once the agent closed the channel and everything before it was returned,
        SessionDropped when the connection is lost, and the KMS / connect errors described above.
        """
        self._check_usable(allow_ended=True)
        deadline = self._clock() + max(0.0, timeout)
        self._pump(deadline, lambda: bool(self._chunks))
        if self._chunks:
            # Pick up frames that are already here, so callers get larger pieces with fewer calls.
            for _frame in range(_COALESCE_FRAMES):
                if self._failure is not None or self._ws is None or not self._receive_one(0.0):
                    break
            chunks, self._chunks = self._chunks, []
            return chunks
        self._raise_failure()
        if self._closed_info is not None:
            raise self._session_closed()
        return []

    def read(self, timeout: float) -> bytes:
        """Like read_streams() with stdout and stderr merged in arrival order (b'' on timeout)."""
        return b''.join(data for _stream, data in self.read_streams(timeout))

    @property
    def max_send(self) -> int:
        """The most bytes one send() can take: the outgoing buffer holds OUTGOING_BUFFER_CAPACITY messages (AWS's
        client's figure), and a send must fit it whole, before any of it is acknowledged."""
        return self._channel.outgoing_capacity * self._channel.payload_size

    def flush(self, timeout: float) -> bool:
        """Pump until all input is acknowledged (True) or timeout passes (False); output is kept for read()."""
        self._check_usable(allow_ended=True)
        deadline = self._clock() + max(0.0, timeout)
        done = self._pump(deadline, lambda: not self._held and self._channel.unacked_count == 0)
        if not done and not self._chunks:
            self._raise_failure()  # with output pending, read() delivers it and raises afterwards
        return done

    def close(self) -> None:
        """Close the websocket politely (idempotent). The remote command is not stopped by this."""
        if self._closed_by_us:
            return
        self._closed_by_us = True
        self._drop_socket()
        if self._opened:
            self._log('data channel to %s closed: %s' % (self.host, ', '.join('%s=%s' % item for item in self.stats.as_dict().items())))

    def __enter__(self) -> DataChannelSession:
        if not self._opened:
            self.open()
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()

    # -- internals: checks -------------------------------------------------------------------
    def _check_usable(self, allow_ended: bool = False) -> None:
        if self._closed_by_us or not self._opened:
            raise CloudExecError('the data channel session is not open', code='DataChannelNotOpen', provider='cloudexec',
                                 retryable=False, remedy='Call open() first (or use the session as a context manager)')
        if not allow_ended:
            self._raise_failure()
            if self._closed_info is not None:
                raise self._session_closed()

    def _settle_write_loss(self) -> None:
        """After a failed send, read what is still queued so the closure is reported for what it is."""
        while self._write_closed and self._ws is not None and self._failure is None:
            self._receive_one(CLOSE_TIMEOUT)
        if self._closed_info is not None and self._failure is None:
            raise self._session_closed()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _set_failure(self, error: CloudExecError) -> None:
        if self._failure is None:
            self._failure = error
            self._log('data channel to %s failed: %s' % (self.host, error))
        self._drop_socket()

    def _drop_socket(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:  # pylint: disable=broad-exception-caught
                pass  # closing a broken socket may fail in many ways; it is gone either way

    def _session_closed(self) -> SessionClosed:
        self._drop_socket()
        info = self._closed_info or ChannelClosed()
        output = _sanitize(info.output, self._redact)
        message = 'the agent closed the session' + (': %s' % output if output else '')
        return SessionClosed(message, provider=PROVIDER, output=output, exit_code=self.exit_code)

    def _lost(self, exc: BaseException | None, why: str = '', resume_error: CloudExecError | None = None) -> CloudExecError:
        details = self._close_details(exc) if exc is not None else ''
        resumed = self._resume_failure_text(resume_error)
        if exc is not None and self._frames_seen == 0 and self.stats.resumes == 0:
            # Only a policy-violation close (1008) is the service refusing the token; a connection cut
            # without a close frame is the network (or the agent) going away.
            frame = getattr(exc, 'rcvd', None)
            cause = ('the token was probably rejected (already used or expired)' if getattr(frame, 'code', None) == 1008
                     else 'the connection was cut before the agent said anything')
            return DataChannelConnectFailed('the service at %s closed the data channel before the session started%s%s: %s%s'
                                            % (self.host, details, why, cause, resumed), input_sent=self.input_sent)
        if self.input_sent:
            sent = ('after input had been sent (%d bytes, %s): the command may have run'
                    % (self.stats.bytes_out, 'the agent acknowledged some of it' if self._input_acked else 'none acknowledged'))
        else:
            sent = 'before any input was sent'
        return SessionDropped('the data channel to %s was lost %s%s%s%s' % (self.host, sent, details, why, resumed),
                              input_sent=self.input_sent, input_acknowledged=self._input_acked, resume_error=resume_error)

    def _resume_failure_text(self, error: CloudExecError | None) -> str:
        if error is None:
            return ''
        text = '; the session could not be resumed (%s: %s)' % (error.code, _sanitize(error.message, self._redact, 300))
        if error.code in _RESUME_REFUSED_CODES:
            # Not established that SSM resumes ECS Exec sessions at all (docs/aws_ecs.md, "Lost connections").
            text += ': SSM may not resume ECS Exec sessions, or the session had ended'
        elif error.code in ('AccessDeniedException', 'AccessDenied'):
            text += ': allow ssm:ResumeSession on the session to the caller to resume it next time'
        return text

    # -- internals: resuming -----------------------------------------------------------------
    def _connection_lost(self, exc: BaseException | None, why: str = '') -> None:
        """The websocket went away without channel_closed: resume the session if we can, else fail."""
        refused = (exc is not None and self._frames_seen == 0 and self.stats.resumes == 0
                   and getattr(getattr(exc, 'rcvd', None), 'code', None) == 1008)
        if self._resume_session is None or not self.session_id or refused or self._closed_by_us:
            self._set_failure(self._lost(exc, why))
            return
        if self.stats.resumes and self._frames_on_connection == 0:
            self._resume_failures += 1   # the resumed connection died before anything arrived on it
        else:
            self._resume_failures = 0
        self._log('data channel to %s lost%s%s; resuming the session' % (self.host, self._close_details(exc) if exc is not None else '', why))
        self._drop_socket()
        try:
            if self._resume_failures >= RESUME_ATTEMPTS:
                raise CloudExecError('%d resumed connections in a row were lost before anything arrived on them' % self._resume_failures,
                                     code='ResumeFailed', provider=PROVIDER, retryable=False)
            self._resume()
        except CloudExecError as error:
            self._set_failure(self._lost(exc, why, resume_error=error))

    def _resume(self) -> None:
        """ResumeSession and a new websocket, retried with back-off; then everything unacknowledged goes out again."""
        session_id = t.cast(str, self.session_id)
        resume_session = t.cast(ResumeSession, self._resume_session)

        def attempt() -> None:
            self.stats.resume_attempts += 1
            url, token = resume_session(session_id)
            url = url or self._stream_url   # AWS's client always goes back to the first URL (websocketchannel.go)
            self._redact.add(url, token)
            if urllib.parse.urlsplit(url).scheme not in ('wss', 'ws'):
                raise CloudExecError('ResumeSession answered a stream URL that is not a websocket URL', code='ResumeFailed',
                                     provider=PROVIDER, retryable=False)
            try:
                ws = self._dial(url)
            except DataChannelConnectFailed as exc:
                exc.retryable = True   # the network may come back; the next ResumeSession brings a fresh token
                raise
            try:
                ws.send(self._open_frame(token))
            except ConnectionClosed:
                with contextlib.suppress(Exception):
                    ws.close()
                raise CloudExecError('the service closed the resumed websocket at once', code='DataChannelConnectFailed',
                                     provider=PROVIDER, retryable=True) from None
            self._ws = ws

        Poller(RESUME_TIMEOUT, policy=SSM_RESUME, what='resuming the session to %s' % self.host,
               clock=self._clock, sleep=self._sleep).call(attempt)
        self._write_closed = False
        self._frames_on_connection = 0
        self.stats.resumes += 1
        again = self._channel.reconnected(self._clock())
        acks = sum(1 for message in again if message.message_type == ACKNOWLEDGE)
        self._log('session resumed on a new connection to %s (%d ResumeSession call(s) so far); sending %d acknowledgement(s) '
                  'and %d unacknowledged message(s) again' % (self.host, self.stats.resume_attempts, acks, len(again) - acks))
        for message in again:
            self._transmit(message)

    def _close_details(self, exc: BaseException) -> str:
        frame = getattr(exc, 'rcvd', None)
        if frame is None:
            return ' (no close frame)'
        reason = _sanitize(getattr(frame, 'reason', '') or '', self._redact, 200)
        return ' (close code %s%s)' % (getattr(frame, 'code', '?'), ': %s' % reason if reason else '')

    # -- internals: pumping ------------------------------------------------------------------
    def _pump(self, deadline: float, done: t.Callable[[], bool]) -> bool:
        """Receive and service the channel until done() or the deadline; stop early on failure or end."""
        while True:
            if done():
                return True
            if self._failure is not None or self._closed_info is not None or self._ws is None:
                return False
            self._service()
            if self._failure is not None:
                continue
            now = self._clock()
            remaining = deadline - now
            if remaining <= 0:
                return False
            wait = remaining
            wakeup = self._next_wakeup()
            if wakeup is not None:
                wait = min(wait, max(_MIN_WAIT, wakeup - now))
            self._receive_one(wait)

    def _next_wakeup(self) -> float | None:
        candidates = []
        resend = self._channel.next_deadline()
        if resend is not None:
            candidates.append(resend)
        if self._held and self._handshake is None and not self._agent_spoke:
            candidates.append(self._opened_mono + self.input_hold)
        return min(candidates) if candidates else None

    def _service(self) -> None:
        """Send held input once ready, resends that fell due, and notice a stalled channel."""
        now = self._clock()
        if self._held and self.ready and not self._channel.closed:
            held, self._held = self._held, []
            for payload_type, data, caller in held:
                self._send_stream(payload_type, bytes(data), caller)
        if self._failure is not None:
            return
        if self._channel.stalled(now):
            self._set_failure(self._lost(None, ': no acknowledgement from the agent for %g seconds' % self._channel.give_up_after))
            return
        for message in self._channel.due_resends(now):
            self._transmit(message)

    def _submit(self, payload_type: int, data: bytes, caller: bool = True) -> None:
        if self._held or not self.ready:
            if self._held and self._held[-1][0] == payload_type == PayloadType.OUTPUT and self._held[-1][2] == caller:
                self._held[-1][1].extend(data)
            else:
                self._held.append((payload_type, bytearray(data), caller))
            return
        self._send_stream(payload_type, data, caller)

    def _send_stream(self, payload_type: int, data: bytes, caller: bool = True) -> None:
        # Our own terminal size runs nothing: it does not make the command one that "may have seen input".
        if caller and self._first_input_seq is None and payload_type in (PayloadType.OUTPUT, PayloadType.SIZE):
            self._first_input_seq = self._channel.next_sequence_number
        try:
            messages = self._channel.send(data, payload_type, now=self._clock())
        except SSMProtocolError as exc:
            self._set_failure(CloudExecError('cannot queue input on the data channel: %s' % exc, code='DataChannelProtocolError',
                                             provider=PROVIDER, retryable=False))
            return
        for message in messages:
            self._transmit(message)

    def _transmit(self, message: AgentMessage) -> None:
        if self._ws is None or self._write_closed:
            return
        frame = message.encode()
        try:
            self._ws.send(frame)
        except ConnectionClosed:
            # Not a verdict yet: frames the service sent before hanging up (channel_closed above all)
            # may still be queued. Receiving drains them and then meets the closure (_receive_one).
            self._write_closed = True
            self._write_closed_at = self._clock()
            return
        self.stats.frames_sent += 1
        self.stats.wire_bytes_out += len(frame)
        if message.message_type == ACKNOWLEDGE:
            self.stats.acks_sent += 1
        elif message.sequence_number > self._highest_sent:
            self._highest_sent = message.sequence_number
            self.stats.stream_messages_sent += 1
        else:
            self.stats.resends += 1

    def _receive_one(self, wait: float) -> bool:
        """Receive and handle at most one frame; False if none came within wait."""
        try:
            frame = self._ws.recv(timeout=wait)
        except TimeoutError:
            if self._write_closed and self._clock() - self._write_closed_at >= CLOSE_TIMEOUT:
                # The write side died long ago and the read side never closed: treat it as the loss it is.
                self._connection_lost(None, ': sending failed on a closed connection')
            return False
        except ConnectionClosed as exc:
            if self._channel.closed:
                self._drop_socket()  # the service hangs up after channel_closed: the normal end
            else:
                self._connection_lost(exc)
            return False
        self._on_frame(frame)
        return True

    def _on_frame(self, frame: t.Any) -> None:
        if isinstance(frame, str):
            self._log('ignored a text frame of %d characters from %s' % (len(frame), self.host))
            return
        self.stats.frames_received += 1
        self.stats.wire_bytes_in += len(frame)
        self._frames_on_connection += 1
        try:
            message = AgentMessage.decode(frame)
        except SSMProtocolError as exc:
            # AWS's client drops such frames too; being unacknowledged, a stream message comes again.
            self.stats.invalid_frames += 1
            self._log('dropped a malformed frame: %s' % exc)
            return
        self._frames_seen += 1
        kind = message.message_type
        if kind == OUTPUT_STREAM_DATA:
            self.stats.stream_messages_received += 1
        elif kind == ACKNOWLEDGE:
            self.stats.acks_received += 1
        try:
            result = self._channel.receive(message, self._clock())
        except SSMProtocolError as exc:
            if kind != OUTPUT_STREAM_DATA:
                self.stats.invalid_frames += 1
                self._log('dropped a malformed %s message: %s' % (kind, exc))
                return
            # A handshake we cannot read or output we cannot decrypt would only be resent forever.
            self._set_failure(CloudExecError('the agent sent a stream message this client cannot process: %s' % exc,
                                             code='DataChannelProtocolError', provider=PROVIDER, retryable=False,
                                             remedy='Report this with the SSM agent version of the task'))
            return
        if kind == ACKNOWLEDGE and not self._input_acked and self._first_input_seq is not None:
            try:
                self._input_acked = parse_acknowledge(message.payload).sequence_number >= self._first_input_seq
            except SSMProtocolError:
                pass  # already reported by the channel, which parsed it first
        for ack in result.to_send:
            self._transmit(ack)
        for event in result.events:
            self._on_event(event)

    def _on_event(self, event: t.Any) -> None:
        if isinstance(event, StreamData):
            self._agent_spoke = True
            self._on_stream_data(event)
        elif isinstance(event, HandshakeRequested):
            self._agent_spoke = True
            self._on_handshake(event.request)
        elif isinstance(event, HandshakeCompleted):
            self._handshake = 'complete'
            message = _sanitize(event.complete.customer_message, self._redact)
            self._log('handshake complete (session type %s)%s' % (self.session_type, ': ' + message if message else ''))
        elif isinstance(event, EncryptionChallengeReceived):
            self._on_challenge(event.challenge)
        elif isinstance(event, ChannelClosedEvent):
            self._closed_info = event.info
            self._log('the agent closed the channel: %s' % _sanitize(event.info.output, self._redact))
        elif isinstance(event, PublicationPaused):
            self.stats.pauses += 1
            self._log('publication paused by the service: input is held')
        elif isinstance(event, PublicationStarted):
            self._log('publication started by the service: held input goes out')
        elif isinstance(event, UnexpectedMessage):
            self._log('ignored a %s message' % _sanitize(event.message_type, self._redact, 40))

    def _on_stream_data(self, event: StreamData) -> None:
        if self.session_type is None and self._handshake is None:
            # Without a handshake the first output fixes the session type, as in AWS's client.
            self.session_type = 'Standard_Stream'
        payload_type = event.payload_type
        if payload_type in (PayloadType.OUTPUT, PayloadType.STDERR, PayloadType.ERROR):
            if event.payload:
                stream = STDOUT if payload_type == PayloadType.OUTPUT else STDERR
                self._chunks.append((stream, event.payload))
                self.stats.bytes_in += len(event.payload)
        elif payload_type == PayloadType.EXIT_CODE:
            try:
                self.exit_code = parse_exit_code(event.payload)
            except SSMProtocolError as exc:
                self._log('ignored an exit code payload: %s' % exc)
        else:
            self._log('ignored a stream payload of type %d (%d bytes)' % (payload_type, len(event.payload)))

    # -- internals: handshake and KMS --------------------------------------------------------
    def _on_handshake(self, request: HandshakeRequest) -> None:
        self._handshake = 'requested'
        kms_action = request.action(ACTION_KMS_ENCRYPTION)
        kms_result = kms_error = None
        failure: CloudExecError | None = None
        if kms_action is not None:
            if self._generate_data_key is None:
                kms_error = 'KMS encryption is not supported by this client'
                failure = CloudExecError(
                    'the agent asked for KMS encryption of the session (the cluster executeCommandConfiguration sets a '
                    'kmsKeyId) and no KMS data key provider was configured', code='KMSEncryptionUnsupported', provider=PROVIDER,
                    retryable=False, remedy='Enable KMS support for ECS Exec sessions in cloudexec.core (it needs kms:GenerateDataKey '
                    'on the cluster key and the cryptography package), or remove kmsKeyId from the cluster executeCommandConfiguration')
            else:
                try:
                    kms_result = self._setup_kms(kms_action.kms_encryption_request())
                except CloudExecError as exc:
                    kms_error = 'KMS data key generation failed'
                    failure = exc
        response, session_type = answer_handshake(request, self.client_version, kms_action_result=kms_result, kms_error=kms_error)
        self.session_type = session_type
        self._log('handshake requested by agent %s (%s); answering' % (
            _sanitize(request.agent_version, self._redact, 40),
            ', '.join(_sanitize(item.action_type, self._redact, 40) for item in request.requested_client_actions)))
        # The response bypasses the input hold: it is what ends the handshake.
        self._send_stream(PayloadType.HANDSHAKE_RESPONSE, response.to_json())
        if failure is not None:
            self._set_failure(failure)
        elif self._cipher is not None:
            self._channel.set_cipher(self._cipher.seal, self._cipher.open)

    def _setup_kms(self, request: KMSEncryptionRequest) -> dict[str, t.Any]:
        self._cipher, ciphertext = new_session_key(t.cast(GenerateDataKey, self._generate_data_key), request.kms_key_id,
                                                   self.session_id, self.target_id, request.challenge)
        return kms_encryption_result(ciphertext, True if request.challenge else None)

    def _on_challenge(self, challenge: EncryptionChallenge) -> None:
        if self._cipher is None:
            self._set_failure(CloudExecError('the agent sent an encryption challenge but no KMS key was agreed',
                                             code='DataChannelProtocolError', provider=PROVIDER, retryable=False))
            return
        try:
            answer = self._cipher.seal(self._cipher.open(challenge.challenge))
        except SSMProtocolError as exc:
            self._set_failure(CloudExecError('cannot answer the agent encryption challenge: %s' % exc, code='KMSEncryptionFailed',
                                             provider=PROVIDER, retryable=False))
            return
        self._send_stream(PayloadType.ENC_CHALLENGE_RESPONSE, EncryptionChallenge(answer).to_json())
