# Copyright: cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline stand-in for the get-pip script that ansible-test downloads.

ansible-test bootstraps pip into every virtual environment it creates (one per sanity test) by running
``~/.ansible/test/cache/get_pip_<version>.py`` and, when that file is missing, downloading it from
ci-files.testing.ansible.com, which CI machines here cannot reach. tests/ci/install_get_pip.py copies this
file to that cache path. It is called as ``get-pip.py [pip options] pip==X --no-setuptools --no-wheel``.

This marker line lets install_get_pip.py recognise (and refresh) its own copy: CLOUDEXEC-GET-PIP-STANDIN
"""

from __future__ import annotations

import subprocess
import sys

# get-pip.py understands these two flags itself; `pip install` does not.
_GET_PIP_ONLY_FLAGS = ('--no-setuptools', '--no-wheel')


def main() -> int:
    """Install the bundled pip with ensurepip, then the pip release ansible-test asked for."""
    args = sys.argv[1:]
    pip_args = [arg for arg in args if arg not in _GET_PIP_ONLY_FLAGS]

    # A subprocess, not ensurepip.bootstrap() in this process: ensurepip run in-process drops pip's
    # configuration (PIP_* variables, pip.conf index and find-links settings) for the pip install below.
    # ensurepip installs the wheels bundled with Python, so it needs no network.
    subprocess.run([sys.executable, '-m', 'ensurepip', '--upgrade'], check=True, stdout=subprocess.DEVNULL)

    result = subprocess.run([sys.executable, '-m', 'pip', 'install', *pip_args], check=False)

    if result.returncode:
        return result.returncode

    # ensurepip also installs setuptools on Python < 3.12; the real get-pip leaves it out when asked, and
    # ansible-test asks so that sanity environments only hold what their requirements list.
    if '--no-setuptools' in args:
        subprocess.run([sys.executable, '-m', 'pip', 'uninstall', '--yes', '--quiet', 'setuptools'],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return 0


if __name__ == '__main__':
    sys.exit(main())
