# Copyright: cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Put get_pip_standin.py where ansible-test looks for its cached get-pip script.

Run with the Python that has ansible-core installed (the .venv). The pip version, and so the cache file
name, comes from the installed ansible-test, so this keeps working when ansible-core changes it.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys
import types

_MARKER = 'CLOUDEXEC-GET-PIP-STANDIN'
_STANDIN = pathlib.Path(__file__).resolve().parent / 'get_pip_standin.py'


def _pip_version() -> str:
    """Return the pip version that ansible-test bootstraps into its virtual environments."""
    python_version = '%d.%d' % sys.version_info[:2]

    try:
        # pylint: disable-next=import-outside-toplevel
        from ansible_test._internal.python_requirements import get_venv_packages

        return get_venv_packages(types.SimpleNamespace(version=python_version))['pip']
    except Exception:  # pylint: disable=broad-exception-caught
        # Private API: if its shape changes, read the pinned version from the source instead.
        import ansible_test  # pylint: disable=import-outside-toplevel

        source = pathlib.Path(ansible_test.__file__).parent / '_internal' / 'python_requirements.py'
        match = re.search(r"\bpip='([0-9.]+)'", source.read_text(encoding='utf-8'))

        if not match:
            raise RuntimeError('cannot find the pip version ansible-test wants in %s' % source) from None

        return match.group(1)


def main() -> int:
    """Install the stand-in unless a real get-pip script is already cached there."""
    version = _pip_version()
    cache = pathlib.Path(os.path.expanduser('~/.ansible/test/cache'))
    target = cache / ('get_pip_%s.py' % version.replace('.', '_'))

    if target.exists() and _MARKER not in target.read_text(encoding='utf-8', errors='replace'):
        # A real get-pip (downloaded on a machine with internet access) works offline too; keep it.
        print('ansible-test pip %s bootstrap: keeping existing %s' % (version, target))
        return 0

    cache.mkdir(parents=True, exist_ok=True)

    if not target.exists() or target.read_bytes() != _STANDIN.read_bytes():
        shutil.copyfile(_STANDIN, target)

    print('ansible-test pip %s bootstrap: %s' % (version, target))
    return 0


if __name__ == '__main__':
    sys.exit(main())
