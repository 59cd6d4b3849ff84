# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Commands and files over Alibaba Cloud Assistant alone: the transport of the ali_assist connection.

Every command is one RunCommand (RunShellScript) on one instance, polled with one
DescribeInvocationResults call per poll through the shared Poller. The service's limits shape the rest:

- The script may be at most 24 KB after Base64. Larger stdin (a pipelined module) or file content is
  staged first: it is cut into pieces that each fit one RunCommand (text as a quoted here-document,
  anything else as base64), all pieces are started at once, each writing its own part file, and the
  command that needs them waits for every part, joins them and checks their SHA-256 before going on.
- The service keeps only the last 24 KB of output. The wrapper writes the framed output to a private
  file on the instance and prints it only when it is small; otherwise it prints where the file is, its
  size and SHA-256, and the output is read back in pages that fit the cap after Base64 (all pages started
  at once), joined and verified. Ansible never sees truncated output.
- stdout and stderr arrive in one buffer: remote_shell's markers separate them and carry the exit code.

No session exists, so nothing is kept between tasks: a transport is a client plus the target.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud
from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant as ca
from ansible_collections.cloudexec.core.plugins.module_utils import remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, DeadlineExceeded
from ansible_collections.cloudexec.core.plugins.module_utils.poll import Backoff, Poller, done, pending

# Room left in a RunCommand script for our own lines around a staged piece (bytes before Base64).
SCRIPT_LIMIT = ca.CONTENT_LIMIT // 4 * 3          # 18432 bytes of script fit 24 KB of Base64
PIECE_OVERHEAD = 640
TEXT_PIECE = SCRIPT_LIMIT - PIECE_OVERHEAD        # raw bytes of a text piece (here-document)
BINARY_PIECE = (TEXT_PIECE // 77) * 57            # raw bytes of a base64 piece (76 characters + newline per 57 bytes)
# Output pages: base64 of PAGE bytes, with its newlines, stays under the 24 KB output cap.
PAGE = 18000
# Framed output up to this size is printed directly; above it, it is paged back from a file.
INLINE_OUTPUT = ca.OUTPUT_LIMIT - 1024
# How long a command waits for its staged parts (they are started just before it).
STAGE_WAIT = 120
# RunCommand calls in flight at once when staging pieces or reading pages (RunCommand is throttled per account).
PARALLEL_STARTS = 4
# Seconds the service itself may run a script beyond command_timeout before it kills it (our deadline comes first).
SERVICE_GRACE = 30

# Per-instance error codes that mean the host cannot be reached (nothing ran).
UNREACHABLE_CODES = frozenset(('InstanceNotRunning', 'ClientNotRunning', 'ClientNotResponse', 'ClientIsUpgrading',
                               'ClientNeedUpgrade', 'DeliveryTimeout', 'CommandNotApplicable', 'ClientNetworkBlocked',
                               'ClientNotOnline', 'InstanceReleased'))
UNREACHABLE_REMEDY = ('Start the instance and make sure its Cloud Assistant agent is online (DescribeCloudAssistantStatus must '
                      'say true; restart the aliyun-service agent, or install it); this connection runs shell scripts, '
                      'so the instance must be Linux; run cloudexec.core.ali_exec_check (service ecs) for every check')

_SPILL = re.compile(rb'@@CE([0-9a-f]+):SPILL:([^:\n]+):(\d+):([0-9a-f]{64}|size)@@')
_STAGE = re.compile(rb'@@CE([0-9a-f]+):STAGE:([a-z]+)@@')


class AssistError(CloudExecError):
    """A failure of the transport; `unreachable` when the host cannot run anything, `deadline` when time ran out."""

    def __init__(self, message: str, *, code: str, remedy: str | None = None, unreachable: bool = False,
                 deadline: bool = False, may_have_run: bool = False) -> None:
        super().__init__(message, code=code, provider='cloudexec', remedy=remedy, retryable=False)
        self.unreachable = unreachable
        self.deadline = deadline
        self.may_have_run = may_have_run


@dataclass
class Target:
    """Where and how commands run."""

    instance_id: str
    container_id: str | None = None
    container_name: str | None = None
    username: str | None = None
    working_dir: str | None = None
    command_timeout: int = 3600
    poll_initial: float = 0.2
    poll_max: float = 2.0

    def describe(self) -> str:
        """The target for messages."""
        container = self.container_id or self.container_name
        return f'{self.instance_id} (container {container})' if container else self.instance_id


@dataclass
class Stats:
    """What the transport did, for -vvv and the benchmark."""

    commands: int = 0
    staged_pieces: int = 0
    pages: int = 0
    polls: int = 0
    counter: ca.ApiCounter = field(default_factory=ca.ApiCounter)


# --------------------------------------------------------------------------- pure helpers (unit-tested)


def split_pieces(data: bytes) -> list[tuple[str, bytes]]:
    """data cut into (kind, bytes) pieces that each fit one RunCommand: 'text' (here-document) or 'b64'."""
    pieces: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(data):
        chunk = data[pos:pos + TEXT_PIECE]
        text = _text_prefix(chunk, at_end=pos + len(chunk) >= len(data))
        if text:
            pieces.append(('text', text))
            pos += len(text)
        else:
            chunk = data[pos:pos + BINARY_PIECE]
            pieces.append(('b64', chunk))
            pos += len(chunk)
    return pieces


def _text_prefix(chunk: bytes, at_end: bool) -> bytes:
    """The longest prefix of chunk that travels as text in a here-document (UTF-8, no NUL or CR), or b''."""
    if b'\0' in chunk or b'\r' in chunk:
        return b''
    try:
        chunk.decode('utf-8')
    except UnicodeDecodeError as exc:
        # A character cut by the chunk boundary ends the piece early; anything else is binary.
        if not at_end and exc.start >= len(chunk) - 3 and exc.start > 0:
            cut = chunk[:exc.start]
            try:
                cut.decode('utf-8')
            except UnicodeDecodeError:
                return b''
            return cut
        return b''
    return chunk


def piece_script(stage_dir: str, index: int, kind: str, data: bytes, nonce: str) -> str:
    """The RunCommand script that writes one staged piece to its own part file (renamed into place when whole)."""
    directory = shlex.quote(stage_dir)
    part = f'{stage_dir}/p{index:05d}'
    delimiter = f'@@CE{nonce}:PIECE@@'
    lines = ['umask 077', f'mkdir -p {directory} 2>/dev/null; [ -d {directory} ] && [ -O {directory} ] || exit 90']
    if kind == 'text':
        body = data.decode('utf-8')
        lines += [f"head -c {len(data)} > {shlex.quote(part + '.tmp')} <<'{delimiter}'", body + '\n' + delimiter]
    else:
        encoded = base64.encodebytes(data).decode('ascii')
        lines += [f"base64 -d > {shlex.quote(part + '.tmp')} <<'{delimiter}'", encoded + delimiter]
    lines.append(f'mv -f {shlex.quote(part + ".tmp")} {shlex.quote(part)}')
    return '\n'.join(lines) + '\n'


_SHA256 = ('if command -v sha256sum >/dev/null 2>&1; then sha256sum < {path} | cut -c1-64; '
           'elif command -v shasum >/dev/null 2>&1; then shasum -a 256 < {path} | cut -c1-64; '
           'elif command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 < {path} | sed "s/.*= *//"; '
           'else echo size; fi')


def assemble_lines(stage_dir: str, count: int, target: str, digest: str, nonce: str) -> list[str]:
    """sh lines that wait for `count` parts, join them into target and check their SHA-256 (or report STAGE:<why>)."""
    directory = shlex.quote(stage_dir)
    parts = ' '.join(shlex.quote(f'{stage_dir}/p{i:05d}') for i in range(count))
    fail = f"printf '\\n@@CE{nonce}:STAGE:%s@@\\n'"
    return [
        '__ce_w=0',
        f'while :; do __ce_m=0; for __ce_p in {parts}; do [ -f "$__ce_p" ] || __ce_m=1; done',
        f'  [ "$__ce_m" = 0 ] && break; __ce_w=$((__ce_w + 1)); [ "$__ce_w" -gt {STAGE_WAIT * 5} ] && {{ {fail} missing; exit 0; }}',
        '  sleep 0.2 2>/dev/null || sleep 1; done',
        f'( umask 077; cat {parts} > {shlex.quote(target)} ) || {{ {fail} write; rm -rf {directory}; exit 0; }}',
        f'rm -rf {directory}',
        f'__ce_s=$({_SHA256.format(path=shlex.quote(target))})',
        f'[ "$__ce_s" = size ] || [ "$__ce_s" = {digest} ] || {{ {fail} checksum; rm -f {shlex.quote(target)}; exit 0; }}',
    ]


def spill_wrapper(inner: str, nonce: str) -> list[str]:
    """sh lines that run `inner` with its output in a private file, printed when small, else announced for paging."""
    return [
        '__ce_run() {',
        inner.rstrip('\n'),
        '}',
        '__ce_o=$( (umask 077; mktemp "${TMPDIR:-/tmp}/.cloudexec-out.XXXXXXXX") 2>/dev/null) || __ce_o=""',
        'if [ -z "$__ce_o" ]; then __ce_run; exit 0; fi',
        '__ce_run > "$__ce_o" 2>&1',
        '__ce_n=$(wc -c < "$__ce_o" | tr -d " ")',
        f'if [ "$__ce_n" -le {INLINE_OUTPUT} ]; then cat "$__ce_o"; rm -f "$__ce_o"',
        f'else printf \'\\n@@CE{nonce}:SPILL:%s:%s:%s@@\\n\' "$__ce_o" "$__ce_n" "$({_SHA256.format(path=chr(34) + "$__ce_o" + chr(34))})"; fi',
    ]


def page_script(path: str, index: int) -> str:
    """The script printing page `index` of a file as base64 (fits the output cap)."""
    return f'dd if={shlex.quote(path)} bs={PAGE} skip={index} count=1 2>/dev/null | base64\n'


def parse_spill(output: bytes, nonce: str) -> tuple[str, int, str] | None:
    """(path, size, sha256) when the output announces a spilled file, else None."""
    for match in _SPILL.finditer(output):
        if match.group(1).decode() == nonce:
            return match.group(2).decode('utf-8', 'replace'), int(match.group(3)), match.group(4).decode()
    return None


def parse_stage_failure(output: bytes, nonce: str) -> str | None:
    """Why staging failed ('missing', 'write', 'checksum'), or None."""
    for match in _STAGE.finditer(output):
        if match.group(1).decode() == nonce:
            return match.group(2).decode()
    return None


# --------------------------------------------------------------------------- the transport


class AssistTransport:
    """Runs commands and moves files on one instance (or container) through Cloud Assistant."""

    def __init__(self, client: t.Any, auth: alicloud.AlicloudAuth, target: Target, *, log: t.Callable[[str], None] | None = None,
                 poller_factory: t.Callable[..., Poller] = Poller, stats: Stats | None = None) -> None:
        self.client = client
        self.auth = auth
        self.target = target
        self.log = log or (lambda msg: None)
        self.poller_factory = poller_factory
        self.stats = stats or Stats()

    # ---- one invocation

    def start(self, script: str, timeout: int | None = None, working_dir: str | None = None) -> str:
        """RunCommand the script on the target; returns the invoke id."""
        ca.require_models()
        target = self.target
        spec = ca.RunSpec(content=script, timeout=int(timeout or target.command_timeout) + SERVICE_GRACE, username=target.username,
                          working_dir=working_dir, container_id=target.container_id, container_name=target.container_name)
        spec.timeout = min(spec.timeout, ca.TIMEOUT_RANGE[1])
        fields = spec.run_command_fields(self.auth.alicloud_region, [target.instance_id], ca.new_client_token())
        body = ca.retried_call(self.client, self.auth, 'run_command', ca.ecs_models.RunCommandRequest(**fields),
                               self.stats.counter, self.poller_factory)
        self.stats.commands += 1
        return str(body.invoke_id)

    def start_many(self, scripts: list[str], timeout: int) -> list[str]:
        """Start independent scripts, up to PARALLEL_STARTS calls in flight; their invoke ids in order."""
        if len(scripts) < 2:
            return [self.start(script, timeout) for script in scripts]
        with ThreadPoolExecutor(max_workers=min(PARALLEL_STARTS, len(scripts))) as pool:
            return list(pool.map(lambda script: self.start(script, timeout), scripts))

    def wait(self, invoke_id: str, timeout: float | None = None) -> tuple[ca.InstanceResult, bytes]:
        """Poll one invocation (one DescribeInvocationResults per poll) until it is over; (result, raw output).

        The deadline stops the invocation (StopInvocation) and raises AssistError.
        """
        deadline = float(timeout or self.target.command_timeout)
        backoff = Backoff(initial=self.target.poll_initial, factor=1.6, cap=max(self.target.poll_max, self.target.poll_initial),
                          jitter=0.2)
        poller = self.poller_factory(deadline, backoff=backoff, what=f'the command on {self.target.describe()}')
        first = [True]

        def probe() -> t.Any:
            if first[0]:
                # The agent needs a moment to pick the task up: the first check comes after the first (short) delay.
                first[0] = False
                return pending()
            self.stats.polls += 1
            request = ca.ecs_models.DescribeInvocationResultsRequest(region_id=self.auth.alicloud_region, invoke_id=invoke_id,
                                                                     instance_id=self.target.instance_id, content_encoding='Base64')
            body = ca.api_call(self.client, self.auth, 'describe_invocation_results', request, self.stats.counter)
            page = body.invocation
            items = (page.invocation_results.invocation_result if page and page.invocation_results else None) or []
            if not items:
                return pending()
            result = ca.InstanceResult.from_sdk(items[0])
            if not result.finished:
                return pending(result)
            # The exact bytes: InstanceResult's text replaced what is not UTF-8.
            return done((result, base64.b64decode(items[0].output or '')))

        try:
            return poller.wait(probe)
        except DeadlineExceeded:
            problem = ca.stop(self.client, self.auth, invoke_id, self.stats.counter, self.poller_factory)
            stopped = f'invocation {invoke_id} was stopped with StopInvocation' if problem is None else \
                f'stopping invocation {invoke_id} failed ({problem}); it may still run'
            raise AssistError(f'The command did not finish within command_timeout ({deadline:g} s) on {self.target.describe()}; '
                              f'{stopped}', code='CommandTimeout', deadline=True, may_have_run=True,
                              remedy='Raise command_timeout (ansible_ali_assist_command_timeout) for long commands, '
                                     'or run them with async') from None

    def run_script(self, script: str, timeout: int | None = None, working_dir: str | None = None) -> tuple[ca.InstanceResult, bytes]:
        """Run a script and wait for it; (result, raw output). Raises AssistError unless the script itself ran."""
        invoke_id = self.start(script, timeout, working_dir)
        result, raw = self.wait(invoke_id, timeout)
        return result, self.check(result, raw)

    def check(self, result: ca.InstanceResult, raw: bytes) -> bytes:
        """The raw output of a finished invocation whose script ran (exit code any); else a clear AssistError."""
        code = result.error_code
        if result.status in ('Success', 'Failed') and code in (None, '', 'ExitCodeNonzero'):
            return raw
        where = self.target.describe()
        hint = ca.INSTANCE_ERROR_HINTS.get(code or '', '')
        detail = f'{result.status}' + (f', {code}' if code else '') + (f': {hint}' if hint else '') + \
            (f' ({result.error_info})' if result.error_info else '')
        if code == 'CommandNotApplicable':
            raise AssistError(f'{where} cannot run shell scripts: {detail}; nothing was run', code=code, unreachable=True,
                              remedy='This connection runs RunShellScript commands, so the instance must be Linux: leave Windows '
                                     'instances out (for example with the ali_ecs inventory group os_linux)')
        if code in UNREACHABLE_CODES or (result.status in ('Aborted',) and code not in ('DirectoryNotExists', 'AccountNotExists')):
            raise AssistError(f'Cloud Assistant cannot run commands on {where}: {detail}; nothing was run', code=code or result.status,
                              remedy=UNREACHABLE_REMEDY, unreachable=True)
        if code == 'DirectoryNotExists':
            raise AssistError(f'{where}: {detail}', code=code, remedy='Set working_dir (ansible_ali_assist_working_dir) to an '
                              'existing absolute directory on the instance')
        if code == 'AccountNotExists':
            raise AssistError(f'{where}: {detail}', code=code, unreachable=True,
                              remedy='Set username (ansible_ali_assist_username) to a user that exists on the instance')
        if result.status == 'Timeout':
            raise AssistError(f'{where}: the command ran past its timeout and Cloud Assistant killed it ({detail})', code=code or 'Timeout',
                              deadline=True, may_have_run=True, remedy='Raise command_timeout')
        raise AssistError(f'The command on {where} did not complete: {detail}', code=code or result.status, may_have_run=True,
                          remedy='Check the invocation with ali_ecs_invocation_info (invoke id ' + result.invoke_id + ')')

    # ---- staging

    def stage(self, data: bytes, nonce: str) -> tuple[str, int, str]:
        """Start the RunCommands that write data's pieces on the target; (stage dir, part count, sha256)."""
        stage_dir = f'/tmp/.cloudexec-stage-{nonce}'
        pieces = split_pieces(data)
        self.start_many([piece_script(stage_dir, index, kind, piece, nonce) for index, (kind, piece) in enumerate(pieces)], STAGE_WAIT)
        self.stats.staged_pieces += len(pieces)
        self.log(f'staged {len(data)} bytes in {len(pieces)} piece(s)')
        return stage_dir, len(pieces), hashlib.sha256(data).hexdigest()

    # ---- commands

    def exec(self, command: str, stdin: bytes | None = None, timeout: int | None = None) -> tuple[int, bytes, bytes]:
        """Run a shell command line with optional stdin; (rc, stdout, stderr) exactly as the command wrote them."""
        nonce = remote_shell.new_nonce()
        wd = self.target.working_dir
        script = self._command_script(command, stdin, nonce, prelude=[])
        if script is None:
            stage_dir, count, digest = self.stage(stdin or b'', nonce)
            stdin_file = f'{stage_dir}.in'
            prelude = assemble_lines(stage_dir, count, stdin_file, digest, nonce)
            staged = f'(\n{command}\n) < {shlex.quote(stdin_file)}; __ce_x=$?; rm -f {shlex.quote(stdin_file)}; exit $__ce_x'
            script = self._command_script(staged, None, nonce, prelude=prelude)
            if script is None:
                raise AssistError(f'The command line alone is larger than the RunCommand limit of {ca.CONTENT_LIMIT} bytes after Base64',
                                  code='CmdContent.ExceedLimit', remedy='Put long scripts in a file (copy or template) and run the file')
        result, output = self.run_script(script, timeout, working_dir=wd)
        if result.dropped:
            raise AssistError(f'Cloud Assistant cut {result.dropped} bytes of the framed output on {self.target.describe()}',
                              code='OutputDropped', may_have_run=True, remedy='The instance needs a writable temp directory (mktemp)')
        why = parse_stage_failure(output, nonce)
        if why:
            raise AssistError(f'Staging the command input on {self.target.describe()} failed ({why})', code='StagingFailed',
                              remedy='Check free space in /tmp on the instance and that base64 and head exist there; then retry')
        spill = parse_spill(output, nonce)
        if spill:
            output = self.read_pages(*spill)
        parser = remote_shell.OutputParser(nonce)
        parsed = parser.feed(output)
        if parsed is None:
            raise AssistError(f'The command on {self.target.describe()} ended without its end marker (output: '
                              f'{output[-300:].decode("utf-8", "replace")!r})', code='FramingLost', may_have_run=True,
                              remedy='The instance must have /bin/sh; check the output above')
        return parsed.rc, parsed.stdout, parsed.stderr

    @staticmethod
    def _command_script(command: str, stdin: bytes | None, nonce: str, prelude: list[str]) -> str | None:
        """The whole RunCommand script, or None when it does not fit the content limit."""
        via = None
        if stdin is not None:
            # The wrapper carries a here-document as latin-1 text, but the script travels as UTF-8: only ASCII goes as text.
            via = remote_shell.stdin_method(stdin, nonce)
            if via == remote_shell.STDIN_HEREDOC and not stdin.isascii():
                via = remote_shell.STDIN_BASE64
        inner = remote_shell.wrap(command, nonce, stdin=stdin, stdin_via=via)
        script = '\n'.join(prelude + spill_wrapper(inner, nonce)) + '\n'
        if len(base64.b64encode(script.encode('utf-8', 'surrogateescape'))) > ca.CONTENT_LIMIT:
            return None
        return script

    def read_pages(self, path: str, size: int, digest: str) -> bytes:
        """A file on the target (the spilled output) read back page by page (all started at once), verified, then removed."""
        count = max(1, -(-size // PAGE))
        invokes = self.start_many([page_script(path, index) for index in range(count)], 60)
        self.stats.pages += count
        data = bytearray()
        for invoke_id in invokes:
            data += base64.b64decode(self.check(*self.wait(invoke_id, 120)))
        # Clean up without waiting: its result changes nothing.
        self.start(f'rm -f {shlex.quote(path)}\n', timeout=30)
        if len(data) != size or (digest != 'size' and hashlib.sha256(data).hexdigest() != digest):
            raise AssistError(f'The output read back from {self.target.describe()} is damaged ({len(data)} of {size} bytes, or a checksum '
                              'mismatch)', code='ChecksumMismatch', may_have_run=True, remedy='Retry; report it with -vvv output if it persists')
        self.log(f'read {size} bytes of output back in {count} page(s)')
        return bytes(data)

    # ---- files

    def put_file(self, in_path: str, out_path: str) -> dict[str, t.Any]:
        """Copy a local file to out_path on the target, staged in pieces, checksummed, renamed into place."""
        with open(in_path, 'rb') as source:
            data = source.read()
        nonce = remote_shell.new_nonce()
        partial = f'{out_path}.cloudexec-part'
        stage_dir, count, digest = self.stage(data, nonce)
        lines = assemble_lines(stage_dir, count, partial, digest, nonce)
        lines += [f'mv -f {shlex.quote(partial)} {shlex.quote(out_path)} || {{ printf \'\\n@@CE{nonce}:STAGE:move@@\\n\'; exit 0; }}',
                  f"printf '@@CE{nonce}:PUT:OK@@\\n'"]
        result, output = self.run_script('\n'.join(lines) + '\n', STAGE_WAIT + 60)
        del result
        why = parse_stage_failure(output, nonce)
        if why or f'@@CE{nonce}:PUT:OK@@'.encode() not in output:
            raise AssistError(f'Copying to {out_path} on {self.target.describe()} failed ({why or "no confirmation"}): '
                              f'{output[-300:].decode("utf-8", "replace").strip()}', code='TransferFailed',
                              remedy='Check that the directory exists and is writable by the Cloud Assistant user')
        return {'bytes': len(data), 'pieces': count, 'sha256': digest}

    def fetch_file(self, in_path: str, out_path: str) -> dict[str, t.Any]:
        """Copy in_path from the target to a local file, page by page, verified."""
        quoted = shlex.quote(in_path)
        script = (f'if [ -f {quoted} ] && [ -r {quoted} ]; then printf "%s:" "$(wc -c < {quoted} | tr -d " ")"; '
                  f'{_SHA256.format(path=quoted)}; else echo missing; fi\n')
        result, output = self.run_script(script, 120)
        del result
        text = output.decode('utf-8', 'replace').strip()
        if text == 'missing' or ':' not in text:
            raise RemoteFileMissing(f'{in_path} does not exist or is not a readable file on {self.target.describe()}', code='FileNotFound')
        size_text, digest = text.split(':', 1)
        size = int(size_text)
        data = self.read_file(in_path, size) if size else b''
        if len(data) != size or (digest != 'size' and hashlib.sha256(data).hexdigest() != digest):
            raise AssistError(f'{in_path} changed or arrived damaged while fetching ({len(data)} of {size} bytes)', code='ChecksumMismatch',
                              remedy='Retry when the file is no longer being written')
        partial = f'{out_path}.cloudexec-part'
        with open(partial, 'wb') as target:
            target.write(data)
        os.replace(partial, out_path)
        return {'bytes': size, 'pages': max(1, -(-size // PAGE)), 'sha256': digest}

    def read_file(self, path: str, size: int) -> bytes:
        """A remote file's bytes, pages started all at once."""
        count = -(-size // PAGE)
        invokes = self.start_many([page_script(path, index) for index in range(count)], 60)
        self.stats.pages += count
        data = bytearray()
        for invoke_id in invokes:
            data += base64.b64decode(self.check(*self.wait(invoke_id, 120)))
        return bytes(data)


class RemoteFileMissing(AssistError):
    """The file to fetch does not exist or cannot be read."""
