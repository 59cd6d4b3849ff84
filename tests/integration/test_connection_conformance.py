# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared connection conformance suite: the same cases through every connection, pipelining on and off.

Like ansible-core's test/integration/targets/connection and community.docker's shared connection tests. One emulator
for the module (the default world with ECS Exec's start-up cut, plus the suite's own targets), one ansible-playbook run
of playbooks/connection_conformance/ per connection (all at once: their waits overlap), over four hosts:
``pipelining`` and ``no-pipelining`` run every case, ``password-pipelining`` and ``password-no-pipelining`` (targets
whose sudo asks for a password) the become password cases. Each (connection, case, pipelining) is one test that judges that run's results, so a failure names
exactly what broke; every task of the playbook may fail without stopping the others.

Cases (the prefix of each task's name in the playbook): setup (facts); raw; command_shell (stdout, stderr and rc apart,
CR kept, 3 MB of output, an argv, 10 KB lines); stdin (given, and end of file when none is); file_names (unicode,
spaces, a tab, quotes, brackets, ``;&|$()`` and glob characters, a leading dash: copy and fetch back); file_sizes (0
and 1 byte, each transfer boundary of the connection and one byte more through its own put_file and fetch_file, and
10 MiB of random bytes through copy and fetch, on the host without pipelining only: moving files does not depend on
it); fetch_missing (fetch with fail_on_missing, and the connection's fetch_file); modules (script,
template, copy, lineinfile, stat, slurp, file); become (sudo and su without a password); become_password (sudo -S,
also with a module on the same stdin); become_password_errors and become_password_missing; async (async_status, and
polled); wait_for_connection; reset_connection.

Adding a connection: one entry in CONNECTIONS, as the SSM connection for EC2 instances has::

    'aws_ssm': Conformance('cloudexec.core.aws_ssm', aws_ssm_target, stream_boundaries),

where ``ssm_instance_target(world, index, password)`` adds one target to the suite's world (a dict of the world
file; ``password`` is the become password its sudo asks for, or None) and returns a ``Target``: the host vars that
reach it and its sandbox under the emulator's ``sandboxes/`` directory (its HOME). The boundaries function returns
the file sizes where the transport splits a transfer, computed from the transport's own constants (import them
inside the function). The emulator's fake sudo asks for a password where the world gives the target a
``become_password`` (tests/emulator/README.md, "Fake sudo and su"). A case that fails through one connection because of
a bug of its plugin goes into KNOWN_FAILURES (strict: the fix makes the test fail until the entry is removed).
"""
from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator
from cloudexec_emulator.world import DEFAULT_WORLD

from helpers import AnsibleRun, ansible_playbook, stop_brokers

PLAYBOOK_DIR = Path(__file__).resolve().parent / 'playbooks' / 'connection_conformance'
BECOME_PASSWORD = 'Conformance-Become-Pass-1'
REMOTE_DIR = 'conformance 汉语 dir'
MAIN_HOSTS = {'pipelining': True, 'no-pipelining': False}
PASSWORD_HOSTS = {'password-pipelining': True, 'password-no-pipelining': False}
# Awkward names for the file transfer: unicode, spaces and a tab, both quotes, brackets of every kind, a leading dash,
# shell metacharacters and glob characters (the file module's case also uses the last).
FILE_NAMES = ['汉语 café ✓ with  two spaces and a\ttab.txt', 'single \' and double " quotes, brackets [a] (b) {c} <d>.txt',
              '-dash; semicolon& ampersand| pipe $(echo sub) `tick` glob*?[!x].txt']
TEN_MIB = 10 * 1024 * 1024
# The 10 MiB file goes through the copy and fetch modules on one host of the two (Ansible's default, without
# pipelining): put_file and fetch_file do not depend on pipelining. Every other size goes through both, by the
# connection's own put_file and fetch_file (the modules around them cost more time than the transfers).
BIG_FILE_HOST = 'no-pipelining'
BIG_OUTPUT = ''.join(f'{number}\n' for number in range(1, 470001))   # `seq 1 470000`: 3.03 MiB


# ---- the connections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One host of the suite: the host vars that reach it and its sandbox (HOME) under the emulator's sandboxes/."""

    host_vars: dict[str, Any]
    sandbox: tuple[str, ...]


@dataclass(frozen=True)
class Conformance:
    """How the suite makes hosts of one connection: its plugin, its targets in the world, its transfer boundaries."""

    plugin: str
    # (world dict, index of the host, become password or None) -> the Target it added to the world.
    target: Callable[[dict[str, Any], int, 'str | None'], Target]
    # {boundary name: (size in bytes, 'binary' or 'text')}: where the transport splits a file it moves.
    boundaries: Callable[[], dict[str, tuple[int, str]]]
    # Environment of the run (options set for every host of this connection).
    env: dict[str, str] = field(default_factory=dict)


def aws_ecs_target(world: dict[str, Any], index: int, password: str | None) -> Target:
    """A one-container task of the suite's ECS cluster."""
    clusters = world['aws']['clusters']
    cluster = next((c for c in clusters if c['name'] == 'conformance'), None)
    if cluster is None:
        cluster = {'name': 'conformance', 'tasks': []}
        clusters.append(cluster)
    task_id = f'c0f0{index:028x}'
    container: dict[str, Any] = {'name': 'app'}
    if password is not None:
        container['become_password'] = password
    cluster['tasks'].append({'id': task_id, 'family': f'conformance-{index}', 'containers': [container]})
    return Target({'ansible_aws_ecs_cluster': 'conformance', 'ansible_aws_ecs_task': task_id, 'ansible_aws_ecs_container': 'app'},
                  ('aws-ecs', task_id, 'app'))


def ali_eci_target(world: dict[str, Any], index: int, password: str | None) -> Target:
    """A one-container ECI container group, reached by its id as the host address."""
    group_id = f'eci-conformance{index:07d}'
    container: dict[str, Any] = {'name': 'app'}
    if password is not None:
        container['become_password'] = password
    world['alicloud']['container_groups'].append({'id': group_id, 'name': f'conformance-{index}', 'containers': [container]})
    return Target({'ansible_host': group_id}, ('ali-eci', group_id, 'app'))


def ali_assist_target(world: dict[str, Any], index: int, password: str | None) -> Target:
    """An ECS instance with Cloud Assistant online, reached by its id as the host address.

    With output_quota at the documented 24 KB, which the world's service keeps: half the pages of the default for large
    outputs and fetches (the default quota and the learning of a lower one: test_connection_ali_assist.py).
    """
    instance_id = f'i-conformance{index:08d}'
    instance: dict[str, Any] = {'id': instance_id, 'name': f'conformance-{index}'}
    if password is not None:
        instance['become_password'] = password
    world['alicloud']['instances'].append(instance)
    assert world['alicloud']['assist']['log_quota'] >= _assist_quota()
    return Target({'ansible_host': instance_id, 'ansible_ali_assist_output_quota': _assist_quota()}, ('ali-ecs', instance_id))


RUN_AS_DOCUMENT = 'Conformance-RunAsShell'


def aws_ssm_target(world: dict[str, Any], index: int, password: str | None) -> Target:
    """An EC2 managed node, named by ansible_aws_ssm_instance_id as an amazon.aws.aws_ssm inventory names it.

    ssm-user's sudo never asks for a password (the agent's sudoers entry), so a node whose sudo asks has its sessions
    run as ec2-user, through a Run As session document of the suite. The agent's start-up is cut as ECS Exec's is.
    """
    world['aws'].setdefault('ssm', {}).update(agent_start_ms=10, output_delay_ms=20)
    node_id = f'i-0c0f{index:013x}'
    node: dict[str, Any] = {'id': node_id, 'name': f'conformance-{index}'}
    host_vars = {'ansible_aws_ssm_instance_id': node_id}
    user = 'ssm-user'
    if password is not None:
        node.update(users=['ec2-user'], become_password=password)
        documents = world['aws'].setdefault('session_documents', [])
        if not any(d['name'] == RUN_AS_DOCUMENT for d in documents):
            documents.append({'name': RUN_AS_DOCUMENT, 'content': {
                'sessionType': 'Standard_Stream', 'inputs': {'runAsEnabled': True, 'runAsDefaultUser': 'ec2-user'}}})
        host_vars['ansible_aws_ssm_document'] = RUN_AS_DOCUMENT
        user = 'ec2-user'
    world['aws']['managed_nodes'].append(node)
    return Target(host_vars, ('aws-ssm', node_id, 'home', user))


def _assist_quota() -> int:
    from ansible_collections.cloudexec.core.plugins.module_utils import cloud_assistant  # pylint: disable=import-outside-toplevel

    return cloud_assistant.OUTPUT_LIMIT


def stream_boundaries() -> dict[str, tuple[int, str]]:
    """The stream transports (SSM data channel, ECI websocket) move files in chunks of file_transfer.CHUNK_SIZE."""
    from ansible_collections.cloudexec.core.plugins.plugin_utils import file_transfer  # pylint: disable=import-outside-toplevel

    return {'chunk': (file_transfer.CHUNK_SIZE, 'binary')}


def assist_boundaries() -> dict[str, tuple[int, str]]:
    """Cloud Assistant: a put goes in pieces (text or Base64) of one RunCommand each, a fetch in pages of the host's quota."""
    from ansible_collections.cloudexec.core.plugins.plugin_utils import ali_assist_pieces as ap  # pylint: disable=import-outside-toplevel
    from ansible_collections.cloudexec.core.plugins.plugin_utils import ali_assist_transport as at  # pylint: disable=import-outside-toplevel

    return {'text-piece': (ap.TEXT_PIECE, 'text'), 'binary-piece': (ap.BINARY_PIECE, 'binary'),
            'page': (at.page_size(_assist_quota()), 'binary')}


# One line per connection. aws_ssm runs with warm_python on (pipelined modules in children of a warm interpreter on
# the target): the option goes through the whole suite, while aws_ecs, on the same PersistentShell and data channel,
# keeps the fresh interpreter covered.
CONNECTIONS: dict[str, Conformance] = {
    'aws_ecs': Conformance('cloudexec.core.aws_ecs', aws_ecs_target, stream_boundaries),
    'ali_eci': Conformance('cloudexec.core.ali_eci', ali_eci_target, stream_boundaries),
    'ali_assist': Conformance('cloudexec.core.ali_assist', ali_assist_target, assist_boundaries),
    'aws_ssm': Conformance('cloudexec.core.aws_ssm', aws_ssm_target, stream_boundaries, env={'CLOUDEXEC_WARM_PYTHON': '1'}),
}

# (connection, case, pipelining or None for both) -> what is wrong and where: the test must fail until it is fixed.
KNOWN_FAILURES: dict[tuple[str, str, bool | None], str] = {
}


# ---- the emulator and one run per connection ------------------------------------------------------


def _world() -> tuple[dict[str, Any], dict[str, dict[str, Target]]]:
    """The default world with ECS Exec's start-up cut, plus four targets per connection: {connection: {host: Target}}."""
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['aws']['exec'] = {'agent_start_ms': 10, 'output_delay_ms': 20}
    targets: dict[str, dict[str, Target]] = {}
    index = 0
    for name, connection in CONNECTIONS.items():
        targets[name] = {}
        for host in [*MAIN_HOSTS, *PASSWORD_HOSTS]:
            index += 1
            targets[name][host] = connection.target(world, index, BECOME_PASSWORD if host in PASSWORD_HOSTS else None)
    return world, targets


@dataclass
class SuiteRun:
    """One connection's run of the suite, and what the cases compare it with."""

    connection: str
    run: AnsibleRun
    homes: dict[str, Path]          # host -> its sandbox (HOME)
    local_names: Path
    local_sizes: Path
    fetched: Path                   # fetched files: fetched/<host>/names|sizes/<name>
    sizes: list[str] = field(default_factory=list)   # the files of the file_sizes case (local_sizes/<name>)
    big_file: Path | None = None

    def remote_dir(self, host: str) -> Path:
        return self.homes[host] / REMOTE_DIR


class Suite:
    """The module's emulator and the runs of the connections (one each, all at once when the first test needs one)."""

    def __init__(self, emulator, targets: dict[str, dict[str, Target]], work: Path, control_dir: Path) -> None:
        self.emulator = emulator
        self.targets = targets
        self.work = work
        self.control_dir = control_dir
        self.runs: dict[str, SuiteRun] = {}
        self.local_names = work / 'names'
        self.local_names.mkdir()
        for name in FILE_NAMES:
            (self.local_names / name).write_bytes(f'{name}\n'.encode())
        self.ten_mib = work / 'size-10MiB.bin'
        self.ten_mib.write_bytes(os.urandom(TEN_MIB))

    def run(self, connection: str) -> SuiteRun:
        """The run of this connection; the first call runs every connection at once (their waits overlap)."""
        if not self.runs:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(CONNECTIONS)) as pool:
                self.runs = dict(zip(CONNECTIONS, pool.map(self._run, CONNECTIONS)))
        return self.runs[connection]

    def _local_sizes(self, connection: str) -> Path:
        """0 and 1 byte, each boundary of the connection's transport and one byte more (text or random bytes)."""
        directory = self.work / connection / 'sizes'
        directory.mkdir(parents=True)
        files = {'size-0.bin': b'', 'size-1.bin': os.urandom(1)}
        for boundary, (size, kind) in CONNECTIONS[connection].boundaries().items():
            for extra in (0, 1):
                data = b't' * (size + extra) if kind == 'text' else os.urandom(size + extra)
                files[f'{boundary}-{size + extra}.{"txt" if kind == "text" else "bin"}'] = data
        for name, data in files.items():
            (directory / name).write_bytes(data)
        return directory

    def _run(self, connection: str) -> SuiteRun:
        targets = self.targets[connection]
        state = Path(self.emulator['state_dir']) / 'sandboxes'
        homes = {host: state.joinpath(*target.sandbox) for host, target in targets.items()}
        local_sizes = self._local_sizes(connection)
        sizes = sorted(p.name for p in local_sizes.iterdir())
        fetched = self.work / connection / 'fetched'
        for host in MAIN_HOSTS:
            (fetched / host / 'sizes').mkdir(parents=True)
        hosts = {host: {**target.host_vars, 'ansible_pipelining': {**MAIN_HOSTS, **PASSWORD_HOSTS}[host],
                        'remote_dir': str(homes[host] / REMOTE_DIR), 'sizes': sizes,
                        'big_file': str(self.ten_mib) if host == BIG_FILE_HOST else ''}
                 for host, target in targets.items()}
        inventory = self.work / connection / 'inventory.yml'
        inventory.write_text(yaml.safe_dump({'all': {
            'children': {'conformance': {'hosts': {h: hosts[h] for h in MAIN_HOSTS}},
                         'conformance_password': {'hosts': {h: hosts[h] for h in PASSWORD_HOSTS}}},
            'vars': {'ansible_connection': CONNECTIONS[connection].plugin, 'ansible_python_interpreter': sys.executable}}},
            allow_unicode=True))
        run = ansible_playbook(self.emulator, PLAYBOOK_DIR / 'connection_conformance.yml', '-i', str(inventory), '--forks', '2',
                               extra_env={'CLOUDEXEC_CONTROL_DIR': str(self.control_dir / connection), **CONNECTIONS[connection].env},
                               timeout=1200,
                               extra_vars={'names': FILE_NAMES, 'local_names': str(self.local_names),
                                           'local_sizes': str(local_sizes), 'local_dest': str(fetched), 'password': BECOME_PASSWORD})
        stop_brokers(self.control_dir / connection)
        # Kept for a look after a failure (pytest keeps the last runs' temporary directories).
        (self.work / connection / 'run.json').write_text(json.dumps({'output': run.output, 'records': run.records}, ensure_ascii=False))
        print(f'{connection}: the conformance run took {run.duration:.1f} s')
        return SuiteRun(connection=connection, run=run, homes=homes, local_names=self.local_names, local_sizes=local_sizes,
                        fetched=fetched, sizes=sizes, big_file=self.ten_mib)


@pytest.fixture(scope='module')
def suite(tmp_path_factory):
    """The suite's emulator, and the runs of its connections."""
    directory = tmp_path_factory.mktemp('conformance')
    world, targets = _world()
    path = directory / 'world.yml'
    path.write_text(yaml.safe_dump(world, allow_unicode=True))
    control = Path(tempfile.mkdtemp(prefix='ce-cf-'))   # short: Unix socket paths are limited
    with start_emulator(world=path, state_dir=directory / 'state') as info:
        try:
            yield Suite(info, targets, directory, control / 'cp')
        finally:
            for connection in CONNECTIONS:
                stop_brokers(control / 'cp' / connection)
            shutil.rmtree(control, ignore_errors=True)


# ---- judging results ------------------------------------------------------------------------------


def ok(suite_run: SuiteRun, task: str, host: str) -> dict[str, Any]:
    record = suite_run.run.record(task, host)
    assert record['status'] == 'ok', f'{task}: {str(record)[:4000]}'
    return record['result']


def failed(suite_run: SuiteRun, task: str, host: str) -> dict[str, Any]:
    record = suite_run.run.record(task, host)
    assert record['status'] == 'failed', f'{task}: {str(record)[:4000]}'
    return record['result']


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def same_file(left: Path, right: Path) -> bool:
    return left.stat().st_size == right.stat().st_size and sha256(left.read_bytes()) == sha256(right.read_bytes())


# ---- the cases ----------------------------------------------------------------------------------------


def case_setup(s: SuiteRun, host: str) -> None:
    """Facts gathered through the connection: the target's HOME and the interpreter that ran the module."""
    facts = ok(s, 'setup: facts', host)['ansible_facts']
    assert facts['ansible_env']['HOME'] == str(s.homes[host])
    assert facts['ansible_python']['executable'] == sys.executable
    assert facts['ansible_system'] == 'Linux' and facts['ansible_user_dir']


def case_raw(s: SuiteRun, host: str) -> None:
    """raw: unicode, exact bytes (CR and trailing newlines kept, no echo of the command), stderr apart, the rc."""
    raw = ok(s, 'raw: unicode argument and output', host)
    assert (raw['stdout'], raw['stderr'], raw['rc'], raw['changed']) == ('汉语 café\n', '', 0, True)
    exact = ok(s, 'raw: stdout, stderr and rc apart, CR kept', host)
    assert (exact['stdout'], exact['stderr'], exact['rc']) == ('a\r\nb\r', 'e1\r\n\n', 3)
    assert ok(s, 'raw: a 10 KB single-line command', host)['stdout'].strip() == '10240'


def case_command_shell(s: SuiteRun, host: str) -> None:
    """command and shell: stdout, stderr and rc apart, CR kept, every argv word intact, 3 MB of output, long lines."""
    assert ok(s, 'command_shell: command', host)['stdout'] == 'x'
    assert ok(s, 'command_shell: command with an argv', host)['stdout'] == "[a b][it's][$HOME][*][][汉语]"
    shell = ok(s, 'command_shell: shell with stdout, stderr and rc apart, CR kept', host)
    assert (shell['stdout'], shell['stderr'], shell['rc']) == ('o1\r\no2\ro3', 'e1\r\ne2', 4)
    big = ok(s, 'command_shell: 3 MB of output', host)
    assert len(big['stdout']) == len(BIG_OUTPUT) - 1 and sha256(big['stdout'].encode()) == sha256(BIG_OUTPUT[:-1].encode())
    assert (big['stderr'], big['rc']) == ('big-stderr', 0)
    assert ok(s, 'command_shell: a 10 KB single-line module argument', host)['stdout'] == 'z' * 10240


def case_stdin(s: SuiteRun, host: str) -> None:
    """A command's stdin: the module's stdin argument reaches it exactly; without one it reads end of file at once
    (it must neither hang nor read what the connection sends next)."""
    assert ok(s, 'stdin: shell with a stdin argument', host)['stdout'] == 'line one\n汉语 é\r\nlast line|end'
    assert ok(s, 'stdin: command with a stdin argument and the newline added', host)['stdout'].strip() == '6'
    assert ok(s, 'stdin: raw that reads stdin gets end of file', host)['stdout'] == '[eof rc=0]\n'
    assert ok(s, "stdin: a module's command that reads stdin gets end of file", host)['stdout'] == '[eof rc=0]'
    assert ok(s, 'stdin: the next command after them', host)['stdout'] == 'still-here\n'


def case_file_names(s: SuiteRun, host: str) -> None:
    """Files with awkward names arrive byte-identical on the target and come back byte-identical."""
    copies = ok(s, 'file_names: copy', host)['results']
    assert [r['item'] for r in copies] == FILE_NAMES and all(r['changed'] for r in copies), copies
    fetches = ok(s, 'file_names: fetch back', host)['results']
    assert [r['item'] for r in fetches] == FILE_NAMES and all(r['changed'] for r in fetches), fetches
    for name in FILE_NAMES:
        local = s.local_names / name
        assert (s.remote_dir(host) / name).read_bytes() == local.read_bytes(), name
        assert (s.fetched / host / 'names' / name).read_bytes() == local.read_bytes(), name
    assert sorted(p.name for p in s.remote_dir(host).iterdir() if p.name in FILE_NAMES) == sorted(FILE_NAMES)


def case_file_sizes(s: SuiteRun, host: str) -> None:
    """0 and 1 byte, each transfer boundary of the connection and one byte more, through its put_file and fetch_file;
    10 MiB of random bytes through copy and fetch (on BIG_FILE_HOST): byte-identical there and back, nothing left over."""
    transfers = ok(s, 'file_sizes: put and fetch back through the connection', host)['transfers']
    assert [t['name'] for t in transfers] == s.sizes and len(s.sizes) >= 4, transfers
    assert [t for t in transfers if t['error']] == []
    for name in s.sizes:
        local = s.local_sizes / name
        assert same_file(s.remote_dir(host) / name, local), name
        assert same_file(s.fetched / host / 'sizes' / name, local), name
    if host == BIG_FILE_HOST:
        copied = ok(s, 'file_sizes: copy a big file', host)
        assert copied['changed'] and copied['checksum'] == sha1(s.big_file), copied
        fetched = ok(s, 'file_sizes: fetch the big file back', host)
        assert fetched['changed'] and fetched['checksum'] == sha1(s.big_file), fetched
        assert same_file(s.remote_dir(host) / 'big.bin', s.big_file)
        assert same_file(s.fetched / host / 'big.bin', s.big_file)
    leftovers = [p.name for d in (s.remote_dir(host), s.fetched / host / 'sizes', s.fetched / host) for p in d.iterdir()
                 if 'cloudexec' in p.name or p.name.endswith('.part')]
    assert not leftovers, leftovers


def case_fetch_missing(s: SuiteRun, host: str) -> None:
    """fetch of a missing file fails with fail_on_missing; the connection's own fetch_file says the file is not there
    (AnsibleFileNotFound) and leaves nothing behind."""
    missing = failed(s, 'fetch_missing: with fail_on_missing', host)
    assert 'does not exist' in missing['msg'], missing
    direct = ok(s, "fetch_missing: the connection's fetch_file", host)
    assert direct['error_type'] == 'AnsibleFileNotFound', direct
    assert 'missing file.txt' in direct['error'] and ('does not exist' in direct['error'] or 'not found' in direct['error']), direct
    assert not direct['dest_exists'] and not list((s.fetched / host).glob('missing-*'))


def case_modules(s: SuiteRun, host: str) -> None:
    """script, template, copy content, lineinfile (idempotent), stat, slurp and file modes (an awkward name)."""
    remote = s.remote_dir(host)
    script = ok(s, 'modules: script with arguments', host)
    assert (script['stdout'], script['stderr'], script['rc']) == ('args: <arg one> <two>\n', 'script-stderr\n', 0)
    assert ok(s, 'modules: template', host)['changed'] is True
    assert (remote / 'templated.txt').read_text() == f'host={host}\nremote_dir={remote}\nunicode=汉语 café €\n'
    assert ok(s, 'modules: copy unicode content', host)['changed'] is True
    content = remote / 'content-汉语.txt'
    assert content.read_text() == '汉语 café € 😀\n' and stat.S_IMODE(content.stat().st_mode) == 0o600
    assert ok(s, 'modules: lineinfile (first)', host)['changed'] is True
    assert ok(s, 'modules: lineinfile (second)', host)['changed'] is False
    assert (remote / 'lines.txt').read_text() == 'key = value\n'
    found = ok(s, 'modules: stat', host)['stat']
    assert found['exists'] and found['size'] == len(content.read_bytes()) and found['checksum'] == sha256(content.read_bytes())
    assert base64.b64decode(ok(s, 'modules: slurp', host)['content']) == content.read_bytes()
    assert ok(s, 'modules: file mode on a name with a leading dash', host)['changed'] is True
    assert stat.S_IMODE((remote / FILE_NAMES[-1]).stat().st_mode) == 0o600


def case_become(s: SuiteRun, host: str) -> None:
    """become without a password: sudo (a command, raw, a module), su to another user, through the emulator's fakes."""
    home = s.homes[host]
    assert ok(s, 'become: sudo', host)['stdout'] == 'sudo:root\nroot'
    assert ok(s, 'become: su to another user', host)['stdout'] == 'su:nobody\nnobody'
    raw = ok(s, 'become: raw with sudo', host)
    assert raw['stdout'] == 'sudo:root\n' and raw['stderr'] == 'raw-err\n', raw
    assert ok(s, 'become: a module (copy) with sudo', host)['changed'] is True
    assert (s.remote_dir(host) / 'become.txt').read_text() == 'as root\n'
    log = (home / '.cloudexec-become.log').read_text().splitlines()
    assert set(log) == {'sudo user=root password=no', 'su user=nobody password=no'}, log


def case_become_password(s: SuiteRun, host: str) -> None:
    """become with a password: sudo -S gets it on stdin (with the module behind it when pipelining), the prompt never
    reaches the command's stderr."""
    home = s.homes[host]
    assert ok(s, 'become_password: sudo', host)['stdout'] == 'sudo:root\nroot'
    facts = ok(s, 'become_password: sudo to another user, gathering facts', host)['ansible_facts']
    assert facts['ansible_user_id'] == 'nobody' and facts['ansible_env']['CLOUDEXEC_EMULATOR_BECOME'] == 'sudo:nobody'
    raw = ok(s, 'become_password: raw with sudo keeps stdout and stderr apart from the prompt', host)
    assert raw['stdout'] == 'raw-out\n' and raw['stderr'] == 'raw-err\n', raw
    assert ok(s, 'become_password: a module (copy) with sudo', host)['changed'] is True
    assert (home / 'become-copy.txt').read_text() == 'written with sudo\n'
    log = (home / '.cloudexec-become.log').read_text().splitlines()
    # Every command that ran under sudo had its password checked.
    assert log and set(log) == {'sudo user=root password=yes', 'sudo user=nobody password=yes'}, log


def case_become_password_errors(s: SuiteRun, host: str) -> None:
    """A wrong password fails the task saying so, as ansible-core's connections do; su cannot take a password without a
    terminal and says so. Neither command ran."""
    home = s.homes[host]
    wrong = failed(s, 'become_password_errors: a wrong password', host)
    assert 'Incorrect sudo password' in wrong['msg'], wrong
    su = failed(s, 'become_password_errors: su with a password', host)
    assert 'cannot answer the password prompt of become_method su' in su['msg'], su
    assert not (home / 'must-not-run-wrong').exists() and not (home / 'must-not-run-su').exists()


def case_become_password_missing(s: SuiteRun, host: str) -> None:
    """No password where sudo asks for one: the task fails saying so (as ansible-core's connections do), nothing ran."""
    missing = failed(s, 'become_password_missing: no password where one is needed', host)
    assert 'Missing sudo password' in missing['msg'], missing
    assert not (s.homes[host] / 'must-not-run-missing').exists()


def case_async(s: SuiteRun, host: str) -> None:
    """async: fire and forget then async_status; and polled."""
    assert ok(s, 'async: without polling', host)['started'] == 1
    status = ok(s, 'async: async_status', host)
    assert status['finished'] == 1 and status['rc'] == 0 and status['stdout'] == 'async-done', status
    assert ok(s, 'async: with polling', host)['stdout'] == 'polled'


def case_wait_for_connection(s: SuiteRun, host: str) -> None:
    assert ok(s, 'wait_for_connection: wait', host)['elapsed'] < 60


def case_reset_connection(s: SuiteRun, host: str) -> None:
    """meta: reset_connection, and the next task works."""
    assert ok(s, 'reset_connection: before', host)['stdout'] == 'before-reset\n'
    assert ok(s, 'reset_connection: after', host)['stdout'] == 'after-reset\n'


# case -> (check, whether it runs on the hosts whose sudo asks for a password)
CASES: dict[str, tuple[Callable[[SuiteRun, str], None], bool]] = {
    'setup': (case_setup, False),
    'raw': (case_raw, False),
    'command_shell': (case_command_shell, False),
    'stdin': (case_stdin, False),
    'file_names': (case_file_names, False),
    'file_sizes': (case_file_sizes, False),
    'fetch_missing': (case_fetch_missing, False),
    'modules': (case_modules, False),
    'become': (case_become, False),
    'become_password': (case_become_password, True),
    'become_password_errors': (case_become_password_errors, True),
    'become_password_missing': (case_become_password_missing, True),
    'async': (case_async, False),
    'wait_for_connection': (case_wait_for_connection, False),
    'reset_connection': (case_reset_connection, False),
}


def _params():
    for connection in CONNECTIONS:
        for case in CASES:
            for pipelining in (True, False):
                reason = KNOWN_FAILURES.get((connection, case, pipelining)) or KNOWN_FAILURES.get((connection, case, None))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                yield pytest.param(connection, case, pipelining, marks=marks,
                                   id=f'{connection}-{case}-{"pipelining" if pipelining else "no-pipelining"}')


@pytest.mark.parametrize(('connection', 'case', 'pipelining'), list(_params()))
def test_conformance(suite, connection, case, pipelining):
    check, on_password_hosts = CASES[case]
    host = ('password-' if on_password_hosts else '') + ('pipelining' if pipelining else 'no-pipelining')
    check(suite.run(connection), host)


def test_every_task_is_judged():
    """Every task of the playbook belongs to a case (its name starts with it), and every case has tasks."""
    plays = yaml.safe_load((PLAYBOOK_DIR / 'connection_conformance.yml').read_text())
    prefixes = {task['name'].split(':')[0] for play in plays for task in play['tasks'] if task['name'] != 'Close the session'}
    assert prefixes == set(CASES)


def test_the_warm_interpreter_served_the_warm_run(suite):
    """The connection run with warm_python started the warm interpreter on its pipelining host (its socket and its
    own copy of the module_utils zip are there), and no other run did."""
    for connection, conformance in CONNECTIONS.items():
        warm = suite.run(connection).homes['pipelining'] / '.cache' / 'cloudexec-pieces' / 'warm'
        started = bool(list(warm.glob('warm-*.sock'))) and bool(list(warm.glob('warm-[0-9]*.zip')))
        assert started == ('CLOUDEXEC_WARM_PYTHON' in conformance.env), (connection, sorted(p.name for p in warm.glob('*')))
