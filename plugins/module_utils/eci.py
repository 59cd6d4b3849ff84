# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Alibaba ECI exec: find the container, run a command in Sync mode or over the exec websocket.

ExecContainerCommand has two ways to run something:

- Sync: the HTTP answer carries ``SyncResponse``, stdout and stderr merged, no exit code, and the call
  blocks until the command ends (no server-side limit is documented: the SDK's 10 s is only its default
  read timeout). The Command argv is limited to 20 items of 256 characters. We run a compact sh wrapper
  (it fits one item) that frames stdout, stderr and the exit code with the same markers remote_shell uses,
  so Sync still gives rc and stderr apart (as text: the answer is a JSON string).
- Stream: the answer carries a ``WebSocketUri`` (``wss://eci-<region>.aliyun.com/exec/?s=<token>``, a host of
  its own). We ask for ``["/bin/sh", "-s", <nonce>]`` with Stdin and no TTY and send the remote_shell script
  over stdin, so the argv limits never apply to the real command and bytes are exact.

The websocket's protocol is not documented. It behaves like a kubelet's exec stream (Kubernetes
``pkg/cri/streaming/remotecommand``): each binary message starts with a channel byte, 0 stdin, 1 stdout,
2 stderr, 3 error/status, 4 resize. We request no subprotocol (a kubelet refuses a handshake whose
subprotocols it does not know), and then a kubelet first sends an empty "ready" message on stdout, sends
nothing on channel 3 when the command succeeds and the status message as plain text when it fails; only a
``v4.channel.k8s.io`` peer sends JSON ``metav1.Status``, success included. One public client numbers 3 resize
and 4 exit. So this client reads channel 3 and 4 alike as a status in either form, never as output, and takes
the exit code from its own marker; the status only explains a failure (its text reaches the user). Closing
the socket does not end the command (the runtime leaves it running with its stdin at end of file): a command
that overruns its deadline is ended from a second exec, which finds it by the nonce in its argv.

The WebSocketUri carries its token in the query: the whole URI is a secret, never logged or returned.
"""

from __future__ import annotations

import json
import re
import time
import typing as t
from dataclasses import dataclass, field

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud, exec_checks, remote_shell, websocket
from ansible_collections.cloudexec.core.plugins.module_utils.errors import THROTTLING_CODES, CloudExecError, DeadlineExceeded, ValidationError
from ansible_collections.cloudexec.core.plugins.module_utils.poll import ECI_API, Poller
from ansible_collections.cloudexec.core.plugins.module_utils.websocket import ConnectionClosed, ConnectionClosedOK

try:
    from alibabacloud_eci20180808 import models as eci_models
except ImportError:
    eci_models = None  # pylint: disable=invalid-name

PROVIDER = 'alicloud'

# ExecContainerCommand's Command limits (API reference).
MAX_COMMAND_ITEMS = 20
MAX_COMMAND_ITEM_LENGTH = 256
# DescribeContainerGroups returns at most 20 groups per page.
DESCRIBE_LIMIT = 20

# Channels of the Kubernetes exec protocol.
CHANNEL_STDIN = 0
CHANNEL_STDOUT = 1
CHANNEL_STDERR = 2
CHANNEL_STATUS = 3
CHANNEL_RESIZE = 4
STDOUT = 'stdout'
STDERR = 'stderr'
STATUS = 'status'
# What the service's messages carry, by channel. A Kubernetes server never writes on 4 (resize, client to
# server); a peer that numbers 3 resize and 4 exit writes its exit status there: both are read as a status.
_STREAMS = {CHANNEL_STDOUT: STDOUT, CHANNEL_STDERR: STDERR, CHANNEL_STATUS: STATUS, CHANNEL_RESIZE: STATUS}

# Stdin goes out in pieces of this size, so one big script does not become one huge message.
SEND_CHUNK = 32 * 1024
# After the end marker, how long to wait for the status message and the close (politeness, not needed).
END_GRACE = 2.0
# Extra seconds the Sync HTTP read timeout gets over the command timeout (network, scheduling): a quarter of
# the timeout, within these bounds.
SYNC_READ_MARGIN = 15
SYNC_READ_MARGIN_MIN = 2
# mode=auto uses Sync only with a timeout of at least this: Sync notices a deadline only through its read
# timeout, margin included, so a short deadline is kept loosely; the stream keeps it to the second.
SYNC_AUTO_MIN_TIMEOUT = 60
# Ending an overrun command from a second exec: how long that may take, and the kill script's SIGTERM grace.
KILL_TIMEOUT = 20.0
KILL_GRACE = 2.0

# websockets logs request lines (the URI, with its token) at DEBUG: its connections get this logger,
# which never enables DEBUG whatever the root logger says.
_WS_LOGGER = websocket.quiet_logger('eci')

# The Sync wrapper: one argv item of at most 256 characters. Arguments: $1 nonce, $2 chdir, $3 creates,
# $4 removes ('' when unset), then the command's argv. Markers are remote_shell's, so OutputParser reads them.
# stderr is caught by a command substitution (no temp file needed) with the exit code appended after a dot,
# which also keeps the trailing newlines a substitution would strip. The call sends Stdin=false.
SYNC_SCRIPT = (
    'n=$1;m(){ printf "\\n@@CE$n:$1@@\\n";};q(){ m END:$1;exit;};'
    'cd -- "${2:-.}"||q chdir:1;[ -e "$3" ]&&q creates:0;[ -z "$4" ]||[ -e "$4" ]||q removes:0;'
    'shift 4;m OUT;{ x=$("$@" 2>&1 >&3;echo .$?);} 3>&1;m ERR;printf %s "${x%.*}";q ran:${x##*.}'
)
SYNC_PREFIX_ITEMS = 8  # /bin/sh -c SCRIPT sh nonce chdir creates removes

MODE_AUTO = 'auto'
MODE_SYNC = 'sync'
MODE_STREAM = 'stream'


# ---------------------------------------------------------------------------------------------
# Framing (sans I/O)
# ---------------------------------------------------------------------------------------------
def encode_frame(channel: int, data: bytes = b'') -> bytes:
    """One binary websocket message: the channel byte, then the payload."""
    if not 0 <= channel <= 255:
        raise ValueError(f'channel {channel} is not a byte')
    return bytes((channel,)) + bytes(data)


def decode_frame(frame: bytes) -> tuple[int, bytes]:
    """(channel, payload) of a binary message; ValueError for an empty one."""
    if not frame:
        raise ValueError('an exec message must start with a channel byte')
    return frame[0], bytes(frame[1:])


@dataclass(frozen=True)
class ExecStatus:
    """A status message: success, or failure with an exit code (NonZeroExitCode) and the service's text."""

    success: bool
    exit_code: int | None
    message: str = ''
    reason: str = ''


# The start of a kubelet's non-zero-exit message (KUBELET exec.go), whose plain-text form ends with the code.
_NONZERO_PREFIX = 'command terminated with non-zero exit code'
_TRAILING_CODE = re.compile(r'(\d{1,3})\s*$')


def parse_status(payload: bytes) -> ExecStatus:
    """Read a status message: a metav1.Status JSON (v4 peers) or the plain text of a failure (no subprotocol).

    Plain text is only ever sent for a failure (a kubelet sends nothing when the command succeeds).
    """
    text = payload.decode('utf-8', errors='replace').strip()
    try:
        status = json.loads(text)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        if not text:
            return ExecStatus(False, None, 'empty exec status')
        code = _TRAILING_CODE.search(text) if text.startswith(_NONZERO_PREFIX) else None
        return ExecStatus(False, int(code.group(1)) if code else None, text[:500], 'NonZeroExitCode' if code else '')
    if status.get('status') == 'Success':
        return ExecStatus(True, 0)
    reason = str(status.get('reason') or '')
    message = str(status.get('message') or '')
    exit_code = None
    if reason == 'NonZeroExitCode':
        causes = (status.get('details') or {}).get('causes') or []
        for cause in causes:
            if isinstance(cause, dict) and cause.get('reason') == 'ExitCode':
                try:
                    exit_code = int(cause.get('message'))
                except (TypeError, ValueError):
                    pass
    return ExecStatus(False, exit_code, (message or text)[:500], reason)


# ---------------------------------------------------------------------------------------------
# The websocket transport
# ---------------------------------------------------------------------------------------------
class EciStreamError(CloudExecError):
    """The exec websocket could not be opened or was lost; input_sent says whether the command may have run."""

    def __init__(self, message: str, *, code: str, input_sent: bool, remedy: str | None = None) -> None:
        super().__init__(message, code=code, provider=PROVIDER, retryable=False, remedy=remedy)
        self.input_sent = input_sent


class EciStreamClosed(CloudExecError):
    """The service ended the stream normally; every output message before it was delivered."""

    def __init__(self, status: ExecStatus | None) -> None:
        super().__init__('the exec stream ended', code='StreamClosed', provider=PROVIDER, retryable=False)
        self.status = status


class EciExecStream:
    """One ECI exec websocket, driven by the caller (no threads of ours).

        with EciExecStream(uri) as stream:
            stream.send(b'echo hi\\n')
            for stream_name, data in stream.read(timeout=5): ...   # [] on timeout; EciStreamClosed at the end

    The URI is a secret (its query is the session token): only its host is ever named.
    """

    def __init__(self, uri: str, *, connect_timeout: float = 30.0, log: t.Callable[[str], None] | None = None,
                 connect: t.Callable[..., t.Any] | None = None, proxy: str | bool | None = True,
                 clock: t.Callable[[], float] = time.monotonic) -> None:
        if connect is None:
            websocket.require('ECI exec streams')
        websocket.check_url(uri, 'the exec WebSocketUri', 'Pass WebSocketUri from ExecContainerCommand unchanged')
        self._uri = uri
        self._redact = websocket.Redactor(uri)
        self.host = websocket.host_of(uri)
        self.connect_timeout = connect_timeout
        self._log_callback = log
        self._connect = connect
        self._proxy = proxy
        self._clock = clock
        self._ws: t.Any = None
        self._opened = False
        self._ended = False
        self.status: ExecStatus | None = None
        self.input_sent = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.frames_in = 0

    def __repr__(self) -> str:
        return f'EciExecStream(host={self.host!r})'

    __str__ = __repr__

    def _log(self, line: str) -> None:
        if self._log_callback is not None:
            self._log_callback(self._redact(line))

    def open(self) -> None:
        """Connect; raises EciStreamError (code StreamConnectFailed) without naming the URI."""
        if self._opened:
            raise CloudExecError('the exec stream was already opened', code='StreamAlreadyOpen', provider='cloudexec', retryable=False)
        self._opened = True
        self._log(f'opening the ECI exec stream to {self.host}')
        try:
            self._ws = websocket.connect(self._uri, connect=self._connect, connect_timeout=self.connect_timeout, logger=_WS_LOGGER,
                                         proxy=self._proxy)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # Any failure means no stream; `from None` because the original text may carry the URI.
            raise self._connect_error(exc) from None
        self._log(f'ECI exec stream to {self.host} open')

    def _connect_error(self, exc: BaseException) -> EciStreamError:
        status = getattr(getattr(exc, 'response', None), 'status_code', None)
        if isinstance(status, int):
            what = f'was refused with HTTP {status}'
            if status in (401, 403, 404):
                what += ' (the WebSocketUri is single use and valid for a short time: it was already used or has expired)'
        elif isinstance(exc, TimeoutError):
            what = f'timed out after {self.connect_timeout:g} seconds'
        else:
            what = f'failed: {type(exc).__name__}'
        return EciStreamError(f'connecting the ECI exec stream to {self.host} {what}', code='StreamConnectFailed', input_sent=False,
                              remedy='Check that this host can reach the ECI exec endpoint, then retry: a new ExecContainerCommand '
                                     'call gives a new WebSocketUri')

    def _lost(self, exc: BaseException | None) -> EciStreamError:
        rcvd = getattr(exc, 'rcvd', None)
        detail = ' (no close frame)' if rcvd is None else f' (close code {getattr(rcvd, "code", "?")})'
        # Said once, in the remedy: the message says what happened, the remedy what it means for the user.
        when = 'after the command was sent' if self.input_sent else 'before anything was sent'
        return EciStreamError(f'the ECI exec stream to {self.host} was lost {when}{detail}', code='StreamDropped',
                              input_sent=self.input_sent,
                              remedy='The command may have run: check its effects before running it again' if self.input_sent
                              else 'Nothing ran: retry')

    def _check_open(self) -> None:
        if self._ws is None:
            raise CloudExecError('the exec stream is not open', code='StreamNotOpen', provider='cloudexec', retryable=False)

    def _send_frame(self, frame: bytes) -> None:
        self._check_open()
        try:
            self._ws.send(frame)
        except ConnectionClosed as exc:
            self._drop()
            raise self._lost(exc) from None

    def send(self, data: bytes) -> None:
        """Write to the command's stdin (channel 0), in pieces of SEND_CHUNK bytes."""
        data = bytes(data)
        for start in range(0, len(data), SEND_CHUNK):
            self.input_sent = True
            self._send_frame(encode_frame(CHANNEL_STDIN, data[start:start + SEND_CHUNK]))
            self.bytes_out += min(SEND_CHUNK, len(data) - start)

    def read(self, timeout: float) -> list[tuple[str, bytes]]:
        """Wait up to timeout for output; [(STDOUT|STDERR|STATUS, bytes), ...] ([] on timeout).

        Raises EciStreamClosed once the server closed the stream normally (and nothing is left to
        return), EciStreamError (StreamDropped) when the connection was lost.
        """
        if self._pending_loss is not None:
            raise self._pending_loss
        if self._ended:
            raise EciStreamClosed(self.status)
        self._check_open()
        events: list[tuple[str, bytes]] = []
        wait = max(0.0, timeout)
        while True:
            try:
                frame = self._ws.recv(timeout=wait)
            except TimeoutError:
                return events
            except ConnectionClosedOK:
                # A normal close: what arrived before it is complete; the next read reports the end.
                self._ended = True
                self._drop()
                if events:
                    return events
                raise EciStreamClosed(self.status) from None
            except ConnectionClosed as exc:
                self._pending_loss = self._lost(exc)
                self._drop()
                if events:
                    # Hand over what arrived; the next read reports the loss.
                    return events
                raise self._pending_loss from None
            wait = 0.0  # pick up what is already queued, then return
            if isinstance(frame, str):
                self._log(f'ignored a text message of {len(frame)} characters from {self.host}')
                continue
            try:
                channel, payload = decode_frame(frame)
            except ValueError:
                continue
            self.frames_in += 1
            stream = _STREAMS.get(channel)
            if stream is None:
                self._log(f'ignored a message on channel {channel}')
                continue
            if not payload:
                continue  # the "ready" message a kubelet sends first (an empty stdout write), or any empty write
            if stream == STATUS:
                self.status = parse_status(payload)
            else:
                self.bytes_in += len(payload)
            events.append((stream, payload))
            if len(events) >= 256:
                return events

    _pending_loss: EciStreamError | None = None

    def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:  # pylint: disable=broad-exception-caught
                pass  # a broken socket may fail to close in many ways; it is gone either way

    def close(self) -> None:
        """Close the websocket (idempotent). The command is not ended by it: its stdin reaches end of file."""
        self._drop()

    def __enter__(self) -> EciExecStream:
        if not self._opened:
            self.open()
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EciTarget:
    """A container of a Running container group."""

    group_id: str
    group_name: str
    region: str
    container_name: str
    containers: tuple[str, ...] = field(default=())


def _require_models() -> None:
    alicloud.require_tea()
    if eci_models is None:
        raise CloudExecError('alibabacloud-eci20180808 is required on the controller', code='MissingDependency',
                             provider='cloudexec', remedy='pip install alibabacloud-eci20180808')


def api_poller(what: str, timeout: float = 60.0) -> Poller:
    """The retries of an ECI API call (throttling, 5xx), for the module, the connection and the inventory alike."""
    return Poller(timeout, policy=ECI_API, what=what)


def describe_groups(client: t.Any, auth: alicloud.AlicloudAuth, *, group_id: str | None = None,
                    group_name: str | None = None) -> list[dict[str, t.Any]]:
    """The container groups with this id or name (every page), as plain dicts."""
    _require_models()
    groups: list[dict[str, t.Any]] = []
    token: str | None = None
    while True:
        request = eci_models.DescribeContainerGroupsRequest(region_id=auth.alicloud_region, limit=DESCRIBE_LIMIT)
        if group_id:
            request.container_group_ids = json.dumps([group_id])
        if group_name:
            request.container_group_name = group_name
        if token:
            request.next_token = token
        body = api_poller('DescribeContainerGroups').call(
            lambda req=request: alicloud.call(client, 'describe_container_groups', req, auth))
        data = body.to_map() if hasattr(body, 'to_map') else dict(body or {})
        groups.extend(data.get('ContainerGroups') or [])
        token = data.get('NextToken') or None
        if not token:
            return groups


def _pointed(remedy: str | None) -> str:
    """A check's remedy, pointing to the preflight module that lists every check."""
    return f'{(remedy or "").rstrip(".")}; run {exec_checks.ALI_EXEC_CHECK} (service eci) for every check'


def resolve_target(client: t.Any, auth: alicloud.AlicloudAuth, *, group_id: str | None = None, group_name: str | None = None,
                   container_name: str | None = None) -> EciTarget:
    """The container an exec would reach, refusing what ExecContainerCommand would refuse, with a remedy."""
    if bool(group_id) == bool(group_name):
        raise ValidationError('container_group_id', 'give exactly one of container_group_id and container_group_name')
    groups = describe_groups(client, auth, group_id=group_id, group_name=group_name)
    if group_id:
        groups = [g for g in groups if g.get('ContainerGroupId') == group_id]
    else:
        groups = [g for g in groups if g.get('ContainerGroupName') == group_name]
    ref = group_id or group_name
    if not groups:
        raise CloudExecError(f'No container group {ref} in region {auth.alicloud_region}', code='ContainerGroupNotFound',
                             provider=PROVIDER, retryable=False,
                             remedy='Check the id or name and alicloud_region; deleted groups disappear from ECI')
    if len(groups) > 1:
        ids = ', '.join(str(g.get('ContainerGroupId')) for g in groups)
        raise ValidationError('container_group_name', f'{len(groups)} container groups are named {group_name!r} ({ids})',
                              remedy='Use container_group_id to pick one')
    group = groups[0]
    gid = str(group.get('ContainerGroupId'))
    check = exec_checks.eci_group_running(group)
    if check.failed:
        raise CloudExecError(check.detail, code=check.code, provider=PROVIDER, retryable=False, remedy=_pointed(check.remedy))
    containers = group.get('Containers') or []
    names = [str(c.get('Name')) for c in containers]
    chosen, check = exec_checks.choose_container(containers, container_name, f'container group {gid}', key='Name')
    if chosen is None:
        raise ValidationError('container_name', check.detail)
    check = exec_checks.eci_container_running(group, chosen)
    if check.failed:
        raise CloudExecError(check.detail, code=check.code, provider=PROVIDER, retryable=False, remedy=_pointed(check.remedy))
    return EciTarget(group_id=gid, group_name=str(group.get('ContainerGroupName') or ''), region=str(auth.alicloud_region),
                     container_name=str(chosen.get('Name')), containers=tuple(names))


# ---------------------------------------------------------------------------------------------
# ExecContainerCommand
# ---------------------------------------------------------------------------------------------
_STREAM_REMEDY = 'Use mode=stream (or auto), where the command travels over stdin and has no such limit'


def item_size(text: str) -> int:
    """An argv item's size by the strictest reading of the API's "256 characters": its UTF-8 bytes.

    The API reference does not say how it counts; bytes are never fewer than characters or UTF-16 units,
    so an item that fits here fits whatever the service counts.
    """
    return len(text.encode('utf-8', 'surrogateescape'))


def _size_text(text: str) -> str:
    size = item_size(text)
    return f'{size} characters' if size == len(text) else f'{size} bytes in UTF-8 ({len(text)} characters)'


def check_sync_limits(command: str | t.Sequence[str], *, chdir: str | None = None, creates: str | None = None,
                      removes: str | None = None) -> None:
    """Refuse, before any call, what Sync mode cannot carry (ExecContainerCommand: 20 items of 256 characters).

    The wrapper that reports the exit code takes SYNC_PREFIX_ITEMS of the 20 items; chdir, creates,
    removes and a command string each take one item, so each is limited to 256 (counted as UTF-8 bytes).
    """
    room = MAX_COMMAND_ITEMS - SYNC_PREFIX_ITEMS
    limit = MAX_COMMAND_ITEM_LENGTH
    if isinstance(command, str):
        if item_size(command) > limit:
            raise ValidationError('command', f'the command has {_size_text(command)}; Sync mode carries it as one '
                                             f'ExecContainerCommand item, which holds at most {limit}', remedy=_STREAM_REMEDY)
    else:
        if len(command) > room:
            raise ValidationError('command', f'{len(command)} arguments is more than the {room} that Sync mode allows '
                                             f'(ExecContainerCommand takes at most {MAX_COMMAND_ITEMS} items and the wrapper '
                                             f'that reports the exit code uses {SYNC_PREFIX_ITEMS})', remedy=_STREAM_REMEDY)
        for pos, arg in enumerate(command):
            if item_size(str(arg)) > limit:
                raise ValidationError('command', f'argument {pos} has {_size_text(str(arg))}, more than the {limit} '
                                                 'that ExecContainerCommand allows per item', remedy=_STREAM_REMEDY)
    for name, value in (('chdir', chdir), ('creates', creates), ('removes', removes)):
        if value and item_size(value) > limit:
            raise ValidationError(name, f'{_size_text(value)} is more than the {limit} that one ExecContainerCommand '
                                        'item holds in Sync mode', remedy=_STREAM_REMEDY)


def sync_argv(command: str | t.Sequence[str], nonce: str, *, chdir: str | None = None, creates: str | None = None,
              removes: str | None = None) -> list[str]:
    """The Command of a Sync call: the framing wrapper, its parameters, then the user's argv."""
    user = ['/bin/sh', '-c', command] if isinstance(command, str) else [str(arg) for arg in command]
    return ['/bin/sh', '-c', SYNC_SCRIPT, 'sh', nonce, chdir or '', creates or '', removes or ''] + user


def stream_argv(nonce: str) -> list[str]:
    """The Command of a stream call: a shell reading the script from stdin; the nonce in its argv names its processes."""
    return ['/bin/sh', '-s', nonce]


def sync_fits(command: str | t.Sequence[str], *, chdir: str | None = None, creates: str | None = None, removes: str | None = None) -> bool:
    """Whether the command can go through Sync mode at all (its argv within the API limits)."""
    try:
        check_sync_limits(command, chdir=chdir, creates=creates, removes=removes)
    except ValidationError:
        return False
    return True


def sync_read_timeout(timeout: float) -> int:
    """The HTTP read timeout of a Sync call: the command's timeout plus a margin for the network."""
    return int(timeout + min(SYNC_READ_MARGIN, max(SYNC_READ_MARGIN_MIN, timeout // 4)))


def _exec_request(target: EciTarget, argv: t.Sequence[str], *, sync: bool, tty: bool = False, stdin: bool = True) -> t.Any:
    _require_models()
    return eci_models.ExecContainerCommandRequest(region_id=target.region, container_group_id=target.group_id,
                                                  container_name=target.container_name, command=json.dumps(list(argv)),
                                                  sync=sync, tty=tty, stdin=stdin)


def exec_container_command(client: t.Any, auth: alicloud.AlicloudAuth, target: EciTarget, argv: t.Sequence[str], *,
                           sync: bool, tty: bool = False, stdin: bool = True, read_timeout: int | None = None,
                           retry_timeout: float = 60.0) -> dict[str, t.Any]:
    """Call ExecContainerCommand and return the answer as a dict (which holds the secret WebSocketUri).

    Throttling is retried through the Poller. In Sync mode nothing else is: a server error or a read
    timeout may come after the command ran, so it is reported, not repeated.
    """
    request = _exec_request(target, argv, sync=sync, tty=tty, stdin=stdin)

    def attempt() -> t.Any:
        try:
            return alicloud.call(client, 'exec_container_command', request, auth, read_timeout=read_timeout)
        except CloudExecError as error:
            if sync and error.code not in THROTTLING_CODES:
                error.retryable = False
            if sync and error.code == 'Connection.ReadTimeout':
                error.message = (f'ExecContainerCommand (Sync) gave no answer within {read_timeout} seconds; '
                                 'the command may still be running in the container')
                error.remedy = 'Raise timeout, or use mode=stream for long commands; check the command\'s effects before repeating it'
            elif sync and error.code == 'Connection.Error':
                # Lost after the request went out: the command may have started.
                error.remedy = 'The command may have run: check its effects before repeating it'
            raise

    body = api_poller(f'ExecContainerCommand on {target.group_id}/{target.container_name}', retry_timeout).call(attempt)
    return body.to_map() if hasattr(body, 'to_map') else dict(body or {})


@dataclass
class ExecRun:
    """What one exec gave: the framed result, how it travelled, and what the user should know about it."""

    result: remote_shell.CommandResult
    mode: str
    warnings: list[str] = field(default_factory=list)


def _raw(text: str | None) -> str | None:
    """UTF-8 text as latin-1 code points, so the script (sent as latin-1) carries its exact UTF-8 bytes."""
    return None if text is None else text.encode('utf-8').decode('latin-1')


# ---------------------------------------------------------------------------------------------
# Ending a command that overran its deadline
# ---------------------------------------------------------------------------------------------
def end_command(client: t.Any, auth: alicloud.AlicloudAuth, target: EciTarget, nonce: str, *,
                log: t.Callable[[str], None] | None = None, clock: t.Callable[[], float] = time.monotonic,
                connect: t.Callable[..., t.Any] | None = None, timeout: float = KILL_TIMEOUT) -> tuple[str, bool]:
    """End, from a second exec stream, the processes of the exec whose argv holds nonce; (what happened, worrying).

    Closing an exec stream (or giving up on a Sync answer) leaves the command running, as a kubelet and
    containerd do: the container must end it. The script travels on stdin, so it has no argv limit.
    worrying means the command may still run.
    """
    kill_nonce = remote_shell.new_nonce()
    script = remote_shell.find_by_nonce_script(nonce) + remote_shell.kill_tree_script('"$__ce_r"', '"$__ce_rt"', grace=KILL_GRACE, nonce=kill_nonce)
    deadline = clock() + timeout
    output = bytearray()
    try:
        answer = exec_container_command(client, auth, target, ['/bin/sh'], sync=False, stdin=True, tty=False,
                                        retry_timeout=timeout / 2)
        uri = answer.get('WebSocketUri')
        if not uri:
            raise CloudExecError('ExecContainerCommand returned no WebSocketUri', code='NoWebSocketUri', provider=PROVIDER)
        with EciExecStream(uri, connect_timeout=max(1.0, min(30.0, deadline - clock())), log=log, connect=connect) as stream:
            stream.send(script.encode('ascii') + b'exit\n')
            while remote_shell.parse_kill_outcome(bytes(output), kill_nonce) is None and clock() < deadline:
                try:
                    events = stream.read(min(1.0, max(0.0, deadline - clock())))
                except (EciStreamClosed, EciStreamError):
                    break
                output.extend(b''.join(data for name, data in events if name == STDOUT))
    except CloudExecError as exc:
        return f'it may still be running: no exec could be opened to end it ({exc.code}: {exc.message})', True
    return remote_shell.describe_kill_outcome(remote_shell.parse_kill_outcome(bytes(output), kill_nonce))


def _overran(where: str, timeout: float, what: str, clause: str, worrying: bool) -> DeadlineExceeded:
    remedy = 'Raise timeout, or run long jobs in the background (nohup) and poll for them'
    if worrying:
        remedy = 'Check the container for the command\'s processes and effects before running it again; ' + remedy[0].lower() + remedy[1:]
    return DeadlineExceeded(f'The command in {where} did not finish within {timeout:g} seconds ({what}); {clause}', remedy=remedy)


# ---------------------------------------------------------------------------------------------
# Running a command
# ---------------------------------------------------------------------------------------------
def run_sync(client: t.Any, auth: alicloud.AlicloudAuth, target: EciTarget, command: str | t.Sequence[str], *,
             chdir: str | None = None, creates: str | None = None, removes: str | None = None, timeout: int = 600,
             log: t.Callable[[str], None] | None = None, clock: t.Callable[[], float] = time.monotonic) -> ExecRun:
    """Run through Sync: exit code and stderr come from our wrapper; output is text (SyncResponse is a string)."""
    check_sync_limits(command, chdir=chdir, creates=creates, removes=removes)
    nonce = remote_shell.new_nonce()
    argv = sync_argv(command, nonce, chdir=chdir, creates=creates, removes=removes)
    where = f'{target.group_id}/{target.container_name}'
    # The call blocks until the command ends: the read timeout is the command timeout plus a margin
    # (the SDK's default of 10 s would cut off any longer command).
    read_timeout = sync_read_timeout(timeout)
    started = clock()
    try:
        answer = exec_container_command(client, auth, target, argv, sync=True, stdin=False, read_timeout=read_timeout)
    except CloudExecError as exc:
        # A read timeout (some SDK errors name it, others are a bare connection error: the elapsed time tells).
        read_timed_out = exc.code == 'Connection.ReadTimeout' or (
            exc.code == 'Connection.Error' and clock() - started >= read_timeout - 1)
        if not read_timed_out:
            raise
        # Our read timeout passed; the service does not end the command for that: the container must.
        clause, worrying = end_command(client, auth, target, nonce, log=log, clock=clock)
        raise _overran(where, timeout, f'ExecContainerCommand in Sync mode gave no answer within {read_timeout} seconds',
                       clause, worrying) from None
    output = str(answer.get('SyncResponse') or '')
    parser = remote_shell.OutputParser(nonce)
    result = parser.feed(output.encode('utf-8', errors='surrogateescape'))
    if result is None:
        shown = ' '.join(output.split())[:300]
        raise CloudExecError(f'The Sync answer from {where} has no exit status' + (f': {shown}' if shown else ''),
                             code='NoExitStatus', provider=PROVIDER, retryable=False,
                             remedy='Check that /bin/sh exists in the container; use mode=stream for more detail')
    warnings = []
    if '\ufffd' in output:
        warnings.append('The output held bytes that are not UTF-8 text: Sync mode carries text only, so they were replaced '
                        '(U+FFFD). Use mode=stream for exact bytes.')
    return ExecRun(result=result, mode=MODE_SYNC, warnings=warnings)


def run_stream(client: t.Any, auth: alicloud.AlicloudAuth, target: EciTarget, command: str | t.Sequence[str], *,
               chdir: str | None = None, creates: str | None = None, removes: str | None = None, stdin: bytes | None = None,
               timeout: float = 600, log: t.Callable[[str], None] | None = None, clock: t.Callable[[], float] = time.monotonic,
               connect: t.Callable[..., t.Any] | None = None) -> ExecRun:
    """Run over the exec websocket: /bin/sh reads the remote_shell script from stdin; bytes and rc are exact.

    Only our markers say when and how the command ended: the status channel may carry JSON, plain text or
    nothing at all, and only explains a stream that ended early. At the deadline the command is ended from
    a second exec (closing the stream would leave it running).
    """
    deadline = clock() + timeout
    nonce = remote_shell.new_nonce()
    if isinstance(command, str):
        wrapped: str | list[str] = t.cast(str, _raw(command))
    else:
        wrapped = [t.cast(str, _raw(str(arg))) for arg in command]
    script = remote_shell.wrap(wrapped, nonce, chdir=_raw(chdir), creates=_raw(creates), removes=_raw(removes), stdin=stdin)
    answer = exec_container_command(client, auth, target, stream_argv(nonce), sync=False, stdin=True, tty=False,
                                    retry_timeout=min(timeout, 60))
    uri = answer.get('WebSocketUri')
    if not uri:
        raise CloudExecError('ExecContainerCommand returned no WebSocketUri', code='NoWebSocketUri', provider=PROVIDER,
                             retryable=False, remedy='Retry; if it persists, check the ECI service health')
    parser = remote_shell.OutputParser(nonce)
    shell_errors = bytearray()
    where = f'{target.group_id}/{target.container_name}'
    with EciExecStream(uri, connect_timeout=max(1.0, min(30.0, deadline - clock())), log=log, connect=connect) as stream:

        def read(seconds: float) -> bytes:
            out = bytearray()
            for name, data in stream.read(seconds):
                if name == STDOUT:
                    out += data
                elif name == STDERR:
                    # The command's stderr travels in the framed stdout; this is the shell's own (wrapper failures).
                    shell_errors.extend(data[:4096])
            return bytes(out)

        # `exit` ends the shell after the wrapper; the wrapper is a subshell, so nothing it does can skip it.
        stream.send(script.encode('latin-1') + b'exit\n')
        try:
            overran = remote_shell.read_result(read, parser, deadline=deadline, clock=clock) is None
        except EciStreamClosed as exc:
            raise _ended_early(where, exc.status, shell_errors, parser.started) from None
        if not overran:
            # Let the service finish (status and close) briefly; the result is already complete.
            grace = min(END_GRACE, max(0.0, deadline - clock()))
            end = clock() + grace
            try:
                while clock() < end:
                    stream.read(end - clock())
            except (EciStreamClosed, EciStreamError):
                pass
    if overran:
        clause, worrying = end_command(client, auth, target, nonce, log=log, clock=clock, connect=connect)
        raise _overran(where, timeout, 'it had started' if parser.started else 'it may not have started', clause, worrying)
    return ExecRun(result=t.cast(remote_shell.CommandResult, parser.result), mode=MODE_STREAM)


def _ended_early(where: str, status: ExecStatus | None, shell_errors: bytearray, started: bool) -> CloudExecError:
    """The stream closed before our end marker: the service's own words (status, shell stderr) go to the user."""
    detail = f': {status.message}' if status is not None and status.message else ''
    shown = ' '.join(shell_errors.decode('utf-8', errors='replace').split())[:300]
    return CloudExecError(f'The exec stream to {where} ended before the command reported its exit code{detail}'
                          + (f' (shell said: {shown})' if shown else ''), code='StreamClosedEarly', provider=PROVIDER,
                          retryable=False,
                          remedy=('The command ran at least in part: check its effects before running it again'
                                  if started else 'Check that /bin/sh exists in the container'))


def choose_mode(mode: str, command: str | t.Sequence[str], *, stdin: bytes | None = None, chdir: str | None = None,
                creates: str | None = None, removes: str | None = None, timeout: float = 600) -> str:
    """auto: Sync only when it surely gives the same answer, the stream otherwise.

    Sync needs: no stdin; the argv within the API limits, sizes counted as UTF-8 bytes (the strictest reading,
    so the service never refuses what was chosen here); and a timeout of SYNC_AUTO_MIN_TIMEOUT or more, since
    Sync sees the deadline only through its read timeout and its margin. Whether the output is text cannot be
    known before it runs: a Sync answer that lost bytes says so in a warning.
    """
    if mode != MODE_AUTO:
        return mode
    if stdin is None and timeout >= SYNC_AUTO_MIN_TIMEOUT and sync_fits(command, chdir=chdir, creates=creates, removes=removes):
        return MODE_SYNC
    return MODE_STREAM
