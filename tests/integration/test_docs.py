# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every plugin's documentation renders with ansible-doc, antsibull-docs finds nothing to complain about, and the roles and
playbooks meet ansible-lint's production profile (what Galaxy and Automation Hub users check)."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLUGIN_TYPES = {'modules': 'module', 'connection': 'connection', 'inventory': 'inventory'}


def collections_path() -> str:
    """Where ansible finds this collection (tests/ci sets ANSIBLE_COLLECTIONS_PATH)."""
    return os.environ.get('ANSIBLE_COLLECTIONS_PATH') or str(REPO / '.cache' / 'collections')


def plugins() -> list[tuple[str, str]]:
    found = []
    for folder, kind in PLUGIN_TYPES.items():
        for path in sorted((REPO / 'plugins' / folder).glob('*.py')):
            if not path.name.startswith('_'):
                found.append((kind, path.stem))
    return found


@pytest.mark.parametrize('kind, name', plugins())
def test_ansible_doc_renders(kind, name):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run([str(BIN / 'ansible-doc'), '-t', kind, f'cloudexec.core.{name}'], env=env, capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f'cloudexec.core.{name}' in proc.stdout
    assert 'EXAMPLES:' in proc.stdout
    assert '[WARNING]' not in proc.stderr, proc.stderr


def ansible_doc_json(kind: str, name: str) -> dict:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run([str(BIN / 'ansible-doc'), '--json', '-t', kind, f'cloudexec.core.{name}'], env=env, capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[f'cloudexec.core.{name}']['doc']


@pytest.mark.parametrize('kind, name, endpoint', [
    ('connection', 'ali_assist', 'ecs_endpoint'), ('connection', 'ali_eci', 'eci_endpoint'),
    ('inventory', 'ali_ecs', 'ecs_endpoint'), ('inventory', 'ali_eci', 'eci_endpoint'),
])
def test_each_alibaba_plugin_documents_only_the_endpoint_it_uses(kind, name, endpoint):
    options = ansible_doc_json(kind, name)['options']
    assert sorted(option for option in options if option.endswith('_endpoint')) == [endpoint]
    assert options[endpoint]['vars'] == [{'name': f'ansible_alicloud_{endpoint}'}]


# Semantic markup whose argument runs to the first unescaped ")": a ")" inside must be written "\\)".
_MARKUP = re.compile(r'\b(?:V|C|O|RV|E|I|M|P|L|U)\(')


def _doc_texts():
    """(file, text) of every string in the DOCUMENTATION, RETURN and doc fragments of the collection."""
    for path in sorted((REPO / 'plugins').glob('*/*.py')):
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                names = [target.id for target in node.targets if isinstance(target, ast.Name)]
                if names and (names[0] in ('DOCUMENTATION', 'RETURN') or path.parent.name == 'doc_fragments' and names[0].isupper()):
                    yield from ((path.name, text) for text in _strings(yaml.safe_load(node.value.value)))


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _unbalanced_markup(text: str) -> list[str]:
    found = []
    for match in _MARKUP.finditer(text):
        end = match.end()
        while end < len(text) and not (text[end] == ')' and text[end - 1] != '\\'):
            end += 1
        content = text[match.end():end].replace('\\)', ')').replace('\\(', '(')
        if content.count('(') != content.count(')'):
            found.append(text[match.start():end + 1])
    return found


def test_markup_arguments_escape_their_closing_parentheses():
    """V(rate(5m)) renders as "rate(5m" followed by a stray ")": it must be V(rate(5m\\)); found in every doc string."""
    texts = list(_doc_texts())
    assert len(texts) > 500
    bad = [(name, markup) for name, text in texts for markup in _unbalanced_markup(text)]
    assert bad == []
    assert _unbalanced_markup('for example V(rate(5m)) or V(x)') == ['V(rate(5m)']
    assert _unbalanced_markup('for example V(rate(5m\\)) or C(f(x\\))') == []


def test_plugins_are_found():
    kinds = {kind for kind, _name in plugins()}
    assert kinds == {'module', 'connection', 'inventory'}


def test_antsibull_docs_lint():
    collection = Path(collections_path()) / 'ansible_collections' / 'cloudexec' / 'core'
    env = dict(os.environ, PATH=f'{BIN}{os.pathsep}{os.environ.get("PATH", "")}', ANSIBLE_COLLECTIONS_PATH=collections_path())
    proc = subprocess.run([str(BIN / 'antsibull-docs'), 'lint-collection-docs', '--plugin-docs', str(collection)], env=env,
                          capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_production_profile():
    lint = BIN / 'ansible-lint'
    if not lint.exists():
        pytest.skip('ansible-lint is not installed (tests/requirements.txt)')
    collection = Path(collections_path()) / 'ansible_collections' / 'cloudexec' / 'core'
    env = dict(os.environ, PATH=f'{BIN}{os.pathsep}{os.environ.get("PATH", "")}', ANSIBLE_COLLECTIONS_PATH=collections_path(),
               NO_COLOR='1')
    proc = subprocess.run([str(lint), '--offline', '--profile', 'production', '--format', 'pep8', 'roles/', 'playbooks/'],
                          cwd=collection, env=env, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Passed' in proc.stdout + proc.stderr
