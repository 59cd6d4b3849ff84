# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Open the long-lived shell of the aws_ssm connection: StartSession on a managed node, the data channel, a typed bootstrap.

A Standard_Stream session (SSM-SessionManagerRunShell, the default) takes no command: the agent starts an
interactive `sh` on a terminal with echo on, types the account's shell profile into it, and the shell prints its
prompt (amazon-ssm-agent shell.go executeCommandsWithPty, shell_unix.go runShellProfile). So the bootstrap that ECS
Exec gets as its command is typed here as one line, once the shell has shown that it started (its first output:
the agent types the profile before it first reads the terminal, so the profile is always ahead of our line in the
terminal's input). Everything the terminal prints before the bootstrap's READY marker is dropped: the profile's
echo and output (a banner), the prompt, the echo of our own line, bracketed-paste switches, CR/LF. The READY marker
carries a fresh nonce that the typed line does not contain as such: the line holds `printf '...@@CE%s:READY...' NONCE`,
the format and the nonce apart, so only printf's output joins them (persistent_shell.bootstrap_command).

Checked with sh = dash and sh = bash (tests/unit/plugins/plugin_utils/test_aws_ssm_shell.py types the line into
each, interactive on a real terminal as the agent starts them): dash (Debian's, no line editing) lets the terminal
echo the line as typed, CR LF after it, then the prompt is not printed again because the line execs; bash with
readline echoes it itself, wrapped in the bracketed-paste switches (ESC [?2004h before the prompt, ESC [?2004l
after the line) and, on a narrow terminal, redrawn with carriage returns - in both, nothing in the echo matches
the marker, and after `stty raw -echo` and the exec of `sh -s` (not interactive: its stderr is /dev/null) nothing
more is printed but the framed output of our commands. A profile that starts another shell (`bash`, `sudo su -
ec2-user`) receives the typed line in that shell, which works the same way.
"""

from __future__ import annotations

import dataclasses
import time
import typing as t

from ansible_collections.cloudexec.core.plugins.module_utils import aws, remote_shell, ssm_sessions
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, DeadlineExceeded, SessionClosed
from ansible_collections.cloudexec.core.plugins.module_utils.ssm.session import DataChannelConnectFailed, DataChannelSession, SessionDropped
from ansible_collections.cloudexec.core.plugins.plugin_utils.persistent_shell import PersistentShell, bootstrap_command, module_cache_for

# amazon.aws's aws_ssm connection defaults its region option to us-east-1; an inventory written for it may rely on that.
DEFAULT_REGION = 'us-east-1'
# How long to wait for the shell's first output (prompt, profile) before typing the bootstrap anyway: the agent's
# output pump first reads the terminal 1 s after the shell starts (shell.go writePump).
FIRST_OUTPUT_WAIT = 15.0
# TerminateSession when a session is given up: short timeouts, it is best effort (connect, read seconds).
TERMINATE_TIMEOUTS = (5.0, 10.0)


def typed_bootstrap(nonce: str, shell: str = '/bin/sh') -> bytes:
    """The one line typed into the session's interactive shell: go home (as ssh starts there; the agent starts the shell
    in its own working directory), then the common bootstrap (raw terminal, READY marker, exec of a non-interactive
    `sh -s`)."""
    return ('cd 2>/dev/null; ' + bootstrap_command(nonce, shell) + '\n').encode()


class NodeChannel:
    """The data channel of a StartSession session as the ByteChannel of a PersistentShell.

    Closing it ends the session on the service too when the agent has not ended it: the agent is never told that a
    websocket went away, so a session left behind would hold its place until Session Manager's idle timeout
    (20 minutes by default). A shell that exits ends its session by itself, and then nothing more is called.
    """

    def __init__(self, session: DataChannelSession, terminate: t.Callable[[], None]) -> None:
        self.session = session
        self._terminate = terminate

    def send(self, data: bytes) -> None:
        """Type bytes into the session's terminal."""
        self.session.send(data)

    def read(self, timeout: float) -> bytes:
        """What the terminal printed within timeout (b'' when nothing); SessionClosed once the agent ended the session."""
        return self.session.read(timeout)

    @property
    def max_send(self) -> int:
        """The most bytes one send() may carry (the channel's outgoing buffer)."""
        return self.session.max_send

    @property
    def stats(self) -> t.Any:
        """The channel's counters (PersistentShell reads acknowledgements and frames from them)."""
        return self.session.stats

    def close(self) -> None:
        """Close the websocket, then TerminateSession unless the agent ended the session itself."""
        ended = self.session.state == 'ended'
        self.session.close()
        if not ended:
            self._terminate()


def _wait_first_output(channel: NodeChannel, timeout: float, log: t.Callable[[str], None]) -> None:
    """Read until the session's shell prints something (its profile's echo, its prompt), at most timeout seconds."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        data = channel.read(min(remaining, 0.5))
        if data:
            log(f'the session shell started ({len(data)} bytes of prompt and profile output dropped)')
            return
    log(f'the session shell printed nothing within {timeout:g} seconds; typing the bootstrap anyway')


def _terminator(auth: aws.AwsAuth, session_id: str, log: t.Callable[[str], None]) -> t.Callable[[], None]:
    def terminate() -> None:
        try:
            client = aws.aws_client(auth, 'ssm', max_attempts=2, timeouts=TERMINATE_TIMEOUTS)
            ssm_sessions.terminate_session(client, session_id)
            log(f'session {session_id} terminated')
        except CloudExecError as exc:
            log(f'TerminateSession for {session_id} failed ({exc.code}); the service ends it after its idle timeout')
    return terminate


def _explain(exc: CloudExecError, node_id: str, document: str | None, shell: str) -> CloudExecError:
    """A failure before READY, with what to do about it."""
    what = f'the session document {document}' if document else 'the shell session (SSM-SessionManagerRunShell)'
    if isinstance(exc, SessionClosed):
        if 'RunAs' in exc.message:
            exc.remedy = ('Create that user on the node, or change the Run As user: the runAsDefaultUser of the session '
                          'preferences (or of ssm_document), or the SSMSessionRunAs tag of the IAM principal, which takes precedence')
        else:
            exc.remedy = (f'The agent on {node_id} ended {what} before its shell ran the bootstrap: check that the document is a '
                          f'Standard_Stream session document, that {shell} exists on the node, and the shell profile of the '
                          'session preferences (it runs first)')
    elif isinstance(exc, DeadlineExceeded):
        exc.remedy = (f'The shell of {what} did not run the bootstrap: the node must run a POSIX shell (Linux or macOS; Windows '
                      f'nodes are not supported), {shell} must exist there, the document must be a Standard_Stream session '
                      'document, and the shell profile must not wait for input; raise connect_timeout if the profile is slow')
    return exc


def _retryable(exc: CloudExecError) -> bool:
    """Opening failed on the way (the network, the websocket, a throttled call): another attempt may work, and nothing ran."""
    if isinstance(exc, (DataChannelConnectFailed, SessionDropped)):
        return True
    return exc.code == 'ConnectionError' or bool(exc.retryable)


def open_shell(options: dict[str, t.Any], log: t.Callable[[str], None]) -> PersistentShell:
    """Start one session on the managed node, type the bootstrap into its shell, and wait until it is ready.

    reconnection_retries more attempts are made when an attempt fails on the way (see _retryable), all within
    connect_timeout; each failed attempt's session is terminated.
    """
    node_id = ssm_sessions.check_node_id(options.get('instance_id'))
    document = ssm_sessions.check_document(options.get('ssm_document'))
    auth = aws.AwsAuth.from_options(options.get, environ={})
    if not aws.aws_session(auth).region_name:
        auth = dataclasses.replace(auth, region=DEFAULT_REGION)
        log(f'no region is set: using {DEFAULT_REGION}, as amazon.aws.aws_ssm does')
    connect_timeout = float(options.get('connect_timeout') or 60)
    retries = max(int(options.get('reconnection_retries') or 0), 0)
    client = aws.aws_client(auth, 'ssm')
    deadline = time.monotonic() + connect_timeout
    attempt = 0
    while True:
        try:
            return _open_once(auth, client, node_id, document, options, deadline, log)
        except CloudExecError as exc:
            attempt += 1
            if attempt > retries or not _retryable(exc) or deadline - time.monotonic() < 1:
                raise
            log(f'opening a session on {node_id} failed ({exc.code}); attempt {attempt + 1} of {retries + 1}')


def _open_once(auth: aws.AwsAuth, client: t.Any, node_id: str, document: str | None, options: dict[str, t.Any],
               deadline: float, log: t.Callable[[str], None]) -> PersistentShell:
    shell = options.get('shell') or '/bin/sh'
    started = ssm_sessions.start_session(client, node_id, document)
    log(f'session {started.session_id} started on {node_id}' + (f' with document {document}' if document else ''))
    terminate = _terminator(auth, started.session_id, log)
    remaining = max(deadline - time.monotonic(), 1.0)
    try:
        session = DataChannelSession(started.stream_url, started.token, session_id=started.session_id, target_id=node_id,
                                     connect_timeout=remaining, log=log, generate_data_key=aws.kms_data_key_provider(auth),
                                     resume_session=aws.ssm_session_resumer(auth, ssm_endpoint=True))
    except CloudExecError:
        terminate()
        raise
    channel = NodeChannel(session, terminate)
    nonce = remote_shell.new_nonce()
    persistent = PersistentShell(channel, nonce, where=node_id, module_cache=module_cache_for(options))
    try:
        session.open()
        _wait_first_output(channel, min(max(deadline - time.monotonic(), 0.5), FIRST_OUTPUT_WAIT), log)
        channel.send(typed_bootstrap(nonce, shell))
        persistent.wait_ready(max(deadline - time.monotonic(), 1.0))
    except CloudExecError as exc:
        channel.close()
        raise _explain(exc, node_id, document, shell) from None
    except Exception:
        channel.close()
        raise
    log(f'session {started.session_id} ready on {node_id}')
    return persistent
