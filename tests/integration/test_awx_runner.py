# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The demo (playbooks/demo.yml) run through ansible-runner the way AWX runs a job.

AWX writes a private data directory (project/, inventory/, env/envvars, env/settings), injects each credential of
the job template into the job's environment, and calls ansible_runner.run(); the job's events are what its UI shows.
Here: the built-in "Amazon Web Services" credential (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and our Alibaba
custom credential type (docs/awx/credential_type_alicloud.yml, rendered as AWX renders injectors: Jinja in a sandbox,
missing optional fields empty) with the emulator's STS credential, the endpoints as extra environment variables.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from cloudexec_emulator.testing import start_emulator

from helpers import BIN_DIR, ansible_env, stop_brokers

ansible_runner = pytest.importorskip('ansible_runner', reason='ansible-runner is not installed (tests/requirements.txt)')
jinja2_sandbox = pytest.importorskip('jinja2.sandbox')

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WORLD = REPO / 'tests' / 'emulator' / 'cloudexec_emulator' / 'worlds' / 'default.yml'
CREDENTIAL_TYPE = REPO / 'docs' / 'awx' / 'credential_type_alicloud.yml'
CONTAINERS = {'demo-web-web', 'demo-api-app', 'demo-api-sidecar', 'staging-web-web'}


@pytest.fixture(scope='module')
def fast(tmp_path_factory):
    """The default world (the demo's targets) with ECS Exec's start-up delays cut."""
    directory = tmp_path_factory.mktemp('awx-runner')
    world = yaml.safe_load(DEFAULT_WORLD.read_text())
    world['aws']['exec'] = {'agent_start_ms': 10, 'output_delay_ms': 20, 'session_limit': 4}
    (directory / 'world.yml').write_text(yaml.safe_dump(world))
    with start_emulator(world=directory / 'world.yml', state_dir=directory / 'state') as info:
        yield info, world


def inject(credential_type: dict, inputs: dict) -> dict[str, str]:
    """The env injectors of a custom credential type, rendered as AWX does (sandboxed Jinja, missing fields empty)."""
    fields = {field['id'] for field in credential_type['inputs']['fields']}
    missing = set(credential_type['inputs'].get('required', [])) - set(inputs)
    assert not missing, f'AWX would refuse the credential: {missing} required'
    assert set(inputs) <= fields
    env = jinja2_sandbox.ImmutableSandboxedEnvironment()
    return {name: env.from_string(template).render(**inputs) for name, template in credential_type['injectors']['env'].items()}


def test_credential_type_is_awx_shaped():
    """inputs.fields with id/label/type, secrets marked, every injector naming a field."""
    spec = yaml.safe_load(CREDENTIAL_TYPE.read_text())
    assert spec['kind'] == 'cloud' and set(spec) >= {'name', 'inputs', 'injectors'}
    ids = [field['id'] for field in spec['inputs']['fields']]
    assert all({'id', 'label', 'type'} <= set(field) for field in spec['inputs']['fields'])
    secret = {field['id'] for field in spec['inputs']['fields'] if field.get('secret')}
    assert secret == {'alicloud_secret_key', 'alicloud_security_token'}
    assert set(spec['inputs']['required']) <= set(ids)
    assert set(spec['injectors']) == {'env'}
    for name, template in spec['injectors']['env'].items():
        assert name.startswith('ALICLOUD_') and template.strip('{} ') in ids, (name, template)


def job_environment(emu, world: dict, control_dir: Path, out_dir: Path) -> dict[str, str]:
    """The environment AWX gives a job: extra environment variables plus both clouds' credentials injected."""
    sts = next(c for c in world['alicloud']['credentials'] if c.get('security_token'))
    aws = world['aws']['credentials'][0]
    job_env = {
        # "Extra environment variables" of the job (AWX_TASK_ENV): where the clouds are, and the collection path
        # the execution environment would have built in.
        'AWS_ENDPOINT_URL_ECS': emu.env['AWS_ENDPOINT_URL_ECS'],
        'AWS_REGION': emu.env['AWS_REGION'],
        'AWS_DEFAULT_REGION': emu.env['AWS_REGION'],
        'AWS_CONFIG_FILE': '/dev/null',
        'AWS_SHARED_CREDENTIALS_FILE': '/dev/null',
        'AWS_EC2_METADATA_DISABLED': 'true',
        'ANSIBLE_COLLECTIONS_PATH': ansible_env(emu).get('ANSIBLE_COLLECTIONS_PATH', ''),
        'ANSIBLE_PYTHON_INTERPRETER': str(BIN_DIR / 'python'),
        # The EE's ansible-playbook: this environment's.
        'PATH': f'{BIN_DIR}{os.pathsep}{os.environ.get("PATH", "")}',
        # What AWX itself sets for every job.
        'ANSIBLE_HOST_KEY_CHECKING': 'False',
        'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True',
        'ANSIBLE_FORCE_COLOR': 'False',
        'JOB_ID': '42',
        'AWX_HOST': 'https://awx.example.invalid',
        'CLOUDEXEC_CONTROL_DIR': str(control_dir / 'cp'),
        'CLOUDEXEC_DEMO_OUT': str(out_dir),
    }
    # The built-in Amazon Web Services credential type.
    job_env.update({'AWS_ACCESS_KEY_ID': aws['access_key'], 'AWS_SECRET_ACCESS_KEY': aws['secret_key']})
    # Ours, with the emulator's STS credential; endpoints through the optional fields.
    job_env.update(inject(yaml.safe_load(CREDENTIAL_TYPE.read_text()), {
        'alicloud_access_key': sts['access_key_id'], 'alicloud_secret_key': sts['access_key_secret'],
        'alicloud_security_token': sts['security_token'], 'alicloud_region': world['alicloud']['region'],
        'alicloud_ecs_endpoint': emu.env['ALICLOUD_ECS_ENDPOINT'], 'alicloud_eci_endpoint': emu.env['ALICLOUD_ECI_ENDPOINT'],
    }))
    return job_env


def test_demo_through_ansible_runner(fast, tmp_path):
    """private_data_dir → ansible_runner.run → status successful, the events AWX stores, no secret in stdout."""
    emu, world = fast
    sts = next(c for c in world['alicloud']['credentials'] if c.get('security_token'))
    aws = world['aws']['credentials'][0]

    private = tmp_path / 'job'
    shutil.copytree(REPO / 'playbooks', private / 'project', ignore=shutil.ignore_patterns('inventory'))
    shutil.copytree(REPO / 'playbooks' / 'inventory', private / 'inventory')
    control_dir = Path(tempfile.mkdtemp(prefix='ce-awx-'))
    job_env = job_environment(emu, world, control_dir, tmp_path / 'fetched')
    (private / 'env').mkdir()
    (private / 'env' / 'envvars').write_text(yaml.safe_dump(job_env))
    (private / 'env' / 'settings').write_text(yaml.safe_dump({'job_timeout': 170, 'suppress_ansible_output': True}))

    try:
        result = ansible_runner.run(private_data_dir=str(private), playbook='demo.yml', inventory=str(private / 'inventory'),
                                    ident='job-42', quiet=True)
        stdout = result.stdout.read()
        assert (result.status, result.rc) == ('successful', 0), stdout
        events = list(result.events)
        kinds = {event['event'] for event in events}
        assert {'playbook_on_start', 'playbook_on_play_start', 'runner_on_ok', 'playbook_on_stats'} <= kinds
        assert not kinds & {'runner_on_failed', 'runner_on_unreachable'}, stdout
        facts = {e['event_data']['host'] for e in events if e['event'] == 'runner_on_ok'
                 and e['event_data'].get('task') == 'Facts come from inside the container'}
        assert facts == CONTAINERS
        assist = next(e for e in events if e['event'] == 'runner_on_ok'
                      and e['event_data'].get('task') == 'Run a script on ECS instances through Cloud Assistant (RunCommand, polled)')
        assert {r['status'] for r in assist['event_data']['res']['results']} == {'Success'}
        assert result.stats['failures'] == {} and set(result.stats['ok']) == CONTAINERS | {'localhost'}
        # AWX reads the events from the artifacts directory.
        job_events = list((private / 'artifacts' / 'job-42' / 'job_events').glob('*.json'))
        assert len(job_events) == len(events)
        assert (private / 'artifacts' / 'job-42' / 'status').read_text().strip() == 'successful'
        for secret in (aws['secret_key'], sts['access_key_secret'], sts['security_token']):
            assert secret not in stdout
            assert not any(secret in path.read_text() for path in job_events)
    finally:
        stop_brokers(control_dir / 'cp')
        shutil.rmtree(control_dir, ignore_errors=True)


def sliced_inventory(export: dict, slice_number: int, slice_count: int) -> dict:
    """The inventory AWX hands one slice of a sliced job: every slice_count-th host by name, from slice_number.

    AWX stores what the inventory update's ``ansible-inventory --list --export`` printed and renders each job's
    inventory script from it, keeping only the slice's hosts (hosts ordered by name, then [number - 1::count]).
    """
    hosts = sorted(export['_meta']['hostvars'])
    kept = set(hosts[slice_number - 1::slice_count])
    sliced = {'_meta': {'hostvars': {name: hv for name, hv in export['_meta']['hostvars'].items() if name in kept}}}
    for group, data in export.items():
        if group != '_meta':
            sliced[group] = dict(data, hosts=[name for name in data.get('hosts', []) if name in kept])
    return sliced


def test_job_slicing_runs_every_host_once(fast, tmp_path):
    """docs/awx.md's large-fleet recipe: an inventory update, then playbooks/fleet_run.yml as a job template with Job
    Slicing 2; each slice reaches only its own hosts through the exported host vars and writes its own report."""
    emu, world = fast
    control_dir = Path(tempfile.mkdtemp(prefix='ce-slice-'))
    job_env = job_environment(emu, world, control_dir, tmp_path / 'unused')
    # The inventory update: the project's inventory source, credentials injected the same way.
    update = subprocess.run([str(BIN_DIR / 'ansible-inventory'), '-i', str(REPO / 'playbooks' / 'inventory' / 'demo.aws_ecs.yml'),
                             '--list', '--export'], env={**os.environ, **job_env}, capture_output=True, text=True, timeout=120,
                            check=False)
    assert update.returncode == 0, update.stderr
    export = json.loads(update.stdout)
    assert set(export['_meta']['hostvars']) == CONTAINERS
    reports = tmp_path / 'reports'
    try:
        for number in (1, 2):
            private = tmp_path / f'slice-{number}'
            shutil.copytree(REPO / 'playbooks', private / 'project', ignore=shutil.ignore_patterns('inventory'))
            (private / 'inventory').mkdir()
            script = private / 'inventory' / 'hosts'
            script.write_text('#!/bin/sh\ncat <<"EOF"\n' + json.dumps(sliced_inventory(export, number, 2)) + '\nEOF\n')
            script.chmod(0o700)
            (private / 'env').mkdir()
            (private / 'env' / 'envvars').write_text(yaml.safe_dump(dict(job_env, JOB_ID=str(100 + number))))
            (private / 'env' / 'settings').write_text(yaml.safe_dump({'job_timeout': 170, 'suppress_ansible_output': True}))
            result = ansible_runner.run(
                private_data_dir=str(private), playbook='fleet_run.yml', inventory=str(script), ident=f'job-{100 + number}',
                quiet=True, extravars={'awx_job_id': 100 + number, 'fleet_run_report_dir': str(reports),
                                       'fleet_run_report_name': 'fleet_run-{{ awx_job_id }}'})
            assert (result.status, result.rc) == ('successful', 0), result.stdout.read()
    finally:
        stop_brokers(control_dir / 'cp')
        shutil.rmtree(control_dir, ignore_errors=True)
    seen = {}
    for number in (1, 2):
        report = json.loads((reports / f'fleet_run-{100 + number}.json').read_text())
        assert report['summary']['failed'] == 0 and report['summary']['unreachable'] == 0, report['summary']
        seen[number] = {target['host'] for target in report['targets'] if target['status'] == 'ok'}
        for target in report['targets']:
            assert f'checked {target["host"]}' in target['stdout_head'], target
    assert seen[1] and seen[2] and not seen[1] & seen[2]
    assert seen[1] | seen[2] == CONTAINERS
    assert seen[1] == set(sorted(CONTAINERS)[0::2])
