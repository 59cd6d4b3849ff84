# Copyright: cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release artifact works: `ansible-galaxy collection build` makes a tarball without local state,
`ansible-galaxy collection install` installs it, and its plugins load from the installed copy."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import typing as t

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((ROOT / 'galaxy.yml').read_text(encoding='utf-8'))
FQCN = '%s.%s' % (GALAXY['namespace'], GALAXY['name'])

# Local state that must never reach a release tarball.
FORBIDDEN_PREFIXES = ('.venv/', '.cache/', 'tests/output/', '.git/', '.pytest_cache/')

# Plugin directories whose plugins ansible-doc can list, and the type name ansible-doc uses for them.
DOC_TYPES = {
    'modules': 'module',
    'connection': 'connection',
    'inventory': 'inventory',
    'lookup': 'lookup',
    'filter': 'filter',
    'callback': 'callback',
}


def _tool(name: str) -> str:
    """Return the ansible CLI installed next to this Python (the venv's), else the one on PATH."""
    local = pathlib.Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)

    if not found:
        pytest.fail('%s is not installed' % name)

    return found


def _run(args: list[str], env: dict[str, str], cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output when it exits non-zero."""
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)

    if result.returncode:
        pytest.fail('%s exited %d\nstdout:\n%s\nstderr:\n%s' % (' '.join(args), result.returncode, result.stdout, result.stderr))

    return result


def _plugin_files(kind: str) -> list[pathlib.Path]:
    """Return the plugin sources of one kind in the checkout, relative to the collection root."""
    base = ROOT / 'plugins' / kind

    if not base.is_dir():
        return []

    return sorted(
        path.relative_to(ROOT) for path in base.rglob('*.py')
        if '__pycache__' not in path.parts and path.name != '__init__.py'
    )


class Installed(t.NamedTuple):
    """The built tarball and where it was installed."""

    tarball: pathlib.Path
    collections_path: pathlib.Path
    collection_dir: pathlib.Path
    env: dict[str, str]
    cwd: pathlib.Path


@pytest.fixture(scope='module')
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the collection and install the tarball into an empty collections path."""
    build_dir = tmp_path_factory.mktemp('build')
    collections_path = tmp_path_factory.mktemp('collections')
    # Run from a neutral directory: inside the checkout (an ansible_collections tree in CI) ansible would
    # also find the collection next to the working directory and the test would prove nothing.
    cwd = tmp_path_factory.mktemp('cwd')

    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(collections_path),  # the installed copy and nothing else
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='False',
        ANSIBLE_HOME=str(tmp_path_factory.mktemp('ansible_home')),
        ANSIBLE_NOCOLOR='1',
    )

    _run([_tool('ansible-galaxy'), 'collection', 'build', str(ROOT), '--output-path', str(build_dir)], env, cwd)
    tarballs = list(build_dir.glob('*.tar.gz'))
    assert [path.name for path in tarballs] == ['%s-%s-%s.tar.gz' % (GALAXY['namespace'], GALAXY['name'], GALAXY['version'])]

    _run([_tool('ansible-galaxy'), 'collection', 'install', str(tarballs[0]), '-p', str(collections_path)], env, cwd)
    collection_dir = collections_path / 'ansible_collections' / GALAXY['namespace'] / GALAXY['name']

    return Installed(tarballs[0], collections_path, collection_dir, env, cwd)


def test_tarball_has_no_local_state(installed: Installed) -> None:
    """Virtualenvs, tool caches and test output stay out of the release."""
    with tarfile.open(installed.tarball) as tar:
        names = tar.getnames()

    assert 'MANIFEST.json' in names
    assert 'FILES.json' in names
    leaked = [name for name in names if name.startswith(FORBIDDEN_PREFIXES) or name + '/' in FORBIDDEN_PREFIXES]
    assert not leaked, 'local state in the tarball: %s' % leaked[:20]
    assert not [name for name in names if '__pycache__' in name.split('/')]


def test_installed_files(installed: Installed) -> None:
    """The install holds the manifest with our version and every plugin source of the checkout."""
    manifest = json.loads((installed.collection_dir / 'MANIFEST.json').read_text(encoding='utf-8'))
    assert manifest['collection_info']['version'] == GALAXY['version']
    assert (installed.collection_dir / 'meta' / 'runtime.yml').is_file() or not (ROOT / 'meta' / 'runtime.yml').exists()

    expected = [path for kind in sorted(p.name for p in (ROOT / 'plugins').iterdir() if p.is_dir()) for path in _plugin_files(kind)]
    missing = [str(path) for path in expected if not (installed.collection_dir / path).is_file()]
    assert not missing, 'not installed: %s' % missing

    listing = _run([_tool('ansible-galaxy'), 'collection', 'list', FQCN], installed.env, installed.cwd)
    assert FQCN in listing.stdout
    assert str(installed.collections_path) in listing.stdout


@pytest.mark.parametrize('plugin_type', sorted(set(DOC_TYPES.values())))
def test_ansible_doc_lists_installed_plugins(installed: Installed, plugin_type: str) -> None:
    """ansible-doc loads each plugin type from the installed copy without errors."""
    kinds = [kind for kind, doc_type in DOC_TYPES.items() if doc_type == plugin_type]
    expected = sorted('%s.%s' % (FQCN, path.stem) for kind in kinds for path in _plugin_files(kind))

    result = _run([_tool('ansible-doc'), '-t', plugin_type, '--list', '--json', FQCN], installed.env, installed.cwd)
    listed = sorted(json.loads(result.stdout))

    assert listed == expected
    # ansible-doc reports plugins that fail to load as warnings and still exits 0.
    assert '[ERROR]' not in result.stderr
    assert 'WARNING' not in result.stderr or 'No plugins found' in result.stderr, result.stderr


def _module_utils_names() -> list[str]:
    """Return dotted module names of the checkout's module_utils and doc_fragments."""
    names = []

    for kind in ('module_utils', 'doc_fragments', 'plugin_utils'):
        for path in _plugin_files(kind):
            names.append('.'.join(path.with_suffix('').parts))

    return names or ['(none yet)']


@pytest.mark.parametrize('name', _module_utils_names())
def test_shared_code_imports_from_install(installed: Installed, name: str) -> None:
    """module_utils, plugin_utils and doc fragments import through Ansible's collection loader."""
    if name == '(none yet)':
        pytest.skip('the collection has no module_utils, plugin_utils or doc_fragments yet')

    fqmn = 'ansible_collections.%s.%s.%s' % (GALAXY['namespace'], GALAXY['name'], name)
    code = '\n'.join((
        'import importlib, sys',
        'from ansible.plugins.loader import init_plugin_loader',
        'init_plugin_loader(sys.argv[1:2])',
        'module = importlib.import_module(sys.argv[2])',
        'print(module.__file__)',
    ))
    result = _run([sys.executable, '-c', code, str(installed.collections_path), fqmn], installed.env, installed.cwd)

    loaded_from = pathlib.Path(result.stdout.strip().splitlines()[-1]).resolve()
    assert loaded_from.is_relative_to(installed.collection_dir.resolve()), loaded_from
