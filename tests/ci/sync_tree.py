# Copyright: cloudexec.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copy the checkout's files to DEST (.cache/collections/ansible_collections/cloudexec/core).

ansible-test only runs inside a directory named .../ansible_collections/<namespace>/<name>. A symlink to
the checkout is not enough: ansible-test and pytest resolve it back to the real path, and the unit tests
then fail with 'File ... not found in collection path'. So the tests run on a fresh copy made before
every run. It holds what git would commit (tracked plus untracked, not ignored files, as they are on
disk now), so local state such as .venv or tests/output never reaches ansible-test.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

# Used when the checkout is not a git work tree (e.g. an unpacked source archive).
_SKIP_DIRS = {'.git', '.venv', '.cache', '.pytest_cache', '__pycache__', '.tox', '.mypy_cache'}


def _files(root: pathlib.Path) -> list[str]:
    """Return the relative paths of the files to copy."""
    try:
        out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                             cwd=root, capture_output=True, check=True).stdout
        return sorted({name for name in out.decode('utf-8').split('\0') if name})
    except (OSError, subprocess.CalledProcessError):
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel = pathlib.Path(dirpath).relative_to(root)
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and (rel / d).as_posix() != 'tests/output']
            files.extend((rel / name).as_posix() for name in filenames if not name.endswith(('.pyc', '.pyo')))
        return sorted(files)


def main() -> int:
    """Replace DEST with a copy of the checkout at ROOT."""
    root = pathlib.Path(sys.argv[1]).resolve()
    dest = pathlib.Path(sys.argv[2])

    if dest.is_symlink() or dest.is_file():
        dest.unlink()  # an older layout used a symlink here
    elif dest.exists():
        shutil.rmtree(dest)

    dest.mkdir(parents=True)
    copied = 0

    for name in _files(root):
        source = root / name
        target = dest / name

        if not source.is_symlink() and not source.exists():
            continue  # tracked but deleted in the work tree: the copy mirrors the disk

        target.parent.mkdir(parents=True, exist_ok=True)

        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        elif source.is_file():
            shutil.copy2(source, target)  # keeps the mode: the shebang sanity test checks execute bits
        else:
            continue

        copied += 1

    print('collection tree: %d files copied to %s' % (copied, dest))
    return 0


if __name__ == '__main__':
    sys.exit(main())
