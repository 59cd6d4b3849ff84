# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run real ``ansible`` / ``ansible-playbook`` processes against an emulator and read back what happened.

Every run gets the emulator's environment (credentials, region, endpoints), the caller's
ANSIBLE_COLLECTIONS_PATH, no colour, and a small recording callback that writes each task result as
one JSON line to a private file. The stdout callback stays Ansible's default, so ``-vvvv`` output is
exactly what a user would see (and what the secrets tests grep)::

    run = ansible_playbook(emu, PLAYBOOKS / 'aws_ecs_exec.yml', '-e', 'task=...')
    assert run.rc == 0, run.output
    assert run.result('say hello')['stdout'] == 'hello\\n'
    assert run.stats['localhost']['changed'] == 1

Reusable for the connection and inventory tests: pass ``inventory=``, ``extra_env=`` and extra CLI
arguments as needed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

INTEGRATION_DIR = Path(__file__).resolve().parent
PLAYBOOKS = INTEGRATION_DIR / 'playbooks'
_CACHE_COLLECTIONS = INTEGRATION_DIR.parents[1] / '.cache' / 'collections'
BIN_DIR = Path(sys.executable).parent
DEFAULT_TIMEOUT = 180.0

_CALLBACK_NAME = 'cloudexec_record'
# A notification callback (not the stdout one): JSON lines with every runner result and the final stats.
_CALLBACK_SOURCE = '''
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: cloudexec_record
type: notification
short_description: record task results as JSON lines for cloudexec.core's tests
description: [Appends one JSON object per task result to the file named by CLOUDEXEC_RECORD_FILE.]
"""


def _get(obj, name):
    value = getattr(obj, name, None)
    return value if value is not None else getattr(obj, '_' + name)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'notification'
    CALLBACK_NAME = 'cloudexec_record'
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, record):
        record['time'] = time.time()
        path = os.environ.get('CLOUDEXEC_RECORD_FILE')
        if path:
            with open(path, 'a', encoding='utf-8') as handle:
                handle.write(json.dumps(record, default=str) + '\\n')

    def _record(self, status, result, **extra):
        task = _get(result, 'task')
        host = _get(result, 'host')
        self._write(dict(event='result', status=status, task=task.get_name(), action=task.action,
                         host=host.get_name(), ignore_errors=bool(task.ignore_errors),
                         result=dict(_get(result, 'result')), **extra))

    def v2_runner_on_start(self, host, task):
        self._write(dict(event='start', task=task.get_name(), host=host.get_name()))

    def v2_runner_on_ok(self, result, **kwargs):
        self._record('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record('failed', result, ignored=bool(ignore_errors))

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record('skipped', result)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record('unreachable', result)

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        self._write(dict(event='stats', stats={h: stats.summarize(h) for h in hosts}))
'''


def _callback_dir() -> Path:
    """A private directory holding the recording callback, one per user and version of its source (shared by runs)."""
    digest = hashlib.sha256(_CALLBACK_SOURCE.encode()).hexdigest()[:12]
    directory = Path(tempfile.gettempdir()) / f'cloudexec-test-callbacks-{os.getuid()}-{digest}'
    plugin = directory / f'{_CALLBACK_NAME}.py'
    if not plugin.exists():
        directory.mkdir(mode=0o700, exist_ok=True)
        partial = directory / f'.{_CALLBACK_NAME}.{os.getpid()}.tmp'
        partial.write_text(_CALLBACK_SOURCE)
        os.replace(partial, plugin)  # atomic: concurrent test runs never see half a file
    return directory


@dataclass
class AnsibleRun:
    """One finished ansible/ansible-playbook process."""

    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    duration: float
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def output(self) -> str:
        """stdout and stderr together, for assertion messages and greps."""
        return f'--- rc {self.rc} in {self.duration:.1f}s: {" ".join(self.argv)}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}'

    @property
    def results(self) -> list[dict[str, Any]]:
        """Every task result in order: dicts with status, task, action, host, ignore_errors, result, time."""
        return [r for r in self.records if r['event'] == 'result']

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """The play recap per host (ok, changed, failures, skipped, ignored, ...); empty for ad-hoc runs."""
        return next((r['stats'] for r in self.records if r['event'] == 'stats'), {})

    def record(self, task: str, host: str | None = None) -> dict[str, Any]:
        """The single record of the task with this name (and host); fails the test when there is not exactly one."""
        found = [r for r in self.results if r['task'] == task and (host is None or r['host'] == host)]
        assert len(found) == 1, f'{len(found)} results for task {task!r}; tasks seen: {[r["task"] for r in self.results]}\n{self.output}'
        return found[0]

    def task_seconds(self, task: str, host: str | None = None) -> float:
        """How long the task took on the host, from the runner's start to its result."""
        end = self.record(task, host)
        start = [r for r in self.records if r['event'] == 'start' and r['task'] == task and r['host'] == end['host']]
        assert len(start) == 1, f'{len(start)} start records for task {task!r}'
        return end['time'] - start[0]['time']

    def result(self, task: str, host: str | None = None) -> dict[str, Any]:
        """The module result of the task with this name."""
        return self.record(task, host)['result']


def ansible_env(emulator: Mapping[str, Any] | Any, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for an Ansible process aimed at this emulator."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(('AWS_', 'ALICLOUD_', 'ALIBABA_CLOUD_', 'ANSIBLE_'))}
    env.update(getattr(emulator, 'env', {}) or {})
    collections_path = os.environ.get('ANSIBLE_COLLECTIONS_PATH')
    if not collections_path and (_CACHE_COLLECTIONS / 'ansible_collections' / 'cloudexec' / 'core').is_dir():
        collections_path = str(_CACHE_COLLECTIONS)  # where tests/ci builds the collection (as conftest.py looks)
    if collections_path:
        env['ANSIBLE_COLLECTIONS_PATH'] = collections_path
    env.update({
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_HOST_KEY_CHECKING': '0',
        'ANSIBLE_RETRY_FILES_ENABLED': '0',
        'ANSIBLE_DEPRECATION_WARNINGS': '0',
        'ANSIBLE_LOCALHOST_WARNING': '0',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': '0',
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
        'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',
        'ANSIBLE_CALLBACK_PLUGINS': str(_callback_dir()),
        'ANSIBLE_CALLBACKS_ENABLED': _CALLBACK_NAME,
        # No ~/.aws of the test user leaks in.
        'AWS_CONFIG_FILE': os.devnull,
        'AWS_SHARED_CREDENTIALS_FILE': os.devnull,
        'AWS_EC2_METADATA_DISABLED': 'true',
    })
    env.update(extra_env or {})
    return env


def run_ansible(program: str, args: Sequence[str | os.PathLike[str]], emulator: Any, *, extra_env: Mapping[str, str] | None = None,
                timeout: float = DEFAULT_TIMEOUT, cwd: str | os.PathLike[str] | None = None) -> AnsibleRun:
    """Run an Ansible CLI program of this Python's environment and collect its output and task results."""
    with tempfile.TemporaryDirectory(prefix='cloudexec-ansible-run-') as tmp:
        record_file = Path(tmp) / 'record.jsonl'
        env = ansible_env(emulator, extra_env)
        env['CLOUDEXEC_RECORD_FILE'] = str(record_file)
        env.setdefault('ANSIBLE_LOCAL_TEMP', str(Path(tmp) / 'local-tmp'))
        argv = [str(BIN_DIR / program), *map(str, args)]
        started = time.monotonic()
        proc = subprocess.run(argv, env=env, cwd=cwd or INTEGRATION_DIR, capture_output=True, timeout=timeout, check=False)
        duration = time.monotonic() - started
        records = [json.loads(line) for line in record_file.read_text(encoding='utf-8').splitlines()] if record_file.exists() else []
    return AnsibleRun(argv=argv, rc=proc.returncode, stdout=proc.stdout.decode('utf-8', errors='replace'),
                      stderr=proc.stderr.decode('utf-8', errors='replace'), duration=duration, records=records)


def ansible_adhoc(emulator: Any, module: str, module_args: str | Mapping[str, Any], *args: str, hosts: str = 'localhost',
                  **kwargs: Any) -> AnsibleRun:
    """``ansible HOSTS -m MODULE -a ARGS``; a mapping of arguments is passed as JSON."""
    arg_text = module_args if isinstance(module_args, str) else json.dumps(dict(module_args))
    return run_ansible('ansible', [hosts, '-m', module, '-a', arg_text, *args], emulator, **kwargs)


def ansible_playbook(emulator: Any, playbook: str | os.PathLike[str], *args: str, extra_vars: Mapping[str, Any] | None = None,
                     **kwargs: Any) -> AnsibleRun:
    """``ansible-playbook PLAYBOOK [-e JSON] ARGS``; a relative playbook is looked up in playbooks/."""
    path = Path(playbook)
    if not path.is_absolute():
        path = PLAYBOOKS / path
    argv: list[str] = [str(path)]
    if extra_vars:
        argv += ['-e', json.dumps(dict(extra_vars))]
    return run_ansible('ansible-playbook', [*argv, *args], emulator, **kwargs)


def collections_path() -> str:
    """Where ansible finds cloudexec.core: ANSIBLE_COLLECTIONS_PATH, else the tree conftest.py put on sys.path."""
    for entry in [*os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep), *sys.path]:
        if entry and (Path(entry) / 'ansible_collections' / 'cloudexec' / 'core').is_dir():
            return entry
    raise RuntimeError('cloudexec.core is not in any collections path')


def cli(name: str) -> str:
    """An Ansible program of this Python's environment."""
    found = shutil.which(name, path=str(BIN_DIR)) or shutil.which(name)
    if not found:
        raise RuntimeError(f'{name} is not installed')
    return found


def plain(value: Any) -> Any:
    """ansible-inventory --list JSON with unsafe markers ({"__ansible_unsafe": x}) replaced by their values."""
    if isinstance(value, dict):
        if set(value) == {'__ansible_unsafe'}:
            return value['__ansible_unsafe']
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# ---- molecule scenarios of the roles ------------------------------------------------------------


@dataclass
class MoleculeRun:
    """How a role's molecule scenario ran: ``molecule`` (``molecule test``) or ``ansible-playbook`` (its playbooks)."""

    tool: str
    output: str
    ephemeral_dir: Path | None = None   # MOLECULE_EPHEMERAL_DIRECTORY of the ansible-playbook runs
    runs: list[AnsibleRun] = field(default_factory=list)


def molecule_inventory(scenario: Path, path: Path) -> Path:
    """The inventory molecule makes for a delegated-driver scenario (managed: false).

    Its platforms, each with the driver's ansible_connection_options and its provisioner.inventory host_vars, and the
    group_vars of ``all``.
    """
    config = yaml.safe_load((scenario / 'molecule.yml').read_text())
    connection = config['driver'].get('options', {}).get('ansible_connection_options', {})
    inventory = config['provisioner'].get('inventory', {})
    host_vars = inventory.get('host_vars', {})
    hosts = {p['name']: {**connection, **host_vars.get(p['name'], {})} for p in config['platforms']}
    path.write_text(yaml.safe_dump({'all': {'hosts': hosts, 'vars': inventory.get('group_vars', {}).get('all', {})}}))
    return path


def molecule_test(emulator: Any, role_dir: Path, work_dir: Path, extra_env: Mapping[str, str] | None = None, *,
                  scenario: str = 'default', timeout: float = DEFAULT_TIMEOUT) -> MoleculeRun:
    """Run a role's molecule scenario against the emulator; fails the test when it fails.

    With ``molecule test`` when molecule is installed next to this Python (tests/requirements.txt has it); else the
    scenario's test_sequence with ansible-playbook and the inventory molecule would make: syntax, converge,
    idempotence (converge again: nothing may change) and verify. The fallback's MOLECULE_EPHEMERAL_DIRECTORY is
    ``work_dir/ephemeral``.
    """
    directory = role_dir / 'molecule' / scenario
    steps = [step for step in yaml.safe_load((directory / 'molecule.yml').read_text()).get('scenario', {}).get('test_sequence')
             or ['syntax', 'converge', 'idempotence', 'verify'] if step in ('syntax', 'converge', 'idempotence', 'verify')]
    molecule = shutil.which('molecule', path=str(BIN_DIR))
    if molecule:
        env = ansible_env(emulator, {**(extra_env or {}), 'NO_COLOR': '1',
                                     'PATH': f'{BIN_DIR}{os.pathsep}{os.environ.get("PATH", "")}'})
        env.pop('ANSIBLE_CALLBACKS_ENABLED', None)   # molecule's own ansible.cfg and output
        proc = subprocess.run([molecule, 'test', '-s', scenario], cwd=role_dir, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        output = f'{proc.stdout}\n{proc.stderr}'
        assert proc.returncode == 0, output
        for step in steps:
            assert f'{scenario} > {step}' in output, f'molecule did not run {step}\n{output}'
        return MoleculeRun(tool='molecule', output=output)

    ephemeral = work_dir / 'ephemeral'
    ephemeral.mkdir(parents=True, exist_ok=True)
    env = {**(extra_env or {}), 'MOLECULE_EPHEMERAL_DIRECTORY': str(ephemeral), 'MOLECULE_SCENARIO_DIRECTORY': str(directory)}
    inventory = molecule_inventory(directory, work_dir / 'molecule-inventory.yml')
    result = MoleculeRun(tool='ansible-playbook', output='', ephemeral_dir=ephemeral)
    for step in steps:   # create, destroy, cleanup...: nothing to do for targets that exist already
        playbook = directory / ('verify.yml' if step == 'verify' else 'converge.yml')
        args = ['-i', str(inventory)] + (['--syntax-check'] if step == 'syntax' else [])
        run = ansible_playbook(emulator, playbook, *args, extra_env=env, timeout=timeout)
        result.runs.append(run)
        result.output += f'--- {step}\n{run.output}\n'
        assert run.rc == 0, f'{step} failed\n{run.output}'
        if step == 'idempotence':
            changed = sorted(host for host, stats in run.stats.items() if stats.get('changed'))
            assert not changed, f'idempotence: a second converge changed {changed}\n{run.output}'
    return result


# ---- session brokers of the aws_ecs / ali_eci connections ----------------------------------------


def broker_request(path: Path, header: dict[str, Any]) -> dict[str, Any] | None:
    """One request to the broker listening on path (None when nobody answers)."""
    from ansible_collections.cloudexec.core.plugins.plugin_utils.broker import recv_message, send_message, sockaddr  # pylint: disable=import-outside-toplevel

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        try:
            sock.connect(sockaddr(str(path)))
            send_message(sock, header)
            return recv_message(sock)[0]
        except OSError:
            return None


def broker_stats(control_dir: Path) -> list[dict[str, Any]]:
    """The 'stats' of every broker with a socket in control_dir (pid, sessions_opened, requests, commands)."""
    found = []
    for sock in sorted(control_dir.glob('*.sock')) if control_dir.is_dir() else []:
        stats = broker_request(sock, {'op': 'stats'})
        if stats is not None:
            found.append(dict(stats, socket=str(sock)))
    return found


def alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_brokers(control_dir: Path) -> list[int]:
    """Stop every broker of control_dir (asked first, then killed by the pid it reported); their pids."""
    pids = [int(stats['pid']) for stats in broker_stats(control_dir)]
    for sock in control_dir.glob('*.sock') if control_dir.is_dir() else []:
        broker_request(sock, {'op': 'stop'})
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def refused_endpoint() -> str:
    """http://127.0.0.1:PORT where nothing listens: a port the kernel just gave out, closed again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    return f'http://127.0.0.1:{port}'


@contextlib.contextmanager
def silent_endpoint():
    """http://127.0.0.1:PORT that accepts connections (the kernel's backlog does) and never answers a byte."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen(64)
        yield f'http://127.0.0.1:{sock.getsockname()[1]}'
