# -*- coding: utf-8 -*-
# Copyright (c) 2026 cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""ali_assist_transport against a fake ECS client that runs each RunCommand script with the local sh, under the service's limits."""

from __future__ import annotations

import base64
import os
import random
import subprocess
import time
import types
from pathlib import Path

import pytest

from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant as ca
from ansible_collections.cloudexec.core.plugins.module_utils.alicloud import AlicloudAuth
from ansible_collections.cloudexec.core.plugins.module_utils.errors import CloudExecError, CommandAbandoned
from ansible_collections.cloudexec.core.plugins.module_utils.poll import Poller
from ansible_collections.cloudexec.core.plugins.plugin_utils import ali_assist_memory as am
from ansible_collections.cloudexec.core.plugins.plugin_utils import ali_assist_pieces as ap
from ansible_collections.cloudexec.core.plugins.plugin_utils import ali_assist_transport as at


class FakeEcs:
    """RunCommand runs the script at once with sh; the output is cut as the agent cuts it (aliyun_assist_client
    agent/taskengine/basetask.go): the first `head` bytes (what it streamed while the script ran), then the tail of
    the rest up to `quota` bytes in all, the middle counted as Dropped.

    never_finish: the first script never runs and stays Running. background: every script runs as a real
    process (in a process group of its own, as the agent starts it) in the background, Running until it exits (the
    clock given must then let real time pass). stop_kills_main: StopInvocation SIGKILLs a running script's main
    process only, as the agent does.
    """

    def __init__(self, status: str = 'Success', error_code: str | None = None, never_finish: bool = False,
                 background: bool = False, quota: int = 12000, head: int = 0, stop_kills_main: bool = False) -> None:
        self.results: dict[str, types.SimpleNamespace] = {}
        self.calls: list[str] = []
        self.forced_status = status
        self.error_code = error_code
        self.never_finish = never_finish
        self.background = background
        self.quota = quota
        self.head = head
        self.stop_kills_main = stop_kills_main
        self.stopped: list[str] = []
        self.processes: dict[str, subprocess.Popen] = {}
        self.scripts: list[str] = []

    def kept(self, out: bytes) -> tuple[bytes, int]:
        head = out[:min(self.head, self.quota)]
        rest, budget = out[len(head):], self.quota - len(head)
        if len(rest) <= budget:
            return out, 0
        return head + (rest[len(rest) - budget:] if budget else b''), len(rest) - budget

    def run_command_with_options(self, request, runtime):
        del runtime
        self.calls.append('RunCommand')
        content = base64.b64decode(request.command_content)
        assert len(request.command_content) <= ca.CONTENT_LIMIT
        self.scripts.append(content.decode('utf-8'))
        invoke_id = f't-{len(self.calls)}'
        if self.forced_status != 'Success' and self.error_code:
            record = types.SimpleNamespace(status=self.forced_status, code=self.error_code, out=b'', rc=0)
        elif self.never_finish and not self.results:
            record = types.SimpleNamespace(status='Running', code='', out=b'', rc=0)
        elif self.background:
            self.processes[invoke_id] = subprocess.Popen(['sh', '-c', content.decode('utf-8')], stdout=subprocess.PIPE,
                                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            record = types.SimpleNamespace(status='Running', code='', out=b'', rc=0)
        else:
            proc = subprocess.run(['sh', '-c', content.decode('utf-8')], capture_output=False, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
            status = 'Success' if proc.returncode == 0 else 'Failed'
            record = types.SimpleNamespace(status=status, code='' if status == 'Success' else 'ExitCodeNonzero', out=proc.stdout,
                                           rc=proc.returncode)
        self.results[invoke_id] = record
        return types.SimpleNamespace(body=types.SimpleNamespace(invoke_id=invoke_id, command_id='c-1'))

    def describe_invocation_results_with_options(self, request, runtime):
        del runtime
        self.calls.append('DescribeInvocationResults')
        record = self.results[request.invoke_id]
        proc = self.processes.get(request.invoke_id)
        if proc is not None and proc.poll() is not None and record.status == 'Running':
            record.out = proc.stdout.read()
            record.rc = proc.returncode
            record.status, record.code = ('Success', '') if proc.returncode == 0 else ('Failed', 'ExitCodeNonzero')
        kept, dropped = self.kept(record.out)
        item = types.SimpleNamespace(
            instance_id=request.instance_id, invoke_id=request.invoke_id, invocation_status=record.status, command_id='c-1',
            exit_code=record.rc, output=base64.b64encode(kept).decode(), dropped=dropped,
            error_code=record.code, error_info='', start_time='', finished_time='', stop_time='', repeats=1, username='root',
            container_id='', container_name='')
        page = types.SimpleNamespace(invocation_results=types.SimpleNamespace(invocation_result=[item]), next_token=None)
        return types.SimpleNamespace(body=types.SimpleNamespace(invocation=page))

    def stop_invocation_with_options(self, request, runtime):
        del runtime
        self.calls.append('StopInvocation')
        self.stopped.append(request.invoke_id)
        proc = self.processes.get(request.invoke_id)
        if self.stop_kills_main and proc is not None and proc.poll() is None:
            os.kill(proc.pid, 9)
            proc.wait()
            record = self.results[request.invoke_id]
            record.status, record.code, record.rc = 'Terminated', 'ExecutionInterrupted', 0
        return types.SimpleNamespace(body=types.SimpleNamespace())


def _read_if_there(path: Path) -> bytes:
    """A file's bytes, or b'' when it went away meanwhile (other processes stage and remove files in /tmp too)."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return b''


def ran(transport_, command, stdin=None):
    """(rc, stdout, stderr) of the transport's run()."""
    result = transport_.run(command, stdin=stdin)
    return result.rc, result.stdout, result.stderr


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def transport(client, clock, memory=None, quota_memory=None, **target) -> at.AssistTransport:
    def factory(timeout, **kwargs):
        return Poller(timeout, clock=clock, sleep=clock.sleep, rand=lambda: 0.0, **kwargs)
    auth = AlicloudAuth(alicloud_access_key='LTAI', alicloud_secret_key='secret', alicloud_region='cn-hangzhou')
    return at.AssistTransport(client, auth, at.Target(instance_id='i-1', **target), poller_factory=factory, memory=memory,
                              quota_memory=quota_memory)


def test_small_command_is_one_runcommand_and_one_poll(clock):
    client = FakeEcs()
    rc, out, err = ran(transport(client, clock), 'echo out; echo err >&2; exit 5')
    assert (rc, out, err) == (5, b'out\n', b'err\n')
    assert client.calls == ['RunCommand', 'DescribeInvocationResults']
    # The first check waits poll_initial (0.2 s): no call is spent before the agent can have started.
    assert clock.now == pytest.approx(0.2)


def test_large_stdin_is_staged_and_large_output_paged(clock):
    client = FakeEcs()
    data = os.urandom(70 * 1024) + 'text 汉语\n'.encode() * 4000
    rc, out, err = ran(transport(client, clock), 'cat; cat /dev/null >&2', data)
    assert rc == 0 and err == b'' and out == data
    pieces = ap.split_pieces(data)
    pages = -(-(len(data) + 200) // at.page_size(at.DEFAULT_QUOTA))
    assert len(pieces) > 5
    # pieces, the command, its pages and the clean-up: each one RunCommand.
    assert client.calls.count('RunCommand') in (len(pieces) + 1 + pages + 1, len(pieces) + 1 + pages)


def test_split_pieces_fit_and_rebuild():
    data = 'é'.encode() * 20000 + bytes(range(256)) * 100 + b'tail\n'
    pieces = ap.split_pieces(data)
    assert b''.join(p for dummy, p in pieces) == data
    assert {kind for kind, dummy in pieces} == {'text', 'b64'}
    for index, (kind, piece) in enumerate(pieces):
        script = ap.piece_script('/tmp/x', f'p{index:05d}', kind, piece, '0123456789abcdef')
        assert len(base64.b64encode(script.encode())) <= ca.CONTENT_LIMIT


def test_put_and_fetch_binary_files(tmp_path, clock):
    client = FakeEcs()
    source = tmp_path / 'src.bin'
    source.write_bytes(os.urandom(100 * 1024) + b'\x00\r\n')
    remote = tmp_path / 'remote dir é'
    remote.mkdir()
    t = transport(client, clock)
    stats = t.put_file(str(source), str(remote / "na'me.bin"))
    assert (remote / "na'me.bin").read_bytes() == source.read_bytes() and stats['pieces'] >= 8
    t.fetch_file(str(remote / "na'me.bin"), str(tmp_path / 'back.bin'))
    assert (tmp_path / 'back.bin').read_bytes() == source.read_bytes()
    with pytest.raises(at.RemoteFileNotFound):
        t.fetch_file(str(remote / 'missing'), str(tmp_path / 'x'))


def test_agent_offline_is_unreachable(clock):
    client = FakeEcs(status='Aborted', error_code='ClientNotRunning')
    with pytest.raises(at.AssistError) as caught:
        ran(transport(client, clock), 'true')
    assert caught.value.unreachable and 'nothing was run' in str(caught.value) and caught.value.remedy


def test_deadline_stops_the_invocation(clock):
    client = FakeEcs(never_finish=True)
    with pytest.raises(at.AssistError) as caught:
        ran(transport(client, clock, command_timeout=5), 'sleep 100')
    # StopInvocation, then the script that ends the process tree: it found no process (the fake never started it).
    assert caught.value.deadline and 'it is no longer running' in str(caught.value)
    assert client.stopped == ['t-1'] and client.calls.count('RunCommand') == 2
    assert clock.now == pytest.approx(5, abs=0.5)
    # Polls back off up to poll_max (2 s): a handful of calls for 5 s, not one per 0.2 s.
    assert client.calls.count('DescribeInvocationResults') <= 8


def test_throttled_poll_is_retried(clock):
    client = FakeEcs()
    original = client.describe_invocation_results_with_options
    failures = [2]

    def flaky(request, runtime):
        if failures[0]:
            failures[0] -= 1
            raise CloudExecError('slow down', code='Throttling.User', status=400)
        return original(request, runtime)

    client.describe_invocation_results_with_options = flaky
    rc, out, dummy = ran(transport(client, clock), 'echo ok')
    assert (rc, out) == (0, b'ok\n')


def test_parsers_ignore_other_nonces():
    out = b'x\n@@CEaaaa:SPILL:/tmp/f:10:size@@\n@@CEbbbb:STAGE:missing@@\n'
    assert at.parse_spill(out, 'aaaa') == ('/tmp/f', 10, 'size') and at.parse_spill(out, 'bbbb') is None
    assert ap.parse_stage_failure(out, 'bbbb') == 'missing' and ap.parse_stage_failure(out, 'aaaa') is None


def module_like_payload(args: str) -> bytes:
    """Shaped like an AnsiballZ wrapper: code, then the task's arguments, then the module's (same) zip data."""
    zip_data = base64.b64encode(random.Random(7).randbytes(180 * 1024)).decode()   # a zip: compressed, high entropy
    params = '{"ANSIBLE_MODULE_ARGS": ' + args + '}'
    return (f'#!/usr/bin/python\ndef _ansiballz_main(**kw):\n    pass\n\n_ansiballz_main(\nparams={params!r},\n'
            f'zip_data={zip_data!r},\n)\n').encode()


def test_content_pieces_rebuild_fit_and_survive_an_insertion():
    first, second = module_like_payload('{"cmd": "echo one"}'), module_like_payload('{"cmd": "echo two, with more words"}')
    pieces_first, pieces_second = ap.content_pieces(first), ap.content_pieces(second)
    assert b''.join(p for dummy, p, dummy in pieces_first) == first and b''.join(p for dummy, p, dummy in pieces_second) == second
    for kind, piece, dummy in pieces_first:
        assert len(base64.b64encode(ap.piece_script('"$__ce_c"', 'a' * 32, kind, piece, '0123456789abcdef').encode())) <= ca.CONTENT_LIMIT
    # The arguments moved every later byte: fixed-size pieces would all differ, content-defined ones mostly match.
    shared = {p for dummy, p, dummy in pieces_first} & {p for dummy, p, dummy in pieces_second}
    assert len(pieces_first) > 8 and len(shared) == len(pieces_first) - 1
    # The argument line is a piece of its own, never to be kept; everything else may be.
    assert [p for dummy, p, may_keep in pieces_first if not may_keep] == [b"params='{\"ANSIBLE_MODULE_ARGS\": {\"cmd\": \"echo one\"}}',\n"]
    assert not {p for dummy, p in ap.split_pieces(first)[1:]} & {p for dummy, p in ap.split_pieces(second)[1:]}
    binary = os.urandom(50000)
    assert b''.join(p for dummy, p, dummy in ap.content_pieces(binary)) == binary
    assert not any(may_keep for dummy, dummy, may_keep in ap.content_pieces(binary))   # not module code: nothing kept


def test_piece_cache_keeps_module_code_never_arguments_and_survives_eviction(tmp_path, clock):
    client = FakeEcs()
    memory = am.PieceMemory(str(tmp_path / 'memory'))
    cache = tmp_path / 'cache dir'
    t = transport(client, clock, memory=memory, piece_cache=str(cache))
    secret = f'secret-{os.urandom(8).hex()}'   # only this test's arguments hold it

    def run(number: int) -> tuple[int, int]:
        """(pieces sent, RunCommand calls) of one task."""
        payload = module_like_payload(f'{{"password": "{secret}-{number}"}}')
        before, calls = t.stats.staged_pieces, client.calls.count('RunCommand')
        # (cksum: the payload arrives whole, and the output stays small, so output pages add no RunCommand.)
        expected = subprocess.run(['cksum'], input=payload, capture_output=True, check=True).stdout
        assert ran(t, 'cksum', payload) == (0, expected, b'')
        return t.stats.staged_pieces - before, client.calls.count('RunCommand') - calls

    def left_on_target() -> list[Path]:
        """Files of this test's pieces anywhere on the "target" (the cache, and staging directories in /tmp)."""
        candidates = [*Path('/tmp').glob('.cloudexec-stage-*/*'), *(cache.iterdir() if cache.exists() else [])]
        return [path for path in candidates if secret.encode() in _read_if_there(path)]

    # First sight: every piece is sent; the module code stays in the cache (0700), the argument piece does not.
    count, dummy = run(1)
    assert count > 8
    assert oct(cache.stat().st_mode & 0o777) == '0o700'
    assert len(list(cache.iterdir())) == count - 1 and len(memory.load()) == count - 1
    assert not left_on_target()
    # From then on only the argument piece is sent, inside the command's own script: one RunCommand per task.
    assert run(2) == (1, 1)
    assert run(3) == (1, 1)
    assert t.stats.cached_pieces == 2 * (count - 1)
    assert not left_on_target()

    # The instance lost its cache (cleaned, replaced): the command reports it before running and everything is resent.
    for path in cache.iterdir():
        path.unlink()
    assert run(4)[0] >= count
    assert not left_on_target()
    # A damaged piece (the joined data does not hash right) is the same: found before the command, everything resent.
    victim = sorted(cache.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-1] + b'#')
    assert run(5)[0] >= count


def test_large_file_is_joined_by_a_glob_in_one_script(tmp_path, clock):
    client = FakeEcs()   # refuses (asserts) any script over the content limit
    source = tmp_path / 'big.bin'
    source.write_bytes(os.urandom(6 * 1024 * 1024 + 512 * 1024))   # ~500 pieces: their names alone would not fit one script
    t = transport(client, clock, memory=am.PieceMemory(str(tmp_path / 'memory')), piece_cache=str(tmp_path / 'cache'))
    stats = t.put_file(str(source), str(tmp_path / 'copy.bin'))
    assert (tmp_path / 'copy.bin').read_bytes() == source.read_bytes()
    assert stats["pieces"] == stats["sent"] > 450 and not (tmp_path / 'cache').exists()


def test_only_module_files_go_through_the_piece_cache(tmp_path, clock):
    client = FakeEcs()
    cache = tmp_path / 'cache'
    t = transport(client, clock, memory=am.PieceMemory(str(tmp_path / 'memory')), piece_cache=str(cache))
    source = tmp_path / 'secret.conf'
    source.write_bytes(module_like_payload('{"same": "content"}'))
    for index in range(3):   # the same user file three times: never kept
        t.put_file(str(source), str(tmp_path / f'copy{index}.conf'))
    assert not cache.exists()
    sent = []
    for index in range(3):   # the same module file three times: its code kept on first sight, its arguments never
        sent.append(t.put_file(str(source), str(tmp_path / f'AnsiballZ_mod{index}.py'))['sent'])
        assert (tmp_path / f'AnsiballZ_mod{index}.py').read_bytes() == source.read_bytes()
    assert sent[0] > 8 and sent[1] == sent[2] == 1 and len(list(cache.iterdir())) == sent[0] - 1


class RealClock(FakeClock):
    """The real clock, for fakes that run real background processes (their start takes real time, more under load)."""

    def __call__(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _running(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii') as stat:
            return stat.read().rsplit(') ', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def test_deadline_ends_the_process_tree_on_the_instance(tmp_path):
    # The agent would kill only the script's main process (aliyun_assist_client agent/taskengine): background
    # children survive it. The transport's own kill script ends the whole recorded tree.
    client = FakeEcs(background=True)
    pids = tmp_path / 'pids'
    command = f'sleep 300 & echo $! > {pids}; sh -c "sleep 301" & wait'
    with pytest.raises(at.AssistError) as caught:
        ran(transport(client, RealClock(), command_timeout=4), command)
    assert caught.value.deadline and 'it was ended' in str(caught.value), str(caught.value)
    background = int(pids.read_text())
    deadline = time.monotonic() + 5
    while _running(background) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(background)


def test_an_interrupted_task_ends_its_command_and_reports_it(tmp_path):
    # Ansible's task timeout raises a BaseException inside our wait: the command is ended before it goes on.
    client = FakeEcs(background=True)
    notes = []
    clock = RealClock()
    pidfile = tmp_path / 'pid'

    interrupted = []

    def interrupting_sleep(seconds):
        if not interrupted and pidfile.exists() and pidfile.read_text().strip():
            interrupted.append(True)
            raise KeyboardInterrupt   # once, when the command surely runs
        clock.sleep(seconds)

    t = transport(client, clock)
    t.notify = lambda text, worrying: notes.append((text, worrying))
    t.poller_factory = lambda timeout, **kwargs: Poller(timeout, clock=clock, sleep=interrupting_sleep, rand=lambda: 0.0, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        ran(t, f'echo $$ > {pidfile}; exec sleep 300')
    assert len(notes) == 1 and not notes[0][1] and 'was abandoned' in notes[0][0], notes
    assert not _running(int(pidfile.read_text()))


def test_a_caller_that_leaves_has_its_command_ended_and_told(tmp_path):
    # In the broker, cancelled() says the caller went away (a task timeout, Ctrl-C): the command is ended on the
    # instance (StopInvocation, then the kill script) and CommandAbandoned carries the note that says so.
    client = FakeEcs(background=True, stop_kills_main=True)
    pidfile = tmp_path / 'pid'

    def cancelled():
        return 'its caller went away' if pidfile.exists() and pidfile.read_text().strip() else None

    with pytest.raises(CommandAbandoned) as caught:
        transport(client, RealClock()).run(f'echo $$ > {pidfile}; exec sleep 300', cancelled=cancelled)
    text, worrying = caught.value.ended
    assert 'was abandoned: its caller went away' in text and not worrying, text
    assert client.calls.count('StopInvocation') == 1, client.calls
    deadline = time.monotonic() + 5
    while _running(int(pidfile.read_text())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(int(pidfile.read_text()))


def test_a_cancelled_command_that_arrives_late_runs_nothing(tmp_path):
    # The end script leaves a tombstone before it looks for the process: a command that starts afterwards runs nothing.
    nonce = '00112233aabbccdd'
    subprocess.run(['sh', '-c', at.end_script(nonce, 'ffeeddccbbaa9988')], check=True, capture_output=True)
    marker = tmp_path / 'ran'
    script = '\n'.join(at.run_record_lines(nonce) + [f'touch {marker}']) + '\n'
    output = subprocess.run(['sh', '-c', script], check=True, capture_output=True).stdout
    assert at.was_cancelled(output, nonce) and not marker.exists()
    assert not list(Path('/tmp').glob(f'.cloudexec-run-{nonce}*'))


def test_page_and_inline_sizes_follow_the_quota():
    for quota in (6000, 12000, 24000, 24576):
        page = at.page_size(quota)
        encoded = base64.encodebytes(os.urandom(page))   # 76 characters and a newline per 57 bytes, as base64(1) prints
        assert len(encoded) <= quota - 200 and page % 57 == 0, quota
        assert at.inline_limit(quota) + 100 <= quota
    assert at.page_size(24576) == 17955 and at.page_size(12000) == 8664 and at.page_size(6000) == 4218
    # Output this small fits every quota from 6000 up.
    assert at.SAFE_INLINE + 100 <= at.MIN_QUOTA


@pytest.mark.parametrize('service_quota', [6000, 12000, 24000, 24576])
def test_output_of_any_size_is_whole_under_the_configured_quota(clock, service_quota):
    client = FakeEcs(quota=service_quota)
    t = transport(client, clock, output_quota=service_quota)
    for size in (10, at.SAFE_INLINE + 500, service_quota - 300, 3 * service_quota + 17):
        data = bytes(random.Random(size).randrange(256) for dummy in range(size))
        assert ran(t, f'head -c {size} /dev/urandom >/dev/null; cat', data) == (0, data, b'')
    assert t.quota == service_quota


@pytest.mark.parametrize('head', [0, 2048, 6144])
def test_a_lower_quota_is_learned_and_the_output_read_again(tmp_path, clock, head):
    # The service keeps 6000 bytes, the transport assumes the default 12000: the first output that does not fit is
    # cut (head and tail kept, the middle dropped); it is read again from its kept file, the command does not run again.
    client = FakeEcs(quota=6000, head=head)
    memory = am.QuotaMemory(str(tmp_path / 'quota'))
    t = transport(client, clock, quota_memory=memory)
    runs = tmp_path / 'runs'
    data = os.urandom(9000)
    rc, out, err = ran(t, f'echo run >> {runs}; cat', data)
    assert (rc, out, err) == (0, data, b'') and runs.read_text() == 'run\n'
    assert t.quota == 6000 and memory.load() == 6000 and t.stats.outputs_recovered == 1
    # The next transport (the next task) starts from what was learned: nothing is cut any more.
    again = transport(client, clock, quota_memory=memory)
    assert again.quota == 6000
    big = os.urandom(50000)
    assert ran(again, 'cat', big) == (0, big, b'') and again.stats.outputs_recovered == 0
    # No kept output is left behind on the "instance".
    out_dirs = [line.split('=', 1)[1] for script in client.scripts for line in script.splitlines() if line.startswith('__ce_od=')]
    assert len(out_dirs) == 2 and not [path for path in out_dirs if Path(path).exists()]


def test_a_page_cut_by_the_service_is_read_again_in_smaller_pages(tmp_path, clock):
    client = FakeEcs(quota=6000)
    t = transport(client, clock, output_quota=24576)
    source = tmp_path / 'src.bin'
    source.write_bytes(os.urandom(100000))
    t.fetch_file(str(source), str(tmp_path / 'back.bin'))
    assert (tmp_path / 'back.bin').read_bytes() == source.read_bytes() and t.quota == 6000


def test_a_quota_too_small_to_help_fails_clearly(clock):
    client = FakeEcs(quota=900)
    with pytest.raises(at.AssistError) as caught:
        ran(transport(client, clock), 'head -c 20000 /dev/zero')
    assert caught.value.code == 'OutputDropped' and 'kept only 900 bytes' in str(caught.value)


@pytest.mark.parametrize('size_name', ['empty', 'text piece', 'text piece + 1', 'binary piece', 'binary piece + 1',
                                       'page', 'page + 1'])
def test_boundary_sizes_copy_and_fetch_byte_for_byte(tmp_path, clock, size_name):
    sizes = {'empty': (0, b'x'), 'text piece': (ap.TEXT_PIECE, b't'), 'text piece + 1': (ap.TEXT_PIECE + 1, b't'),
             'binary piece': (ap.BINARY_PIECE, b'\0'), 'binary piece + 1': (ap.BINARY_PIECE + 1, b'\0'),
             'page': (at.page_size(at.DEFAULT_QUOTA), b'\0'), 'page + 1': (at.page_size(at.DEFAULT_QUOTA) + 1, b'\0')}
    size, fill = sizes[size_name]
    data = (fill * size)[:size] if fill != b'\0' else os.urandom(size)
    client = FakeEcs()
    t = transport(client, clock)
    source = tmp_path / 'src'
    source.write_bytes(data)
    stats = t.put_file(str(source), str(tmp_path / 'copy'))
    assert (tmp_path / 'copy').read_bytes() == data
    expected_pieces = {'empty': 0, 'text piece': 1, 'text piece + 1': 2, 'binary piece': 1, 'binary piece + 1': 2}
    if size_name in expected_pieces:
        assert stats['pieces'] == expected_pieces[size_name]
    fetched = t.fetch_file(str(tmp_path / 'copy'), str(tmp_path / 'back'))
    assert (tmp_path / 'back').read_bytes() == data
    assert fetched['pages'] == {'empty': 0, 'page': 1, 'page + 1': 2}.get(size_name, fetched['pages'])


def test_deadline_after_the_agent_killed_the_main_process_ends_what_it_left(tmp_path):
    # StopInvocation makes the agent SIGKILL the script's main process only: its children go to init, out of reach of
    # the process tree, but stay in the script's process group, which the transport records and sweeps.
    client = FakeEcs(background=True, stop_kills_main=True)
    pids = tmp_path / 'pids'
    command = f'sleep 300 & echo $! > {pids}; sleep 301'
    with pytest.raises(at.AssistError) as caught:
        ran(transport(client, RealClock(), command_timeout=3), command)
    message = str(caught.value)
    assert caught.value.deadline and 'it was ended: its main process had already ended' in message and 'were stopped' in message, message
    background = int(pids.read_text())
    deadline = time.monotonic() + 5
    while _running(background) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(background)


def test_describe_end_never_says_stopped_when_it_may_run():
    gone, ended = ('gone', 0), ('ended', 3)
    assert at.describe_end(gone, ('none', 0)) == ('it is no longer running (nothing is left in its process group)', False)
    text, worrying = at.describe_end(gone, ('ended', 2))
    assert not worrying and '2 process(es) it left running in its process group were stopped' in text
    assert at.describe_end(ended, ('survived', 1))[1] and at.describe_end(gone, None)[1]
    assert at.describe_end(None, ('none', 0))[1]


def test_instance_that_cannot_run_the_command_is_unreachable(clock):
    client = FakeEcs()

    def refuse(request, runtime):
        raise CloudExecError('The specified instance type does not match the command.', code='InvalidInstance.NotMatch', status=400)

    client.run_command_with_options = refuse
    with pytest.raises(at.AssistError) as caught:
        ran(transport(client, clock), 'true')
    assert caught.value.unreachable and 'nothing was run' in str(caught.value) and caught.value.remedy


def test_container_targets_change_directory_themselves(clock, tmp_path):
    client = FakeEcs()
    t = transport(client, clock, container_name='app', working_dir=str(tmp_path))
    assert ran(t, 'pwd') == (0, f'{tmp_path}\n'.encode(), b'')
    with pytest.raises(at.AssistError) as caught:
        ran(transport(client, clock, container_name='app', working_dir=str(tmp_path / 'nope')), 'pwd')
    assert caught.value.code == 'DirectoryNotExists'


def test_the_process_group_is_recorded_only_when_it_is_the_commands_own(tmp_path):
    # A script in a group of its own (as the agent starts it) records it; one that shares its caller's group (here
    # pytest's, or the agent's were it not to make one) records none, so the sweep can never reach other processes.
    nonce = '0123456789abcdef'
    record = Path(at.RUN_RECORD.format(nonce=nonce) + '.pid')
    script = '\n'.join(at.run_record_lines(nonce) + [f'cp "$__ce_rec.pid" {tmp_path}/record']) + '\n'
    subprocess.run(['sh', '-c', script], check=True, start_new_session=True)
    pid, dummy, group = (tmp_path / 'record').read_text().split()
    assert group == pid
    subprocess.run(['sh', '-c', script], check=True)
    assert len((tmp_path / 'record').read_text().split()) == 2    # pid and start time, no group
    assert not record.exists()


def test_warm_python_sends_its_server_once_and_runs_pipelined_modules_warm(tmp_path, clock):
    # The server's file goes once per host, in a RunCommand nobody waits for; the module runs from a fresh interpreter
    # until the server is up, then in a warm child. Other commands are sent as they are.
    from ansible_collections.cloudexec.core.tests.unit.plugins.plugin_utils.test_warm_python import (  # pylint: disable=import-outside-toplevel
        PIPELINED, script, servers,
    )

    client = FakeEcs()
    cache = tmp_path / 'pieces'
    state: dict = {}
    stdin = script('print(json.dumps({"warm": probe.WARM}))')
    seen = []
    try:
        for _attempt in range(50):
            t = transport(client, clock, piece_cache=str(cache), warm_python=True, warm_idle=30)
            t.warm_state = state
            rc, out, _err = ran(t, PIPELINED, stdin)
            assert rc == 0, out
            seen.append(b'"warm": true' in out)
            if seen[-1]:
                break
            time.sleep(0.2)
        assert seen[0] is False and seen[-1] is True, seen
        assert sum('warm-server-' in text and 'base64 -d' in text for text in client.scripts) == 1
        rc, out, _err = ran(transport(client, clock, piece_cache=str(cache), warm_python=True), 'echo plain', b'x' * 10)
        assert (rc, out) == (0, b'plain\n') and 'warm-server' not in client.scripts[-1]
    finally:
        for pid in servers(cache):
            os.kill(pid, 15)
