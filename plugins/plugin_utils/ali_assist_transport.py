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
- The service keeps only part of a long output: what the agent streamed while the script ran (a head of up to about
  8 KB), then the tail of the rest, up to a quota the service sets (the agent's own floor is 12000 bytes, the docs say
  24 KB), and it counts the middle it dropped. The wrapper writes the framed output to a private file on the instance
  and prints it only when it fits the quota (option output_quota); otherwise it prints where the file is, its size and
  SHA-256, and the output is read back in pages that fit the quota after Base64, joined and verified. When the service
  cut something all the same (the real quota is lower than assumed), the transport learns the quota from what arrived
  (and remembers it for the target), and reads the output again from the file in smaller pages: Ansible never sees
  truncated output, and the quota never fails a task.
- stdout and stderr arrive in one buffer: remote_shell's markers separate them and carry the exit code.

No session exists, so nothing is kept between tasks: a transport is a client plus the target.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import os
import re
import shlex
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ansible_collections.cloudexec.core.plugins.module_utils import alicloud
from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant as ca
from ansible_collections.cloudexec.core.plugins.module_utils import remote_shell
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, CommandAbandoned, DeadlineExceeded, RemoteFileNotFound
from ansible_collections.cloudexec.core.plugins.module_utils.poll import CLOUD_ASSISTANT_COMMAND, Poller, done, pending
from ansible_collections.cloudexec.core.plugins.plugin_utils.ali_assist_memory import PieceMemory, QuotaMemory, RunLedger
from ansible_collections.cloudexec.core.plugins.plugin_utils import warm_python
from ansible_collections.cloudexec.core.plugins.plugin_utils.transport import Cancelled
from ansible_collections.cloudexec.core.plugins.plugin_utils.ali_assist_pieces import (
    CACHE_MAX,
    SHA256_SCRIPT,
    STAGE_WAIT,
    Staged,
    assemble_lines,
    cache_dir_word,
    content_pieces,
    fits,
    inline_piece_lines,
    parse_stage_failure,
    piece_script,
    split_pieces,
)

# Output quota: the bytes of one execution's output the service keeps whole. Every agent whose code we read keeps at
# least 12000 (aliyun_assist_client agent/taskengine/basetask.go, defaultQuoto): the default assumes no more. The
# transport is made for any quota from MIN_QUOTA up, and learns a lower one when the service cuts output.
DEFAULT_QUOTA = 12000
MIN_QUOTA = 6000
# Room for the lines of our own around the output that is printed (the KEPT trailer).
QUOTA_MARGIN = 256
# Framed output this small survives any quota from MIN_QUOTA up: its file on the instance goes at once.
SAFE_INLINE = MIN_QUOTA - QUOTA_MARGIN
# A learned quota below this is not believed (something else cut the output).
LEARN_FLOOR = QuotaMemory.FLOOR
# Pages of a file read back at once (started ahead of the one being waited for).
PAGE_WINDOW = 32
# Where a command keeps its framed output on the instance while the controller may still need it.
OUT_DIR = '/tmp/.cloudexec-out-{nonce}'
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

# Where a running command records its process (pid and start time) and where a cancelled one finds its tombstone.
RUN_RECORD = '/tmp/.cloudexec-run-{nonce}'
# How long ending an abandoned command may take on the instance (the kill script's own RunCommand).
END_TIMEOUT = 30

_CANCELLED = re.compile(rb'@@CE([0-9a-f]+):CANCELLED@@')
_KEPT = re.compile(rb'@@CE([0-9a-f]+):KEPT:(\d+)@@')
_GROUP = re.compile(rb'@@CE([0-9a-f]+):GROUP:([a-z]+):(\d+)@@')
_SPILL = re.compile(rb'@@CE([0-9a-f]+):SPILL:([^:\n]+):(\d+):([0-9a-f]{64}|size)@@')


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
    # Where pieces are kept on the target ('~/' is the Cloud Assistant user's HOME); None: no piece cache.
    piece_cache: str | None = '~/.cache/cloudexec-pieces'
    # The output the service keeps whole per execution (bytes), as configured; a lower one is learned.
    output_quota: int = DEFAULT_QUOTA
    # Pipelined modules in children of a warm interpreter on the instance (warm_python.py), idle for at most warm_idle s.
    warm_python: bool = False
    warm_idle: int = 600

    @property
    def in_container(self) -> bool:
        return bool(self.container_id or self.container_name)

    def describe(self) -> str:
        """The target for messages."""
        container = self.container_id or self.container_name
        return f'{self.instance_id} (container {container})' if container else self.instance_id


@dataclass
class Stats:
    """What the transport did, for -vvv and the benchmark."""

    commands: int = 0
    staged_pieces: int = 0
    cached_pieces: int = 0
    pages: int = 0
    polls: int = 0
    outputs_recovered: int = 0
    counter: ca.ApiCounter = field(default_factory=ca.ApiCounter)


# --------------------------------------------------------------------------- pure helpers (unit-tested)


def inline_limit(quota: int) -> int:
    """The largest framed output printed directly under this output quota (the rest is read back in pages)."""
    return max(SAFE_INLINE, quota - QUOTA_MARGIN)


def page_size(quota: int) -> int:
    """The raw bytes of one page: their base64 (76 characters and a newline per 57 bytes) fits the quota with room."""
    return 57 * max(1, (quota - QUOTA_MARGIN) // 77)


def spill_wrapper(inner: str, nonce: str, quota: int = DEFAULT_QUOTA) -> list[str]:
    """sh lines that run `inner` with its output in a private file, printed when small, else announced for paging.

    Output of at most SAFE_INLINE bytes fits every quota: it is printed and its file removed. Output up to the
    inline limit is printed and its file KEPT: should the service cut it all the same, the controller reads the file
    (its path follows from the nonce) and then removes it. Larger output is announced (SPILL) and read in pages.
    """
    out_dir = shlex.quote(OUT_DIR.format(nonce=nonce))
    return [
        '__ce_run() {',
        inner.rstrip('\n'),
        '}',
        f'__ce_od={out_dir}',
        'if ( umask 077; mkdir "$__ce_od" ) 2>/dev/null; then __ce_o="$__ce_od/out"; else __ce_run; exit 0; fi',
        '__ce_run > "$__ce_o" 2>&1',
        '__ce_n=$(wc -c < "$__ce_o" | tr -d " ")',
        f'if [ "$__ce_n" -le {SAFE_INLINE} ]; then cat "$__ce_o"; rm -rf "$__ce_od"',
        f'elif [ "$__ce_n" -le {inline_limit(quota)} ]; then cat "$__ce_o"; printf \'\\n@@CE{nonce}:KEPT:%s@@\\n\' "$__ce_n"',
        f'else printf \'\\n@@CE{nonce}:SPILL:%s:%s:%s@@\\n\' "$__ce_o" "$__ce_n" "$({SHA256_SCRIPT.format(path=chr(34) + "$__ce_o" + chr(34))})"; fi',
    ]


def range_script(path: str, offset: int, size: int) -> str:
    """The script printing `size` bytes of a file from `offset` as base64."""
    return f'tail -c +{offset + 1} {shlex.quote(path)} | head -c {size} | base64\n'


def page_ranges(start: int, end: int, page: int) -> list[tuple[int, int]]:
    """(offset, size) of the pages covering bytes start..end."""
    return [(offset, min(page, end - offset)) for offset in range(start, end, page)]


def parse_kept(output: bytes, nonce: str) -> bool:
    """Whether the wrapper printed the output and kept its file on the instance."""
    return any(match.group(1).decode() == nonce for match in _KEPT.finditer(output))


def parse_spill(output: bytes, nonce: str) -> tuple[str, int, str] | None:
    """(path, size, sha256) when the output announces a spilled file, else None."""
    for match in _SPILL.finditer(output):
        if match.group(1).decode() == nonce:
            return match.group(2).decode('utf-8', 'replace'), int(match.group(3)), match.group(4).decode()
    return None


# __ce_pg PID: the process group of PID (field 5 of /proc/PID/stat) in __ce_g, or '' when it cannot be read.
_GROUP_READER = ('__ce_pg() { __ce_g=; __ce_l=; { read -r __ce_l < "/proc/$1/stat"; } 2>/dev/null || return 1; '
                 'set -- ${__ce_l##*[)] }; __ce_g=$3; }')


def run_record_lines(nonce: str) -> list[str]:
    """The first lines of a command script: record its process (until it exits), and never run once cancelled.

    The record holds the script's pid, its start time and its process group. The agent starts every script as the
    leader of a process group of its own and, on timeout or StopInvocation, kills that leader alone (aliyun_assist_client
    agent/util/process): its children are handed to init, out of reach of a walk down the process tree, but still in
    the group. The group is recorded only when it is the script's own (led by the script, or by its parent when that
    is a shell, the agent's `sh -c`), never one it shares with the agent or anything else.

    The order matters (end_script does the reverse): the process is recorded BEFORE the tombstone is
    looked for, and the canceller leaves the tombstone BEFORE it reads the record. Whatever the
    interleaving, either the canceller finds the process, or the command finds the tombstone.
    """
    record = shlex.quote(RUN_RECORD.format(nonce=nonce))
    return [
        f'__ce_rec={record}',
        remote_shell.STAT_READER,
        _GROUP_READER,
        '__ce_t=; __ce_st $$; __ce_pg $$',
        # Only a group led by this script, or by its parent when that is the agent's `sh -c` (a shell, never the agent).
        '__ce_c=; { read -r __ce_c < "/proc/$PPID/comm"; } 2>/dev/null',
        'case "$__ce_g" in "$$") ;; "$PPID") case "$__ce_c" in sh|dash|bash|ash|busybox) ;; *) __ce_g=;; esac;; *) __ce_g=;; esac',
        '( umask 077; printf \'%s %s %s\\n\' "$$" "$__ce_t" "$__ce_g" > "$__ce_rec.pid" ) 2>/dev/null',
        'trap \'rm -f "$__ce_rec.pid"\' EXIT',
        f'if [ -e "$__ce_rec.cancelled" ]; then rm -f "$__ce_rec.pid" "$__ce_rec.cancelled"; '
        f"printf '\\n@@CE{nonce}:CANCELLED@@\\n'; exit 0; fi",
    ]


def group_sweep_lines(kill_nonce: str, grace: float = 2.0) -> list[str]:
    """sh lines that end what is left in the recorded process group ($__ce_g) and started with or after the recorded
    process ($__ce_s), then print one GROUP marker: none, ended or survived, with the count."""
    report = f"printf '\\n@@CE{kill_nonce}:GROUP:%s:%s@@\\n'"
    ticks = max(1, int(grace / 0.2))
    return [
        '__ce_left=',
        'case "$__ce_g" in ""|*[!0-9]*|0|1) __ce_g=;; esac',
        'if [ -n "$__ce_g" ] && [ -n "$__ce_s" ]; then',
        '  for __ce_f in /proc/[0-9]*/stat; do',
        '    __ce_p=${__ce_f#/proc/}; __ce_p=${__ce_p%/stat}',
        '    [ "$__ce_p" = "$$" ] && continue',
        '    __ce_l=; { read -r __ce_l < "$__ce_f"; } 2>/dev/null || continue',
        '    set -- ${__ce_l##*[)] }',
        '    [ "$3" = "$__ce_g" ] && [ "$1" != Z ] && [ "${20}" -ge "$__ce_s" ] 2>/dev/null && __ce_left="$__ce_left $__ce_p"',
        '  done',
        'fi',
        f'if [ -z "$__ce_left" ]; then {report} none 0; exit 0; fi',
        '__ce_n=0; for __ce_p in $__ce_left; do __ce_n=$((__ce_n + 1)); done',
        'kill -TERM $__ce_left 2>/dev/null',
        '__ce_alive() { for __ce_p in $__ce_left; do [ -e "/proc/$__ce_p" ] && { read -r __ce_l < "/proc/$__ce_p/stat"; } '
        '2>/dev/null && case "${__ce_l##*[)] }" in Z*) ;; *) return 0;; esac; done; return 1; }',
        f'__ce_w=0; while __ce_alive && [ "$__ce_w" -lt {ticks} ]; do sleep 0.2 2>/dev/null || sleep 1; __ce_w=$((__ce_w + 1)); done',
        'if __ce_alive; then kill -KILL $__ce_left 2>/dev/null; sleep 0.2 2>/dev/null || sleep 1; fi',
        f'if __ce_alive; then {report} survived "$__ce_n"; else {report} ended "$__ce_n"; fi',
    ]


def end_script(nonce: str, kill_nonce: str) -> str:
    """The script that ends a command started with run_record_lines(nonce): tombstone, its process tree, then what is
    left in its process group (the children of a main process the agent killed)."""
    record = shlex.quote(RUN_RECORD.format(nonce=nonce))
    return '\n'.join([
        f'__ce_rec={record}',
        '( umask 077; : > "$__ce_rec.cancelled" ) 2>/dev/null',
        # Tombstones of commands that never arrived (StopInvocation cancelled them) go after a day.
        'find /tmp -maxdepth 1 -name ".cloudexec-run-*.cancelled" -mmin +1440 -exec rm -f {} + 2>/dev/null',
        # Found: the command started (and passed its tombstone check), so neither file is needed any more.
        '__ce_r=; __ce_s=; __ce_g=',
        'if [ -f "$__ce_rec.pid" ]; then read -r __ce_r __ce_s __ce_g < "$__ce_rec.pid"; rm -f "$__ce_rec.pid" "$__ce_rec.cancelled"; fi',
        '(',
        remote_shell.kill_tree_script('"$__ce_r"', '"$__ce_s"', nonce=kill_nonce).rstrip('\n'),
        ')',
        '(',
        *group_sweep_lines(kill_nonce),
        ')',
        # Its output will not be read any more (removed once nothing can write it).
        f'rm -rf {shlex.quote(OUT_DIR.format(nonce=nonce))}',
    ]) + '\n'


def parse_group_outcome(output: bytes, kill_nonce: str) -> tuple[str, int] | None:
    """('none' | 'ended' | 'survived', count) from the group sweep of an end_script, or None."""
    for match in _GROUP.finditer(output):
        if match.group(1).decode() == kill_nonce:
            return match.group(2).decode(), int(match.group(3))
    return None


def describe_end(tree: tuple[str, int] | None, group: tuple[str, int] | None) -> tuple[str, bool]:
    """(what ending a command did, worrying) from its tree's and its group's outcome; worrying when it may still run."""
    clause, worrying = remote_shell.describe_kill_outcome(tree)
    if group is None:
        return (clause if worrying else f'{clause}, but whether processes it left in its process group still run is '
                'unknown (the check printed no result)'), True
    kind, count = group
    if kind == 'survived':
        return f'{clause}; {count} process(es) left in its process group outlived SIGKILL', True
    if kind == 'ended':
        if tree is not None and tree[0] == remote_shell.KILL_GONE:
            return (f'it was ended: its main process had already ended (Cloud Assistant kills only that one), and the {count} '
                    'process(es) it left running in its process group were stopped (SIGTERM, then SIGKILL for any left)'), worrying
        return f'{clause}; {count} more process(es) left in its process group were ended', worrying
    if not worrying and tree is not None and tree[0] == remote_shell.KILL_GONE:
        return 'it is no longer running (nothing is left in its process group)', False
    return clause, worrying


def was_cancelled(output: bytes, nonce: str) -> bool:
    """Whether the command found its tombstone and ran nothing."""
    return any(match.group(1).decode() == nonce for match in _CANCELLED.finditer(output))


# --------------------------------------------------------------------------- the transport


class AssistTransport:
    """Runs commands and moves files on one instance (or container) through Cloud Assistant."""

    def __init__(self, client: t.Any, auth: alicloud.AlicloudAuth, target: Target, *, log: t.Callable[[str], None] | None = None,
                 poller_factory: t.Callable[..., Poller] = Poller, stats: Stats | None = None, memory: PieceMemory | None = None,
                 notify: t.Callable[[str, bool], None] | None = None, ledger: RunLedger | None = None,
                 quota_memory: QuotaMemory | None = None, warm_state: dict[str, bool] | None = None) -> None:
        self.client = client
        # Whether the warm interpreter's server file was sent to the instance (shared by the host's transports).
        self.warm_state = warm_state if warm_state is not None else {}
        self.ledger = ledger or RunLedger(None, '')
        # The output quota in use: the configured one, or a lower one learned on this target (by this task or an earlier one).
        self.quota_memory = quota_memory or QuotaMemory(None)
        learned = self.quota_memory.load()
        self.quota = min(target.output_quota, learned) if learned else target.output_quota
        self._started_at: dict[str, float] = {}
        self._orphans_checked = False
        # What became of a command that was given up: (text, worrying), worrying when it may still run.
        self.notify = notify or (lambda text, worrying: self.log(text))
        self.memory = memory or PieceMemory(None)
        self.auth = auth
        self.last_trace: dict[str, int] = {}
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
        try:
            body = ca.retried_call(self.client, self.auth, 'run_command', ca.models().RunCommandRequest(**fields),
                                   self.stats.counter, self.poller_factory)
        except CloudExecError as exc:
            if exc.code == 'InvalidInstance.NotMatch':
                # The API refuses the call when the instance cannot run the command (stopped, or not Linux).
                raise AssistError(f'Cloud Assistant cannot run commands on {target.describe()}: {exc.code}: {exc.message}; '
                                  'nothing was run', code=exc.code, remedy=UNREACHABLE_REMEDY, unreachable=True) from None
            raise
        self.stats.commands += 1
        self._started_at[str(body.invoke_id)] = time.monotonic()
        return str(body.invoke_id)

    def start_many(self, scripts: list[str], timeout: int) -> list[str]:
        """Start independent scripts, up to PARALLEL_STARTS calls in flight; their invoke ids in order."""
        if len(scripts) < 2:
            return [self.start(script, timeout) for script in scripts]
        with ThreadPoolExecutor(max_workers=min(PARALLEL_STARTS, len(scripts))) as pool:
            return list(pool.map(lambda script: self.start(script, timeout), scripts))

    def wait(self, invoke_id: str, timeout: float | None = None, nonce: str | None = None,
             cancelled: Cancelled | None = None) -> tuple[ca.InstanceResult, bytes]:
        """Poll one invocation (one DescribeInvocationResults per poll) until it is over; (result, raw output).

        The deadline ends the command (end_command, for a script with a run record named by nonce; else
        StopInvocation) and raises AssistError. A reason from cancelled(), asked before each poll, raises
        CommandAbandoned (run_script then ends the command).
        """
        deadline = float(timeout or self.target.command_timeout)
        policy = CLOUD_ASSISTANT_COMMAND.tuned(initial=self.target.poll_initial, cap=self.target.poll_max)
        poller = self.poller_factory(deadline, policy=policy, what=f'the command on {self.target.describe()}')
        # An invocation started a while ago (a page started ahead of the one waited for) is checked at once.
        first = [time.monotonic() - self._started_at.get(invoke_id, time.monotonic()) < self.target.poll_initial]

        def probe() -> t.Any:
            reason = cancelled() if cancelled is not None else None
            if reason:
                raise CommandAbandoned(reason, started=True)
            if first[0]:
                # The agent needs a moment to pick the task up: the first check comes after the first (short) delay.
                first[0] = False
                return pending()
            self.stats.polls += 1
            request = ca.models().DescribeInvocationResultsRequest(region_id=self.auth.alicloud_region, invoke_id=invoke_id,
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
            if nonce is not None:
                ended, dummy = self.end_command(invoke_id, nonce)
            else:
                problem = ca.stop(self.client, self.auth, invoke_id, self.stats.counter, self.poller_factory)
                # StopInvocation cancels a run that has not started; a started one may go on (API reference) or lose only
                # its main process (the agent): never say it stopped.
                ended = (f'StopInvocation was sent for invocation {invoke_id}; if it had started, it may still be running'
                         if problem is None else f'stopping invocation {invoke_id} failed ({problem}); it may still be running')
            raise AssistError(f'The command did not finish within command_timeout ({deadline:g} s) on {self.target.describe()}; '
                              f'{ended}', code='CommandTimeout', deadline=True, may_have_run=True,
                              remedy='Raise command_timeout (ansible_ali_assist_command_timeout) for long commands, '
                                     'or run them with async') from None

    def end_command(self, invoke_id: str | None, nonce: str) -> tuple[str, bool]:
        """End a command nobody waits for any more; (a clause saying what happened, worrying).

        StopInvocation cancels a run that has not started. Alibaba's API reference says it does not interrupt
        a one-shot run that has, and the agent kills only the script's main process (aliyun_assist_client
        agent/taskengine), so background children would survive either way: a second RunCommand leaves a
        tombstone (the command, should it start later, runs nothing), ends the recorded process tree, and then
        what is left in the command's process group (the children of a main process the agent killed).
        """
        if invoke_id:
            problem = ca.stop(self.client, self.auth, invoke_id, self.stats.counter, self.poller_factory)
            if problem:
                self.log(f'StopInvocation {invoke_id}: {problem}')
        kill_nonce = remote_shell.new_nonce()
        try:
            result, raw = self.wait(self.start(end_script(nonce, kill_nonce), END_TIMEOUT), END_TIMEOUT)
            raw = self.check(result, raw)
        except CloudExecError as exc:
            return f'it may still be running: ending it failed ({exc})', True
        return describe_end(remote_shell.parse_kill_outcome(raw, kill_nonce), parse_group_outcome(raw, kill_nonce))

    def run_script(self, script: str, timeout: int | None = None, working_dir: str | None = None,
                   nonce: str | None = None, cancelled: Cancelled | None = None) -> tuple[ca.InstanceResult, bytes]:
        """Run a script and wait for it; (result, raw output). Raises AssistError unless the script itself ran.

        A script with a run record (nonce) that is interrupted while we wait (Ansible's task timeout in the
        worker, or its caller leaving the broker: CommandAbandoned) is ended on the instance before the
        interruption goes on; CommandAbandoned then carries `ended`, the note that says what became of it.
        """
        if nonce is None:
            invoke_id = self.start(script, timeout, working_dir)
            result, raw = self.wait(invoke_id, timeout)
            return result, self.check(result, raw)
        self.end_orphans()
        invoke_id = None
        self.ledger.add(nonce)
        try:
            invoke_id = self.start(script, timeout, working_dir)
            self.ledger.add(nonce, invoke_id)
            result, raw = self.wait(invoke_id, timeout, nonce, cancelled)
        except CommandAbandoned as exc:
            clause, worrying = self.end_command(invoke_id, nonce)
            exc.ended = (f'The command on {self.target.describe()} was abandoned: {exc.reason}; {clause}', worrying)
            raise
        except BaseException as exc:
            # Not an error of ours (those say what happened themselves): Ansible's task timeout, or an interrupt.
            if not isinstance(exc, Exception):
                self._tell_ended(f'The command on {self.target.describe()} was abandoned (the task was interrupted)',
                                 invoke_id, nonce)
            raise
        finally:
            self.ledger.remove(nonce)
        return result, self.check(result, raw)

    def end_orphans(self) -> None:
        """End the commands that an interrupted run left on this target (once per transport)."""
        if self._orphans_checked:
            return
        self._orphans_checked = True
        for nonce, invoke_id, started in self.ledger.orphans():
            when = time.strftime('%H:%M:%S', time.localtime(started))
            self._tell_ended(f'The command started on {self.target.describe()} at {when} by a run that was interrupted',
                             invoke_id, nonce)
            self.ledger.remove(nonce)

    def _tell_ended(self, what: str, invoke_id: str | None, nonce: str) -> None:
        clause, worrying = self.end_command(invoke_id, nonce)
        self.notify(f'{what}; {clause}', worrying)

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

    def plan_stage(self, data: bytes, nonce: str, cache: bool = True, private: int = 0) -> tuple[Staged, list[str]]:
        """How data gets to the target: the Staged parts and the piece scripts to start (nothing is sent yet).

        Data up to CACHE_MAX (Ansible's module code) is cut at content-defined boundaries: pieces the target keeps
        are not sent again, pieces seen once before go to its cache, new ones to this transfer's stage directory.
        Larger data (file copies) goes whole to the stage directory. The first `private` bytes (a become password)
        always go to the stage directory, apart from the rest, and are never kept.
        """
        digest = hashlib.sha256(data).hexdigest()
        stage_dir = shlex.quote(f'/tmp/.cloudexec-stage-{nonce}')
        # (A cache directory of a sane length: PIECE_OVERHEAD leaves room for it once in every piece script.)
        if cache and self.target.piece_cache and len(self.target.piece_cache) <= 200 and self.memory.path and len(data) <= CACHE_MAX:
            kept = self.memory.load()
            staged = Staged(parts=[], fresh=[], known=[], digest=digest, stage_dir=stage_dir,
                            cache_dir=cache_dir_word(self.target.piece_cache))
            scripts = []
            words: dict[str, str] = {}
            for index, (kind, piece) in enumerate(split_pieces(data[:private])):
                name = f'private{index:03d}'
                words[name] = f'"$__ce_s"/{name}'
                staged.fresh.append(words[name])
                staged.parts.append(words[name])
                scripts.append(piece_script(stage_dir, name, kind, piece, nonce))
            for kind, piece, may_keep in content_pieces(data[private:]):
                name = hashlib.sha256(piece).hexdigest()[:32]
                if name not in words:
                    if may_keep and name in kept:
                        words[name] = f'"$__ce_c"/{name}'
                        staged.known.append(words[name])
                    else:
                        # Module code goes into the cache on first sight; the task's argument lines only to this stage.
                        words[name] = f'"$__ce_c"/{name}' if may_keep else f'"$__ce_s"/{name}'
                        if may_keep:
                            staged.kept.append(name)
                        staged.fresh.append(words[name])
                        scripts.append(piece_script(staged.cache_dir if may_keep else stage_dir, name, kind, piece, nonce))
                staged.parts.append(words[name])
            return staged, scripts
        pieces = split_pieces(data)
        names = [f'p{index:05d}' for index in range(len(pieces))]
        words_in_order = [f'"$__ce_s"/{name}' for name in names]
        scripts = [piece_script(stage_dir, name, kind, piece, nonce) for name, (kind, piece) in zip(names, pieces)]
        return Staged(parts=words_in_order, fresh=list(words_in_order), known=[], digest=digest, stage_dir=stage_dir, glob=True), scripts

    def _pack(self, staged: Staged, pieces: list[str], nonce: str, build: t.Callable[[list[str]], str | None]) -> str | None:
        """The joining script with as many piece scripts inside it as fit (smallest first), the others started on
        their own; None when not even the bare joining script fits. build(prelude) gives a script or None.

        At steady state (the module's code kept on the target) the argument piece alone is new: the task is then one
        RunCommand.
        """
        script = build([])
        if script is None:
            return None
        inline: list[str] = []
        rest = sorted(pieces, key=len)
        while rest:
            candidate = build(inline + inline_piece_lines(rest[0], staged, nonce))
            if candidate is None:
                break
            inline += inline_piece_lines(rest.pop(0), staged, nonce)
            script = candidate
        self.send_pieces(staged, rest, sum(len(piece) for piece in pieces), inline=len(pieces) - len(rest))
        return script

    def send_pieces(self, staged: Staged, scripts: list[str], size: int, inline: int = 0) -> None:
        """Start the piece scripts (their RunCommands are not waited for: the joining command waits for the parts);
        `inline` more travel inside the joining command itself."""
        self.start_many(scripts, STAGE_WAIT)
        self.stats.staged_pieces += len(scripts) + inline
        self.stats.cached_pieces += len(staged.known)
        self.log(f'staged {size} bytes: {len(scripts) + inline} piece(s) sent ({inline} inside the command), '
                 f'{len(staged.known)} already on the target')

    def joined(self, staged: Staged, why: str | None) -> bool:
        """After the joining command: remember the new pieces; True when kept pieces were lost or damaged (the joined
        data did not hash right): then they are all forgotten, and the caller sends everything again."""
        if why == 'evicted' or (why == 'checksum' and staged.known):
            self.memory.forget()
            return True
        if why is None:
            self.memory.remember(staged.kept)
        return False

    # ---- commands

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            cancelled: t.Callable[[], str | None] | None = None, private: int = 0) -> remote_shell.CommandResult:
        """Run a shell command line with optional stdin: stdout, stderr and rc exactly as the command wrote them.

        The transport contract's run (transport.py). In the broker, cancelled() says when the caller left; in a
        task's worker (tests, tools) the interruption of the worker itself ends the command (run_script).
        """
        before = dict(self.stats.counter.calls)
        try:
            return self._run(command, stdin, timeout, private=private, cancelled=cancelled)
        finally:
            spent = {name: count - before.get(name, 0) for name, count in self.stats.counter.calls.items() if count - before.get(name, 0)}
            self.log(f'API calls for this command: {spent}')
            self.last_trace = spent   # each call is a round trip; the connection shows them at -vvvv

    def close(self) -> None:
        """Nothing to end: there is no session."""

    def _run(self, command: str, stdin: bytes | None, timeout: float | None, resend: bool = True,
             private: int = 0, cancelled: Cancelled | None = None) -> remote_shell.CommandResult:
        nonce = remote_shell.new_nonce()
        command = self._warm(command, stdin, private)
        # Cloud Assistant ignores WorkingDir in a container (API reference, ContainerId): the wrapper changes directory itself.
        wd = None if self.target.in_container else self.target.working_dir
        script = self._command_script(command, stdin, nonce, prelude=[])
        staged = None
        if script is None:
            staged, script = self._staged_command(command, stdin or b'', nonce, private)
        result, output = self.run_script(script, timeout, working_dir=wd, nonce=nonce, cancelled=cancelled)
        if result.dropped:
            output = self._recover_output(result, output, nonce)
        elif parse_kept(output, nonce):
            self._remove_later(OUT_DIR.format(nonce=nonce))
        if was_cancelled(output, nonce):
            raise AssistError(f'The command on {self.target.describe()} was cancelled before it started; nothing ran',
                              code='CommandCancelled', remedy='Run the task again')
        why = parse_stage_failure(output, nonce)
        lost = staged is not None and self.joined(staged, why)
        if lost and resend:
            # The target no longer has pieces an earlier task left; the command has not started: send everything.
            self.log('the target lost cached pieces: sending them again')
            return self._run(command, stdin, timeout, resend=False, private=private, cancelled=cancelled)
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
        if parsed.outcome == remote_shell.CHDIR_FAILED:
            raise AssistError(f'{self.target.describe()}: working_dir {self.target.working_dir} does not exist in the container; '
                              'nothing was run', code='DirectoryNotExists',
                              remedy='Set working_dir (ansible_ali_assist_working_dir) to an existing absolute directory in the container')
        return parsed

    # ---- the output quota

    def learn_quota(self, kept: int, dropped: int, strict: bool = False) -> None:
        """The service cut output: it keeps `kept` bytes, fewer than assumed. Use (and remember) that from now on.

        strict: the output cut was sized to fit the quota in use, so only a lower quota can help.
        """
        if kept < LEARN_FLOOR or (strict and kept >= self.quota):
            raise AssistError(f'Cloud Assistant kept only {kept} bytes of output on {self.target.describe()} and dropped {dropped}; '
                              f'no smaller reading can help (assumed quota {self.quota} bytes)', code='OutputDropped',
                              may_have_run=True, remedy='Set output_quota (ansible_ali_assist_output_quota) to the quota of the '
                                                        f'service, at least {MIN_QUOTA} bytes, and report this if it persists')
        self.log(f'Cloud Assistant kept {kept} bytes of output and dropped {dropped}: output quota {self.quota} -> {kept} bytes')
        self.quota = min(self.quota, kept)
        self.quota_memory.save(self.quota)

    def _recover_output(self, result: ca.InstanceResult, output: bytes, nonce: str) -> bytes:
        """The framed output the service cut, read again from the file the wrapper kept (the command does not run again)."""
        out_dir = OUT_DIR.format(nonce=nonce)
        try:
            self.learn_quota(len(output), result.dropped)
            found = self._remote_file(f'{out_dir}/out')
        finally:
            self._remove_later(out_dir)
        if found is None:
            raise AssistError(f'Cloud Assistant cut {result.dropped} bytes of the output on {self.target.describe()}, and the output '
                              'was not kept in a file (no writable /tmp)', code='OutputDropped', may_have_run=True,
                              remedy='The instance needs a writable /tmp')
        self.stats.outputs_recovered += 1
        return found

    def _remove_later(self, path: str) -> None:
        """Remove a kept output directory on the target without waiting for it (its result changes nothing)."""
        self._start_later(f'rm -rf {shlex.quote(path)}\n', f'removing {path}')

    def _start_later(self, script: str, what: str) -> None:
        """Start a script whose result changes nothing, without waiting for it."""
        try:
            self.start(script, timeout=30)
        except CloudExecError as exc:
            self.log(f'{what} on the target failed: {exc}')

    def _warm(self, command: str, stdin: bytes | None, private: int) -> str:
        """The command to send: a plain pipelined module goes to the warm interpreter when warm_python is on.

        The server's file goes to the instance once per host process, in a RunCommand of its own that nobody waits
        for: until it is there, the client runs modules in a fresh interpreter (warm_python.py).
        """
        if not (self.target.warm_python and self.target.piece_cache and stdin is not None and not private):
            return command
        cache = cache_dir_word(self.target.piece_cache)
        warm = warm_python.rewrite(command, cache, self.target.warm_idle)
        if warm is None:
            return command
        if not self.warm_state.get('written'):
            self.warm_state['written'] = True
            self._start_later(warm_python.server_file(cache) + '\n', 'writing the warm interpreter')
        return warm

    def _staged_command(self, command: str, stdin: bytes, nonce: str, private: int = 0) -> tuple[Staged, str]:
        """Send stdin's pieces and return the command script that joins them and reads them as its stdin."""
        stdin_file = f'/tmp/.cloudexec-stage-{nonce}.in'
        wrapped = f'(\n{command}\n) < {shlex.quote(stdin_file)}; __ce_x=$?; rm -f {shlex.quote(stdin_file)}; exit $__ce_x'
        for cache in (True, False):
            staged, pieces = self.plan_stage(stdin, nonce, cache=cache, private=private)
            assemble = assemble_lines(staged, stdin_file, nonce)

            def joining(prelude: list[str], assemble: list[str] = assemble) -> str | None:
                return self._command_script(wrapped, None, nonce, prelude=prelude + assemble)

            packed = self._pack(staged, pieces, nonce, joining)
            if packed is not None:
                return staged, packed
        raise AssistError(f'The command line alone is larger than the RunCommand limit of {ca.CONTENT_LIMIT} bytes after Base64',
                          code='CmdContent.ExceedLimit', remedy='Put long scripts in a file (copy or template) and run the file')

    def _command_script(self, command: str, stdin: bytes | None, nonce: str, prelude: list[str]) -> str | None:
        """The whole RunCommand script, or None when it does not fit the content limit."""
        via = None
        if stdin is not None:
            # The wrapper carries a here-document as latin-1 text, but the script travels as UTF-8: only ASCII goes as text.
            via = remote_shell.stdin_method(stdin, nonce)
            if via == remote_shell.STDIN_HEREDOC and not stdin.isascii():
                via = remote_shell.STDIN_BASE64
        chdir = self.target.working_dir if self.target.in_container else None
        inner = remote_shell.wrap(command, nonce, stdin=stdin, stdin_via=via, chdir=chdir)
        script = '\n'.join(run_record_lines(nonce) + prelude + spill_wrapper(inner, nonce, self.quota)) + '\n'
        if not fits(script):
            return None
        return script

    def read_pages(self, path: str, size: int, digest: str) -> bytes:
        """A file on the target (the spilled output) read back page by page, verified, then removed."""
        try:
            data = self.read_file(path, size)
        finally:
            self._remove_later(path.rsplit('/', 1)[0] if path.startswith('/tmp/.cloudexec-out-') else path)
        if len(data) != size or (digest != 'size' and hashlib.sha256(data).hexdigest() != digest):
            raise AssistError(f'The output read back from {self.target.describe()} is damaged ({len(data)} of {size} bytes, or a checksum '
                              'mismatch)', code='ChecksumMismatch', may_have_run=True, remedy='Retry; report it with -vvv output if it persists')
        self.log(f'read {size} bytes of output back')
        return data

    # ---- files

    def put_file(self, in_path: str, out_path: str, *, timeout: float | None = None,  # pylint: disable=unused-argument
                 cancelled: t.Callable[[], str | None] | None = None, resend: bool = True) -> dict[str, t.Any]:
        """Copy a local file to out_path on the target, staged in pieces, checksummed, renamed into place."""
        with open(in_path, 'rb') as source:
            data = source.read()
        nonce = remote_shell.new_nonce()
        partial = f'{out_path}.cloudexec-part'
        # Only Ansible's own module files (without pipelining) go through the piece cache: a user's files never
        # leave pieces behind, whatever they hold.
        module_file = os.path.basename(out_path).startswith('AnsiballZ_')
        tail = [f'mv -f {shlex.quote(partial)} {shlex.quote(out_path)} || {{ printf \'\\n@@CE{nonce}:STAGE:move@@\\n\'; exit 0; }}',
                f"printf '@@CE{nonce}:PUT:OK@@\\n'"]
        for cache in (module_file, False):
            staged, pieces = self.plan_stage(data, nonce, cache=cache)
            assemble = assemble_lines(staged, partial, nonce)
            sent = len(pieces)

            def joining(prelude: list[str], assemble: list[str] = assemble) -> str | None:
                text = '\n'.join(prelude + assemble + tail) + '\n'
                return text if fits(text) else None

            script = self._pack(staged, pieces, nonce, joining)
            if script is not None:
                break
        else:
            raise AssistError(f'Copying to {out_path}: the joining script does not fit one RunCommand', code='TransferFailed',
                              remedy='Report this: a transfer of any size is joined by one short script')
        result, output = self.run_script(script, STAGE_WAIT + 60)
        del result
        why = parse_stage_failure(output, nonce)
        if self.joined(staged, why) and resend:
            self.log('the target lost cached pieces: sending them again')
            return self.put_file(in_path, out_path, resend=False)
        if why or f'@@CE{nonce}:PUT:OK@@'.encode() not in output:
            raise AssistError(f'Copying to {out_path} on {self.target.describe()} failed ({why or "no confirmation"}): '
                              f'{output[-300:].decode("utf-8", "replace").strip()}', code='TransferFailed',
                              remedy='Check that the directory exists and is writable by the Cloud Assistant user')
        return {'bytes': len(data), 'pieces': len(staged.parts), 'sent': sent, 'sha256': staged.digest}

    def _remote_file(self, path: str) -> bytes | None:
        """A regular file's bytes on the target, read in pages and checked against its SHA-256; None when it is missing."""
        quoted = shlex.quote(path)
        script = (f'if [ -f {quoted} ] && [ -r {quoted} ]; then printf "%s:" "$(wc -c < {quoted} | tr -d " ")"; '
                  f'{SHA256_SCRIPT.format(path=quoted)}; else echo missing; fi\n')
        result, output = self.run_script(script, 120)
        del result
        text = output.decode('utf-8', 'replace').strip()
        if text == 'missing' or ':' not in text:
            return None
        size_text, digest = text.split(':', 1)
        size = int(size_text)
        data = self.read_file(path, size) if size else b''
        if len(data) != size or (digest != 'size' and hashlib.sha256(data).hexdigest() != digest):
            raise AssistError(f'{path} changed or arrived damaged while reading it from {self.target.describe()} '
                              f'({len(data)} of {size} bytes)', code='ChecksumMismatch',
                              remedy='Retry when the file is no longer being written')
        return data

    def fetch_file(self, in_path: str, out_path: str, *, timeout: float | None = None,  # pylint: disable=unused-argument
                   cancelled: t.Callable[[], str | None] | None = None) -> dict[str, t.Any]:
        """Copy in_path from the target to a local file, page by page, verified."""
        pages_before = self.stats.pages
        data = self._remote_file(in_path)
        if data is None:
            raise RemoteFileNotFound.of(in_path, self.target.describe())
        partial = f'{out_path}.cloudexec-part'
        with open(partial, 'wb') as target:
            target.write(data)
        os.replace(partial, out_path)
        return {'bytes': len(data), 'pages': self.stats.pages - pages_before, 'sha256': hashlib.sha256(data).hexdigest()}

    def read_file(self, path: str, size: int) -> bytes:
        """The first `size` bytes of a remote file, in pages that fit the output quota, up to PAGE_WINDOW started ahead.

        A page the service cut (a quota lower than assumed) teaches the transport the real quota; the rest is then read
        again in smaller pages. Reading changes nothing on the target, so a page can always be read again.
        """
        data = bytearray()
        while len(data) < size:
            ranges = collections.deque(page_ranges(len(data), size, page_size(self.quota)))
            ahead: collections.deque[tuple[tuple[int, int], str]] = collections.deque()
            while ranges or ahead:
                self._start_ahead(path, ranges, ahead)
                (offset, length), invoke_id = ahead.popleft()
                result, raw = self.wait(invoke_id, 120)
                raw = self.check(result, raw)
                if result.dropped:
                    # The pages started ahead are left to end: they only read.
                    self.learn_quota(len(raw), result.dropped, strict=True)
                    break
                chunk = base64.b64decode(raw)
                if len(chunk) != length:
                    raise AssistError(f'{path} on {self.target.describe()} changed while it was read ({len(chunk)} bytes at offset '
                                      f'{offset} instead of {length})', code='ChecksumMismatch',
                                      remedy='Retry when the file is no longer being written')
                data += chunk
        return bytes(data)

    def _start_ahead(self, path: str, ranges: collections.deque, ahead: collections.deque) -> None:
        """Start pages until PAGE_WINDOW are in flight (PARALLEL_STARTS at least at a time, so the starts overlap)."""
        room = PAGE_WINDOW - len(ahead)
        if ranges and (not ahead or room >= PARALLEL_STARTS):
            batch = [ranges.popleft() for dummy in range(min(room, len(ranges)))]
            ahead.extend(zip(batch, self.start_many([range_script(path, offset, length) for offset, length in batch], 60)))
            self.stats.pages += len(batch)
