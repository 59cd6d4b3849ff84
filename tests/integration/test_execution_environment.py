# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ansible-builder accepts our execution environment files (no container engine here: `create` only).

- docs/awx/execution-environment.yml (version 3) names the collection; built from a checkout, with the collection
  tarball as an additional build file, `ansible-builder create` writes a context whose galaxy requirements install it.
- meta/execution-environment.yml is the collection's own dependency file: during the build, the context's
  introspect.py reads it from the installed collection and collects requirements.txt and bindep.txt. We run that same
  script on the installed collection and check it lists every line of both files.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from helpers import BIN_DIR

REPO = Path(__file__).resolve().parents[2]
EE_FILE = REPO / 'docs' / 'awx' / 'execution-environment.yml'


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN_DIR)) or shutil.which(name)
    if not found:
        pytest.skip(f'{name} is not installed (tests/requirements.txt lists it)')
    return found


def _collection_root() -> Path:
    """The collection tree ansible uses (the copy tests/ci builds), else the checkout."""
    for entry in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep):
        candidate = Path(entry) / 'ansible_collections' / 'cloudexec' / 'core' if entry else None
        if candidate and candidate.is_dir():
            return candidate
    return REPO


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith('#')]


def test_collection_metadata_points_at_existing_files():
    """meta/execution-environment.yml: dependencies relative to the collection root, as builder's introspection wants."""
    meta = yaml.safe_load((REPO / 'meta' / 'execution-environment.yml').read_text())
    assert meta['dependencies'] == {'python': 'requirements.txt', 'system': 'bindep.txt'}
    assert all((REPO / name).is_file() for name in meta['dependencies'].values())


def test_builder_create_context(tmp_path):
    """ansible-builder create on our v3 definition, with the collection built from this tree; then introspection."""
    builder = _tool('ansible-builder')
    galaxy = _tool('ansible-galaxy')
    root = _collection_root()

    build = subprocess.run([galaxy, 'collection', 'build', str(root), '--output-path', str(tmp_path)],
                           capture_output=True, text=True, timeout=120, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    tarball = next(tmp_path.glob('cloudexec-core-*.tar.gz'))

    definition = yaml.safe_load(EE_FILE.read_text())
    assert definition['version'] == 3
    assert definition['dependencies']['galaxy'] == {'collections': [{'name': 'cloudexec.core'}]}
    # As docs/awx/execution-environment.yml says for a build from a checkout.
    definition['dependencies']['galaxy'] = {'collections': [{'name': f'/build/collections/{tarball.name}', 'type': 'file'}]}
    definition['additional_build_files'] = [{'src': tarball.name, 'dest': 'collections'}]
    ee_file = tmp_path / 'execution-environment.yml'
    ee_file.write_text(yaml.safe_dump(definition))

    context = tmp_path / 'context'
    create = subprocess.run([builder, 'create', '-f', str(ee_file), '-c', str(context), '-v', '3'], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    assert create.returncode == 0, create.stdout + create.stderr
    listing = sorted(str(p.relative_to(context)) for p in context.rglob('*') if p.is_file())
    print('\n'.join(listing))   # the context, for the report (pytest -s)
    containerfile = next(context / name for name in ('Containerfile', 'Dockerfile') if (context / name).is_file())
    assert f'_build/collections/{tarball.name}' in listing
    assert yaml.safe_load((context / '_build' / 'requirements.yml').read_text()) == definition['dependencies']['galaxy']
    text = containerfile.read_text()
    assert 'ansible-galaxy collection install' in text and 'introspect.py introspect' in text
    assert 'ansible-core>=2.16,<2.20' in text

    # What the build's "builder" stage does once the collection is installed: introspect it.
    installed = tmp_path / 'installed'
    target = installed / 'ansible_collections' / 'cloudexec' / 'core'
    target.mkdir(parents=True)
    with tarfile.open(tarball) as archive:
        if hasattr(tarfile, 'data_filter'):
            archive.extractall(target, filter='data')
        else:  # Python < 3.11.4: our own tarball, just built
            archive.extractall(target)  # noqa: S202
    introspect = subprocess.run([sys.executable, str(context / '_build' / 'scripts' / 'introspect.py'), 'introspect',
                                 str(installed)], capture_output=True, text=True, timeout=60, check=False)
    assert introspect.returncode == 0, introspect.stdout + introspect.stderr
    print(introspect.stdout)
    found = yaml.safe_load(introspect.stdout)
    python = [line.split('#')[0].strip() for line in found['python']]
    system = [line.split('#')[0].strip() for line in found['system']]
    assert python == _lines(REPO / 'requirements.txt')
    assert system == _lines(REPO / 'bindep.txt')
    assert all(line.endswith('# from collection cloudexec.core') for line in found['python'] + found['system'])
