# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The aws_ecs_exec module through real ``ansible`` and ``ansible-playbook`` runs against the emulator.

Most tests use a second emulator whose world is the default one with ECS Exec's start-up delays cut
(``fast``), so a session costs milliseconds instead of ~1.2 s; the ad-hoc and the secrets tests use
the default world (``emu``) as shipped.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator

from helpers import AnsibleRun, ansible_adhoc, ansible_playbook

MODULE = 'cloudexec.core.aws_ecs_exec'
WEB = '1f0e1c2d3b4a59687766554433221100'
API = '2a1b2c3d4e5f60718293a4b5c6d7e8f9'
NO_EXEC = '3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f'
STAGING_WEB = '4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a'
WEB_ARN = f'arn:aws:ecs:us-east-1:123456789012:task/demo/{WEB}'
DEMO_ARN = 'arn:aws:ecs:us-east-1:123456789012:cluster/demo'
DEFAULT_WORLD = Path(__file__).resolve().parents[1] / 'emulator' / 'cloudexec_emulator' / 'worlds' / 'default.yml'
SESSION_ID = re.compile(r'^ecs-execute-command-[0-9a-f]{17}$')
# What a result must never carry: ExecuteCommand's session secrets, under any spelling.
FORBIDDEN_KEYS = {'token', 'token_value', 'tokenvalue', 'stream_url', 'streamurl', 'stream'}


@pytest.fixture(scope='module')
def fast(tmp_path_factory):
    """The default world with ECS Exec's agent start and first-read delays cut, plus a principal denied ExecuteCommand."""
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['aws']['exec'] = {'agent_start_ms': 10, 'output_delay_ms': 20, 'session_limit': 4}
    world['aws']['credentials'].append({'access_key': 'AKIAEMULATORNOEXEC01', 'secret_key': 'emulator/secret/key/for/tests/noexec',
                                        'principal': 'arn:aws:iam::123456789012:user/no-exec', 'deny': ['ecs:ExecuteCommand']})
    directory = tmp_path_factory.mktemp('aws-ecs-exec')
    path = directory / 'world.yml'
    path.write_text(yaml.safe_dump(world))
    with start_emulator(world=path, state_dir=directory / 'state') as info:
        yield info


@pytest.fixture
def fast_emu(fast):
    """The fast emulator with no faults and zeroed counters."""
    fast.admin('DELETE', 'faults')
    fast.admin('POST', 'calls/reset')
    yield fast
    fast.admin('DELETE', 'faults')


def sandbox(emulator, task: str, container: str) -> Path:
    """The directory the emulator runs that container's commands in (its HOME and cwd)."""
    return Path(emulator['state_dir']) / 'sandboxes' / 'aws-ecs' / task / container


def calls(emulator) -> dict[str, Any]:
    return emulator.admin('GET', 'calls')


def ws(emulator) -> dict[str, int]:
    return calls(emulator)['ws'].get('aws-ecs-exec', {})


def forbidden_keys(value: Any) -> set[str]:
    """Keys anywhere in a result that would carry a session secret."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).lower() in FORBIDDEN_KEYS:
                found.add(key)
            found |= forbidden_keys(item)
    elif isinstance(value, list):
        for item in value:
            found |= forbidden_keys(item)
    return found


def failed(run: AnsibleRun, task: str) -> dict[str, Any]:
    """The result of a task that must have failed (and been ignored)."""
    record = run.record(task)
    assert record['status'] == 'failed', f'{task}: {record}'
    return record['result']


def sandbox_processes(pattern: str) -> list[str]:
    """Processes whose command line contains pattern (the emulator's sandboxes run as our own children's children)."""
    ps = subprocess.run(['ps', '-eo', 'pid=,args='], capture_output=True, text=True, check=True).stdout
    return [line for line in ps.splitlines() if pattern in line]


# ---- the default world -------------------------------------------------------------------------


def test_adhoc_on_default_world(emu):
    """`ansible localhost -m ... -a '...'`: exact stdout (trailing newlines, no CR), stderr apart, rc, ids."""
    run = ansible_adhoc(emu, MODULE, f'cluster=demo task={WEB} command="printf \'a\\\\nb\\\\n\\\\n\'; echo oops >&2"')
    assert run.rc == 0, run.output
    assert 'localhost | CHANGED =>' in run.stdout
    result = run.result(MODULE)
    assert result['stdout'] == 'a\nb\n\n'
    assert result['stdout_lines'] == ['a', 'b', '']
    assert result['stderr'] == 'oops\n'
    assert result['stderr_lines'] == ['oops']
    assert result['rc'] == 0 and result['changed'] is True
    assert result['cmd'] == "printf 'a\\nb\\n\\n'; echo oops >&2"
    assert result['task_arn'] == WEB_ARN
    assert result['cluster_arn'] == DEMO_ARN
    assert result['container_name'] == 'web'
    assert SESSION_ID.match(result['session_id']), result['session_id']
    assert not forbidden_keys(result)
    assert emu.calls('aws-ecs', 'ExecuteCommand') == 1
    assert emu.calls('aws-ecs', 'DescribeTasks') == 1
    counters = ws(emu)
    assert counters.get('sessions_opened') == 1
    assert 'frames_invalid' not in counters


def test_adhoc_nonzero_rc(emu):
    """An exit code other than 0 fails the ad-hoc run (rc 2 of ansible) and keeps rc, stdout and stderr."""
    run = ansible_adhoc(emu, MODULE, {'cluster': 'demo', 'task': WEB, 'command': ['sh', '-c', 'echo out; echo err >&2; exit 42']})
    assert run.rc == 2, run.output
    assert 'localhost | FAILED!' in run.stdout
    record = run.record(MODULE)
    assert record['status'] == 'failed'
    result = record['result']
    assert (result['rc'], result['stdout'], result['stderr']) == (42, 'out\n', 'err\n')
    assert result['msg'] == 'non-zero return code'
    assert result['cmd'] == "sh -c 'echo out; echo err >&2; exit 42'"


def test_no_secrets_in_vvvv(emu):
    """A whole -vvvv run shows no secret key, session token, token value or stream URL, and results carry none."""
    temporary = {'access_key': 'ASIAEMULATOR00000002', 'secret_key': 'emulator/secret/key/for/tests/only00002',
                 'session_token': 'emulator-session-token-0002'}
    run = ansible_playbook(emu, 'aws_ecs_exec_secrets.yml', '-vvvv',
                           extra_env={f'TEST_TEMPORARY_{key.upper()}': value for key, value in temporary.items()})
    assert run.rc == 0, run.output
    assert run.result('credentials from the environment')['stdout'] == 'env-credentials\n'
    assert run.result('temporary credentials as module options')['stdout'] == 'temporary-credentials\n'
    assert failed(run, 'a failing command')['rc'] == 7
    assert failed(run, 'a timeout')['error']['code'] == 'DeadlineExceeded'
    text = run.stdout + run.stderr
    # The run really was verbose: the module invocation (its arguments) is in the output.
    assert 'ESTABLISH LOCAL CONNECTION' in text and '"module_args"' in text
    for secret in (emu['aws']['secret_key'], temporary['secret_key'], temporary['session_token']):
        assert secret not in text
    for needle in ('/v1/data-channel/', 'data-channel', 'cell-number', 'role=publish_subscribe', 'tokenValue', 'TokenValue',
                   'streamUrl', 'StreamUrl'):
        assert needle not in text, needle
    for record in run.results:
        assert not forbidden_keys(record['result']), record
        assert emu['aws']['secret_key'] not in json.dumps(record['result'])
    # Four commands, and the second session that ended the one that timed out.
    assert emu.calls('aws-ecs', 'ExecuteCommand') == 5


# ---- the fast world ------------------------------------------------------------------------------


def test_playbook(fast_emu):
    """One playbook: argv quoting, chdir, creates/removes, failures, output fidelity, containers, timeout, groups."""
    home = sandbox(fast_emu, WEB, 'web')
    for name in ('created.txt', 'to-remove.txt', 'should-not-exist'):
        (home / name).unlink(missing_ok=True)
    run = ansible_playbook(fast_emu, 'aws_ecs_exec.yml', extra_vars={'endpoint': fast_emu['aws']['endpoint_url']})
    assert run.rc == 0, run.output

    # argv: every item reaches printf as one argument, nothing expanded or split.
    argv = run.result('argv list')
    assert argv['stdout'] == 'a b|it\'s|"dq"|$HOME|x;y|*||\\n|--|'
    assert argv['cmd'] == "printf '%s|' 'a b' 'it'\"'\"'s' '\"dq\"' '$HOME' 'x;y' '*' '' '\\n' --"
    assert argv['rc'] == 0 and argv['stderr'] == ''

    piped = run.result('string command with pipes and exit code 0')
    assert (piped['stdout'], piped['stderr'], piped['rc']) == ('ONE\nTWO\n', 'to-stderr\n', 0)
    assert '\r' not in piped['stdout'] + piped['stderr']

    assert run.result('chdir')['stdout'] == '/usr\n'
    bad_dir = failed(run, 'chdir that does not exist')
    assert bad_dir['msg'] == 'Cannot change into /no/such/dir in the container' and bad_dir['rc'] == 1
    assert not (home / 'should-not-exist').exists()

    # creates/removes are checked in the container: the files live in the container's sandbox.
    first, second = run.result('creates (first)'), run.result('creates (second)')
    assert first['changed'] is True and first['rc'] == 0
    assert second['changed'] is False and second['msg'] == 'Did not run: created.txt exists' and 'rc' not in second
    assert (home / 'created.txt').read_text() == 'made\n'
    first, second = run.result('removes (first)'), run.result('removes (second)')
    assert first['changed'] is True
    assert second['changed'] is False and second['msg'] == 'Did not run: to-remove.txt does not exist'
    assert not (home / 'to-remove.txt').exists()

    # A non-zero exit code fails the task, keeping what the command said; ignore_errors and failed_when work.
    nonzero = run.record('non-zero exit code')
    assert nonzero['status'] == 'failed' and nonzero['ignored'] is True
    assert (nonzero['result']['rc'], nonzero['result']['stdout'], nonzero['result']['stderr']) == (3, 'out\n', 'err\n')
    assert nonzero['result']['msg'] == 'non-zero return code'
    graded = run.record('failed_when on the exit code')
    assert graded['status'] == 'ok' and graded['result']['rc'] == 1 and graded['result']['stdout'] == 'partial\n'

    # Bytes come back as the command wrote them: UTF-8 exact, CR kept, NUL kept, invalid bytes replaced.
    assert run.result('unicode output')['stdout'] == 'caf\u00e9 \u20ac \U0001F600\nline2'
    assert run.result('binary output')['stdout'] == '\ufffd\ufffd\x00z\r\n'
    large = run.result('large output')['stdout']
    expected = ''.join(f'{i}\n' for i in range(1, 300001))
    assert len(expected) > 1_900_000
    assert large == expected

    sidecar = run.result('second container of a multi-container task')
    assert sidecar['stdout'] == f'{sandbox(fast_emu, API, "sidecar")}\n' and sidecar['container_name'] == 'sidecar'
    by_arn = run.result('task ARN without cluster')
    assert by_arn['stdout'] == 'by-arn\n' and by_arn['cluster_arn'] == DEMO_ARN
    assert run.result('other shell')['stdout'] == '/bin/bash\n'

    # timeout: fails within a few seconds, says why, and the command is gone.
    timed_out = failed(run, 'timeout')
    assert timed_out['error']['code'] == 'DeadlineExceeded'
    assert timed_out['msg'].startswith(f'DeadlineExceeded: The command in {WEB}/web did not finish within 2 seconds (it had started')
    assert 'Raise timeout' in timed_out['msg']
    # A second session looked for what was left of it (found by its nonce) and says so.
    assert 'it is no longer running' in timed_out['msg'] or 'it was ended' in timed_out['msg'], timed_out['msg']
    # The sleep would take 31 s; the margin over 2 s is module start-up on a busy machine.
    assert 2.0 <= run.task_seconds('timeout') < 10.0
    assert not sandbox_processes('sleep 31.25')

    # module_defaults with the collection's action group.
    grouped = run.result('module_defaults group')
    assert grouped['stdout'] == f'{sandbox(fast_emu, STAGING_WEB, "web")}\n'
    denied = failed(run, 'module_defaults group carries credentials')
    assert denied['error']['code'] == 'AccessDeniedException'
    assert 'arn:aws:iam::123456789012:user/no-tasks is not authorized' in denied['msg']
    assert 'grant it in an IAM policy' in denied['msg']

    for record in run.results:
        assert not forbidden_keys(record['result']), record
    assert run.stats['localhost']['failures'] == 0 and run.stats['localhost']['ignored'] == 4
    # One session per command that ran or was skipped by creates/removes in the container (not the
    # refused credentials, not the bad chdir that the wrapper itself refused: it ran one too), and the second
    # session that ended the command that timed out.
    assert fast_emu.calls('aws-ecs', 'ExecuteCommand') == 20
    assert 'frames_invalid' not in ws(fast_emu)
    assert fast_emu.admin('GET', 'health')['sandbox_processes'] == 0


def test_check_mode(fast_emu):
    """--check verifies the target and runs nothing: no ExecuteCommand, no file; a bad target still fails."""
    for container, task in (('web', WEB), ('app', API)):
        (sandbox(fast_emu, task, container) / 'check-mode-ran.txt').unlink(missing_ok=True)
    run = ansible_playbook(fast_emu, 'aws_ecs_exec_check.yml', '--check')
    assert run.rc == 0, run.output
    good = run.result('good target')
    assert good['changed'] is True
    assert good['msg'] == 'Check mode: the target can exec; the command would run'
    assert good['task_arn'] == WEB_ARN and good['container_name'] == 'web'
    assert 'rc' not in good and 'stdout' not in good and 'session_id' not in good
    assert run.result('good target, argv and creates')['container_name'] == 'app'
    bad = failed(run, 'bad target')
    assert bad['error']['code'] == 'ExecuteCommandNotEnabled'
    assert '--enable-execute-command' in bad['msg']
    assert fast_emu.calls('aws-ecs', 'ExecuteCommand') == 0
    assert fast_emu.calls('aws-ecs', 'DescribeTasks') == 3
    for container, task in (('web', WEB), ('app', API)):
        assert not (sandbox(fast_emu, task, container) / 'check-mode-ran.txt').exists()


def test_target_errors(fast_emu):
    """Every refused target names its code and what to do, and no command runs."""
    run = ansible_playbook(fast_emu, 'aws_ecs_exec_errors.yml')
    assert run.rc == 0, run.output
    expected = {
        # task name: (code, fragments of the message)
        'no such cluster': ('ClusterNotFoundException', ['Cluster not found', 'check the cluster name or ARN and the region']),
        'no cluster and no default cluster': ('ClusterNotFoundException', ['cluster named "default"', 'set cluster']),
        'no such task': ('TaskNotFound', ['Task ffffffffffffffffffffffffffffffff was not found in cluster demo (MISSING)',
                                          'Check task and cluster']),
        'multi-container task without container': ('InvalidParameter', ['has 2 containers, name one of: app, sidecar']),
        'unknown container': ('InvalidParameter', ["has no container named 'nope' (it has: app, sidecar)"]),
        'exec disabled': ('ExecuteCommandNotEnabled', ['ECS Exec is not enabled on this task', '--enable-execute-command']),
        'agent stopped': ('AgentNotRunning', ['agent in container legacy is STOPPED', 'ssmmessages']),
        'wrong secret key': ('InvalidSignatureException', ['The secret key does not match the access key']),
        'unknown access key': ('UnrecognizedClientException', ['The access key is not known to AWS']),
        'temporary credential without its session token': ('UnrecognizedClientException', ['access key is not known']),
        'principal denied DescribeTasks': ('AccessDeniedException', ['user/no-tasks is not authorized to perform: ecs:DescribeTasks',
                                                                     'grant it in an IAM policy']),
        'principal denied ExecuteCommand': ('AccessDeniedException', ['user/no-exec is not authorized to perform: ecs:ExecuteCommand',
                                                                      'grant it in an IAM policy']),
        'timeout below one second': ('InvalidParameter', ['Invalid value for timeout: 0 is below the minimum of 1 second']),
        'empty argv': ('InvalidParameter', ['Invalid value for command']),
        'shell that does not exist': ('SessionClosedEarly', ['closed before the command reported its exit code',
                                                             'Check that /no/such/shell exists in the container']),
    }
    seen = {record['task'] for record in run.results}
    assert seen == set(expected), seen ^ set(expected)
    for task, (code, fragments) in expected.items():
        result = failed(run, task)
        assert result['error']['code'] == code, (task, result['msg'])
        assert result['msg'].startswith(f'{code}: '), (task, result['msg'])
        for fragment in fragments:
            assert fragment in result['msg'], (task, fragment, result['msg'])
        assert 'rc' not in result and 'stdout' not in result, task
        assert 'not-the-secret' not in result['msg'] and 'readonly' not in result['msg'].replace('/no-tasks', '')
    # Only the denied principal and the missing shell reached ExecuteCommand; only the shell got a channel.
    assert fast_emu.calls('aws-ecs', 'ExecuteCommand') == 2
    assert ws(fast_emu).get('sessions_opened') == 1
    assert not (sandbox(fast_emu, WEB, 'web') / 'must-not-exist').exists()


def test_faults(fast_emu):
    """Throttling and server errors recover; duplicate/reordered/delayed frames and lost acks give exact output;
    a dropped connection fails saying the command may have run (and it did)."""
    home = sandbox(fast_emu, WEB, 'web')
    for name in ('dropped-fast.txt', 'dropped-slow.txt'):
        (home / name).unlink(missing_ok=True)
    run = ansible_playbook(fast_emu, 'aws_ecs_exec_faults.yml', extra_vars={'admin': f'{fast_emu.endpoint}/_emulator/'})
    assert run.rc == 0, run.output
    assert run.result('throttled')['stdout'] == 'throttled-ok\n'
    assert run.result('server errors')['stdout'] == 'server-error-ok\n'
    numbers = ''.join(f'{i}\n' for i in range(1, 3001))
    assert run.result('duplicated')['stdout'] == numbers
    assert run.result('reordered')['stdout'] == numbers
    delayed = run.result('delayed')
    assert delayed['stdout'] == ''.join(f'{i}\n' for i in range(1, 501)) and delayed['stderr'] == 'done\n'
    for task in ('dropped at once', 'dropped mid-stream'):
        result = failed(run, task)
        assert result['error']['code'] == 'SessionDropped', result['msg']
        assert 'was lost while the command ran' in result['msg']
        assert 'may have' in result['msg'] and 'check its effects before running it again' in result['msg']
        # The shipped world's SSM does not resume ECS Exec sessions (unverified that AWS's does): the client tried.
        assert 'could not be resumed (DoesNotExistException' in result['msg'], result['msg']
        assert 'SSM may not resume ECS Exec sessions' in result['msg'], result['msg']
        assert 'stdout' not in result
    assert (home / 'dropped-fast.txt').exists() and (home / 'dropped-slow.txt').exists()

    counters = calls(fast_emu)
    assert counters['errors']['aws-ecs']['DescribeTasks'] == {'ThrottlingException': 2, 'ServiceUnavailableException': 2}
    assert counters['errors']['aws-ecs']['ExecuteCommand'] == {'ThrottlingException': 2}
    channel = counters['ws']['aws-ecs-exec']
    assert channel['drops'] == 2
    assert counters['calls']['aws-ssm']['ResumeSession'] == 2 and 'resumed' not in channel   # refused: not asked again
    assert channel['sessions_opened'] == 7
    assert 'frames_invalid' not in channel
