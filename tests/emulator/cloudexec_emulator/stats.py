# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Call counters, so tests can assert how many API calls (and retries) a client really made."""
from __future__ import annotations

import collections
from typing import Any


class CallStats:
    """Counts per service and action: every call received, and every error answered by code."""

    def __init__(self) -> None:
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.errors: collections.Counter[tuple[str, str, str]] = collections.Counter()
        # Websocket events (connections, messages, bytes, drops), filled by the exec paths.
        self.ws: collections.Counter[tuple[str, str]] = collections.Counter()
        # Accepted signatures per algorithm, so tests can prove which signing path a client took.
        self.signatures: collections.Counter[tuple[str, str]] = collections.Counter()

    def count_call(self, service: str, action: str) -> None:
        self.calls[(service, action)] += 1

    def count_error(self, service: str, action: str, code: str) -> None:
        self.errors[(service, action, code)] += 1

    def count_signature(self, service: str, algorithm: str) -> None:
        self.signatures[(service, algorithm)] += 1

    def count_ws(self, service: str, event: str, amount: int = 1) -> None:
        self.ws[(service, event)] += amount

    def reset(self) -> None:
        self.calls.clear()
        self.errors.clear()
        self.ws.clear()
        self.signatures.clear()

    def snapshot(self) -> dict[str, Any]:
        """``{"calls": {service: {action: n}}, "errors": {service: {action: {code: n}}}, "ws": {service: {event: n}},
        "signatures": {service: {algorithm: n}}, "total": n}``."""
        calls: dict[str, dict[str, int]] = {}
        for (service, action), count in sorted(self.calls.items()):
            calls.setdefault(service, {})[action] = count
        errors: dict[str, dict[str, dict[str, int]]] = {}
        for (service, action, code), count in sorted(self.errors.items()):
            errors.setdefault(service, {}).setdefault(action, {})[code] = count
        ws: dict[str, dict[str, int]] = {}
        for (service, event), count in sorted(self.ws.items()):
            ws.setdefault(service, {})[event] = count
        signatures: dict[str, dict[str, int]] = {}
        for (service, algorithm), count in sorted(self.signatures.items()):
            signatures.setdefault(service, {})[algorithm] = count
        return {'calls': calls, 'errors': errors, 'ws': ws, 'signatures': signatures, 'total': sum(self.calls.values())}
