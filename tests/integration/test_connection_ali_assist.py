# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ali_assist connection plugin through real ``ansible`` / ``ansible-playbook`` runs against the emulator.

What is particular to Cloud Assistant: the inventory, unreachable agents, timeouts and StopInvocation, throttling,
containers, API calls per task, the piece cache, output quotas, piece and page counts. The cases every connection
passes (commands, files of every boundary size, become, async...) are in test_connection_conformance.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml
from cloudexec_emulator.testing import start_emulator
from cloudexec_emulator.world import DEFAULT_WORLD

from helpers import ansible_adhoc, ansible_playbook, run_ansible

CONNECTION = 'cloudexec.core.ali_assist'
WEB = 'i-bp1demo000000000001'
DB = 'i-bp1demo000000000002'
OFFLINE = 'i-bp1demo000000000003'
STOPPED = 'i-bp1demo000000000004'


def sandbox(emu, instance: str) -> Path:
    return Path(emu['state_dir']) / 'sandboxes' / 'ali-ecs' / instance


def ecs_calls(emu) -> dict:
    return emu.admin('GET', 'calls')['calls'].get('ali-ecs', {})


def write_inventory(tmp_path: Path, hosts: dict, **group_vars) -> Path:
    path = tmp_path / 'hosts.yml'
    path.write_text(yaml.safe_dump({'all': {'children': {'target': {'hosts': hosts}},
                                            'vars': {'ansible_connection': CONNECTION, **group_vars}}}))
    return path


def adhoc(emu, tmp_path: Path, module: str, args: str, host_vars: dict | None = None, *extra: str, **group_vars):
    inventory = write_inventory(tmp_path, {'web': host_vars or {'ansible_host': WEB}}, **group_vars)
    return ansible_adhoc(emu, module, args, '-i', str(inventory), *extra, hosts='web')


def test_inventory_feeds_the_connection(emu, tmp_path):
    config = tmp_path / 'demo.ali_ecs.yml'
    config.write_text(yaml.safe_dump({'plugin': 'cloudexec.core.ali_ecs', 'compose': {'ansible_pipelining': True}}))
    # Both hosts at once, in workers forked after the inventory used the API: each must get its own answers
    # (the Tea SDK's pooled socket, inherited by both, once crossed them; see alicloud._forget_inherited_connections).
    run = run_ansible('ansible', ['os_linux', '-f', '5', '-i', str(config), '-m', 'command', '-a', 'echo {{ ali_ecs.instance_name }}'],
                      emu, timeout=400)
    assert run.rc == 0, run.output
    outputs = {r['host']: r['result']['stdout'] for r in run.results}
    assert outputs == {WEB: 'web-01', DB: 'db-01'}


def test_agent_offline_and_stopped_are_unreachable_with_a_remedy(emu, tmp_path):
    inventory = write_inventory(tmp_path, {'legacy': {'ansible_host': OFFLINE}, 'stopped': {'ansible_host': STOPPED}})
    run = ansible_adhoc(emu, 'raw', 'touch should-not-exist', '-i', str(inventory), hosts='target')
    assert run.rc == 4, run.output
    results = {r['host']: r for r in run.results}
    assert {r['status'] for r in results.values()} == {'unreachable'}
    assert 'ClientNotRunning' in results['legacy']['result']['msg'] and 'agent is online' in results['legacy']['result']['msg']
    # The API refuses the call for an instance that cannot run the command (InvalidInstance.NotMatch), before anything runs.
    stopped = results['stopped']['result']['msg']
    assert 'InvalidInstance.NotMatch' in stopped and 'is Stopped, not Running' in stopped and 'nothing was run' in stopped, stopped
    assert not (sandbox(emu, OFFLINE) / 'should-not-exist').exists()


def test_command_over_its_timeout_is_stopped(emu, tmp_path):
    started = time.monotonic()
    run = adhoc(emu, tmp_path, 'raw', 'echo started; sleep 60', None, ansible_ali_assist_command_timeout=3)
    assert run.rc != 0 and time.monotonic() - started < 30, run.output
    msg = run.results[0]['result']['msg']
    assert 'did not finish within command_timeout (3 s)' in msg, msg
    # StopInvocation made the emulated agent kill the main process only (`sh -c <script file>`, as the real one does):
    # what the script started lives on until the transport's own end script ends it, by its tree or by its process group.
    assert 'it was ended' in msg, msg
    assert ecs_calls(emu)['StopInvocation'] == 1
    assert processes_in(sandbox(emu, WEB), 'sleep 60') == []


def processes_in(directory: Path, command: str) -> list[int]:
    """The processes running this command line with their working directory in directory (not another test run's)."""
    found = []
    for proc in Path('/proc').iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / 'cmdline').read_bytes().rstrip(b'\0').replace(b'\0', b' ')
            if cmdline == command.encode() and Path(os.readlink(proc / 'cwd')).is_relative_to(directory):
                found.append(int(proc.name))
        except OSError:
            continue   # gone meanwhile, or not ours to look at
    return found


def test_throttling_mid_poll_recovers(emu, tmp_path):
    emu.admin('POST', 'faults', [{'service': 'ali-ecs', 'action': 'DescribeInvocationResults', 'throttle': 3},
                                 {'service': 'ali-ecs', 'action': 'RunCommand', 'throttle': 1}])
    run = adhoc(emu, tmp_path, 'raw', 'sleep 1; echo fine')
    assert run.rc == 0, run.output
    assert run.results[0]['result']['stdout'] == 'fine\n'
    errors = emu.admin('GET', 'calls')['errors']['ali-ecs']
    assert errors == {'DescribeInvocationResults': {'Throttling.User': 3}, 'RunCommand': {'Throttling.User': 1}}


def test_container_target(emu, tmp_path):
    run = adhoc(emu, tmp_path, 'raw', 'echo in-container; pwd', {'ansible_host': WEB, 'ansible_ali_assist_container_name': 'app'})
    assert run.rc == 0, run.output
    lines = run.results[0]['result']['stdout'].splitlines()
    assert lines[0] == 'in-container' and lines[1].endswith('/ali-ecs-containers/' + WEB + '/app')


def test_no_secrets_at_vvvv(emu, tmp_path):
    run = adhoc(emu, tmp_path, 'command', 'echo hi', None, '-vvvv')
    assert run.rc == 0, run.output
    assert emu['alicloud']['secret_key'] not in run.stdout + run.stderr
    assert 'ALI ASSIST: API calls for this command' in run.stdout


def test_polls_per_command_stay_few_on_a_20_task_play(emu, tmp_path):
    # The seconds against -c local are `make bench`'s (benchmarks/run.py); here only what does not depend on load.
    emu.admin('POST', 'calls/reset')
    remote_dir = sandbox(emu, WEB) / 'bench'
    inventory = write_inventory(tmp_path, {'web': {'ansible_host': WEB}}, ansible_pipelining=True)
    run = ansible_playbook(emu, 'ali_assist_bench.yml', '-i', str(inventory), extra_vars={'remote_dir': str(remote_dir)}, timeout=400)
    assert run.rc == 0, run.output
    calls = ecs_calls(emu)
    # Adaptive back-off, one DescribeInvocationResults per check; nothing is stopped on a play that goes well.
    assert calls['DescribeInvocationResults'] <= 8 * 20 and 'StopInvocation' not in calls, calls


def test_module_code_goes_once_and_arguments_never_stay(emu, tmp_path):
    """The piece cache: a module's code is kept on the instance from its first task; every later task of that module is
    one RunCommand carrying its argument piece. Argument pieces are never kept, not even when they repeat."""
    inventory = write_inventory(tmp_path, {'web': {'ansible_host': WEB}}, ansible_pipelining=True)
    play = tmp_path / 'play.yml'
    arguments = [0, 1, 2, 2]   # the last task repeats its arguments: the same piece twice is still never kept
    play.write_text(yaml.safe_dump([{'name': 'four tasks, one module', 'hosts': 'web', 'gather_facts': False, 'tasks': [
        {'name': f'echo {index}', 'ansible.builtin.command': {'argv': ['echo', f'argument-{number}-kept-nowhere']}}
        for index, number in enumerate(arguments)]}]))
    before = ecs_calls(emu).get('RunCommand', 0)
    run = ansible_playbook(emu, play, '-i', str(inventory), '-vvv', extra_env={'CLOUDEXEC_CONTROL_DIR': str(tmp_path / 'cp')},
                           timeout=300)
    assert run.rc == 0, run.output
    assert [run.result(f'echo {index}')['stdout'] for index in range(4)] == [f'argument-{number}-kept-nowhere' for number in arguments]
    staged = [(int(sent), int(inside), int(cached)) for sent, inside, cached in re.findall(
        r'ALI ASSIST: staged \d+ bytes: (\d+) piece\(s\) sent \((\d+) inside the command\), (\d+) already on the target', run.output)]
    assert len(staged) == 4, run.output[-3000:]
    # 1st: every piece of the module (~170 KB in pieces of 4-18 KB), some inside the command; later: the argument
    # lines only, inside the command, the rest named.
    assert staged[0][0] > 8 and staged[0][2] == 0, staged
    assert all(sent == inside <= 2 and cached >= staged[0][0] - 2 for sent, inside, cached in staged[1:]), staged
    # One RunCommand per task once the module is there (the first: its pieces that did not fit inside, plus itself).
    assert ecs_calls(emu)['RunCommand'] - before == (staged[0][0] - staged[0][1]) + 1 + 3
    cache = sandbox(emu, WEB) / '.cache' / 'cloudexec-pieces'
    kept = list(cache.iterdir())
    assert len(kept) >= staged[0][0] - 2
    assert not any(b'kept-nowhere' in path.read_bytes() for path in kept)


@pytest.fixture(scope='module', params=[6000, 12000, 24000, 24576])
def quota_emulator(request, tmp_path_factory):
    """The default world with Cloud Assistant keeping this many bytes of output (the agent's floor lowered for 6000)."""
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['alicloud']['assist'] = {'log_quota': request.param, 'agent_min_quota': min(request.param, 12000)}
    path = tmp_path_factory.mktemp(f'quota{request.param}') / 'world.yml'
    path.write_text(yaml.safe_dump(world))
    with start_emulator(world=path) as info:
        info.quota = request.param
        yield info


def test_large_outputs_under_every_output_quota(quota_emulator, tmp_path, control_dir):
    """Facts, a module result over 200 KB, a 50 KB raw output and a 1 MB fetch, pipelining on and off, whatever the
    quota from 6000 bytes up: the host whose output_quota is above the service's learns the lower one and goes on."""
    emu, quota = quota_emulator, quota_emulator.quota
    inventory = write_inventory(tmp_path, {
        'piped': {'ansible_host': WEB, 'ansible_pipelining': True},
        'plain': {'ansible_host': DB, 'ansible_pipelining': False, 'ansible_ali_assist_output_quota': 24576}})
    raw = ''.join(f'{n}\n' for n in range(1, 10401))
    (tmp_path / 'fetched').mkdir()
    run = ansible_playbook(emu, 'ali_assist_quota.yml', '-i', str(inventory), '-f', '2', extra_env={'CLOUDEXEC_CONTROL_DIR': str(control_dir)},
                           extra_vars={'fetch_dir': str(tmp_path / 'fetched'), 'raw_size': len(raw),
                                       'raw_sha1': hashlib.sha1(raw.encode()).hexdigest()}, timeout=400)
    assert run.rc == 0, run.output
    for host, instance in (('piped', WEB), ('plain', DB)):
        assert (tmp_path / 'fetched' / f'{host}.bin').read_bytes() == (sandbox(emu, instance) / 'quota-big.bin').read_bytes()
    # What the service keeps was learned where the configured quota was higher, and remembered for later tasks.
    learned = {path.read_text().strip() for path in control_dir.glob('assist-*.quota')}
    expected = {str(quota)} if quota < 24576 else set()
    assert learned == expected, (learned, quota)
    errors = emu.admin('GET', 'calls')['errors']
    assert 'Throttling' not in json.dumps(errors) and not errors.get('ali-ecs'), errors


def boundary_files() -> dict[str, bytes]:
    """Files of exactly one piece (text and binary), one page (of the default output quota), and one byte over each."""
    from ansible_collections.cloudexec.core.plugins.plugin_utils import ali_assist_pieces as ap  # pylint: disable=import-outside-toplevel
    from ansible_collections.cloudexec.core.plugins.plugin_utils import ali_assist_transport as at  # pylint: disable=import-outside-toplevel

    page = at.page_size(at.DEFAULT_QUOTA)
    return {'empty': b'', 'text-piece': b't' * ap.TEXT_PIECE, 'text-piece-1': b't' * (ap.TEXT_PIECE + 1),
            'binary-piece': os.urandom(ap.BINARY_PIECE), 'binary-piece-1': os.urandom(ap.BINARY_PIECE + 1),
            'page': os.urandom(page), 'page-1': os.urandom(page + 1)}


def test_boundary_sized_files_through_the_transport(emu, tmp_path):
    """put_file and fetch_file of every boundary size against the emulator, with the real SDK."""
    from ansible_collections.cloudexec.core.plugins.module_utils import alicloud  # pylint: disable=import-outside-toplevel
    from ansible_collections.cloudexec.core.plugins.plugin_utils import ali_assist_transport as at  # pylint: disable=import-outside-toplevel

    ali = emu['alicloud']
    auth = alicloud.AlicloudAuth(alicloud_access_key=ali['access_key'], alicloud_secret_key=ali['secret_key'],
                                 alicloud_region=ali['region'], ecs_endpoint=ali['ecs_endpoint'])
    transport = at.AssistTransport(alicloud.ecs_client(auth), auth, at.Target(instance_id=WEB))
    remote = sandbox(emu, WEB) / 'transport-boundaries'
    remote.mkdir(exist_ok=True)
    for name, data in boundary_files().items():
        (tmp_path / name).write_bytes(data)
        stats = transport.put_file(str(tmp_path / name), str(remote / name))
        assert (remote / name).read_bytes() == data, name
        assert stats['pieces'] == {'empty': 0, 'text-piece': 1, 'text-piece-1': 2, 'binary-piece': 1,
                                   'binary-piece-1': 2}.get(name, stats['pieces']), (name, stats)
        fetched = transport.fetch_file(str(remote / name), str(tmp_path / f'{name}.back'))
        assert (tmp_path / f'{name}.back').read_bytes() == data, name
        assert fetched['pages'] == {'empty': 0, 'page': 1, 'page-1': 2}.get(name, fetched['pages']), (name, fetched)
