# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cloudexec emulator: a local AWS ECS / Alibaba ECS+ECI endpoint for the cloudexec.core tests and demo."""
from __future__ import annotations
