"""Who is changing a service right now: one owner at a time (an operation or a restart).

Operations claim every service they touch up front and fail with Conflict if one is taken;
the supervisor only ever *tries* to claim (a restart waits for the next tick instead).
"""

from __future__ import annotations

import threading

from shipyard.errors import Conflict


class Claims:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[str, str] = {}

    def busy(self, service: str) -> bool:
        with self._lock:
            return service in self._owners

    def claim(self, services: list[str], owner: str) -> None:
        with self._lock:
            taken = {s: self._owners[s] for s in services if s in self._owners}
            if taken:
                detail = ", ".join(f"{s} ({o})" for s, o in taken.items())
                raise Conflict(
                    f"Another operation is in progress on {detail}; wait for it to finish "
                    "(shipyard ps) and try again.",
                    fields={"busy": taken},
                )
            for service in services:
                self._owners[service] = owner

    def try_claim(self, service: str, owner: str) -> bool:
        with self._lock:
            if service in self._owners:
                return False
            self._owners[service] = owner
            return True

    def relabel(self, services: list[str], old: str, new: str) -> None:
        with self._lock:
            for service in services:
                if self._owners.get(service) == old:
                    self._owners[service] = new

    def free(self, services: list[str], owner: str) -> None:
        with self._lock:
            for service in services:
                if self._owners.get(service) == owner:
                    del self._owners[service]
