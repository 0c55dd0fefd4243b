"""Talking to a running Key Value server (redis-py, RESP2, one small connection pool).

Contracts:

* every failure is a :class:`~shipyard.errors.RuntimeFailure` whose message says where
  (``Key Value at HOST:PORT``), what was being done and Redis's own words, and whose
  ``fields["reason"]`` is one of ``auth_required`` (no password given, NOAUTH), ``auth_failed``
  (WRONGPASS), ``unreachable``, ``timeout``, ``loading`` (the server is loading its dataset),
  ``exited`` (wait_ready: the process is gone) or ``error`` (any other error reply);
* the password is never in a message, a field or a repr: it is replaced by ``***`` in
  anything the server or redis-py says (an error reply may echo a command's arguments);
* no call retries behind the caller's back (redis-py's default retries are off); each
  command waits ``timeout_s`` at most; :meth:`KeyValueClient.wait_ready` polls up to its own
  timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shipyard.clock import Clock, SystemClock, poll_until
from shipyard.drivers.redis.info import KeyValueInfo, parse_info
from shipyard.errors import RuntimeFailure

BgsaveReply = Literal["started", "scheduled", "in_progress"]


class KeyValueClient:
    def __init__(
        self,
        host: str,
        port: int,
        password: str | None,
        *,
        timeout_s: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.clock: Clock = clock or SystemClock()
        self._password = password
        self._redis = redis.Redis(
            host=host,
            port=port,
            password=password,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            protocol=2,
            client_name="shipyard",
        )
        self._redis.set_response_callback("INFO", lambda response, **_: response)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def password(self) -> str | None:
        """The password this client authenticates with (for checks that it went nowhere)."""
        return self._password

    # -- commands ----------------------------------------------------------------------------

    def execute(self, *args: str | int | float | bytes, doing: str | None = None) -> Any:
        """Any command; its reply as redis-py decodes it (strings, ints, lists)."""
        try:
            return self._call(*args)
        except (redis.RedisError, OSError) as exc:
            raise self._failure(exc, doing or f"{str(args[0]).upper()} command") from None

    def _call(self, *args: str | int | float | bytes) -> Any:
        return self._redis.execute_command(*args)  # type: ignore[no-untyped-call]

    def ping(self) -> None:
        self.execute("PING", doing="PING")

    def info(self) -> KeyValueInfo:
        text = self.execute("INFO", doing="INFO")
        return parse_info(text if isinstance(text, str) else str(text))

    def config_get(self, name: str) -> str:
        reply = self.execute("CONFIG", "GET", name, doing=f"CONFIG GET {name}")
        if isinstance(reply, list):  # RESP2: name, value, name, value...
            reply = dict(zip(reply[::2], reply[1::2], strict=False))
        if not isinstance(reply, dict) or name not in reply:
            raise RuntimeFailure(
                f"Key Value at {self.where}: CONFIG GET {name} returned no value",
                fields={"host": self.host, "port": self.port, "reason": "error"},
            )
        return str(reply[name])

    def config_set(self, name: str, value: str) -> None:
        self.execute("CONFIG", "SET", name, value, doing=f"CONFIG SET {name}")

    def config_rewrite(self) -> None:
        self.execute("CONFIG", "REWRITE", doing="CONFIG REWRITE")

    def lastsave(self) -> int:
        """LASTSAVE: the Unix time (seconds) of the last successful save."""
        reply = self.execute("LASTSAVE", doing="LASTSAVE")
        return int(reply.timestamp()) if hasattr(reply, "timestamp") else int(reply)

    def server_time(self) -> float:
        """TIME: the server's clock, Unix seconds."""
        seconds, micros = self.execute("TIME", doing="TIME")
        return int(seconds) + int(micros) / 1e6

    def bgsave(self) -> BgsaveReply:
        """BGSAVE SCHEDULE (scheduled after a running AOF rewrite rather than refused);
        ``in_progress`` when a background save is already running (it may have started before
        the caller's last write: wait for it and ask again)."""
        try:
            reply = str(self._call("BGSAVE", "SCHEDULE"))
        except redis.ResponseError as exc:
            if "already in progress" in str(exc):
                return "in_progress"
            raise self._failure(exc, "BGSAVE") from None
        except (redis.RedisError, OSError) as exc:
            raise self._failure(exc, "BGSAVE") from None
        return "scheduled" if "scheduled" in reply.lower() else "started"

    # -- readiness ---------------------------------------------------------------------------

    def wait_ready(self, timeout_s: float, alive: Callable[[], bool] | None = None) -> KeyValueInfo:
        """Block until the server answers PING and has loaded its dataset (a server loading
        answers LOADING; INFO says ``loading:1``); its INFO then. RuntimeFailure at once for an
        authentication failure or when ``alive()`` turns false, else after ``timeout_s`` naming
        the last obstacle."""
        last: list[RuntimeFailure] = []

        def probe() -> KeyValueInfo | None:
            if alive is not None and not alive():
                raise RuntimeFailure(
                    f"Key Value at {self.where}: the server exited before it was ready",
                    fields={"host": self.host, "port": self.port, "reason": "exited"},
                )
            try:
                self.ping()
                info = self.info()
            except RuntimeFailure as exc:
                if exc.fields.get("reason") in ("auth_required", "auth_failed", "error"):
                    raise
                last[:] = [exc]
                return None
            if info.loading:
                last[:] = [self._loading_failure()]
                return None
            return info

        ready = poll_until(
            self.clock, probe, timeout_s=timeout_s, interval_s=0.05, backoff=1.5,
            max_interval_s=0.5,
        )  # fmt: skip
        if ready is None:
            prefix = f"Key Value at {self.where}: "
            obstacle = last[0].message.removeprefix(prefix) if last else "no answer"
            raise RuntimeFailure(
                f"Key Value at {self.where}: not ready after {timeout_s:g} s ({obstacle})",
                fields={
                    "host": self.host,
                    "port": self.port,
                    "reason": last[0].fields.get("reason", "timeout") if last else "timeout",
                },
            )
        return ready

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._redis.close()

    def __enter__(self) -> KeyValueClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- errors ------------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """``text`` with the password replaced by ``***``."""
        return text.replace(self._password, "***") if self._password else text

    def _loading_failure(self) -> RuntimeFailure:
        return RuntimeFailure(
            f"Key Value at {self.where}: the server is still loading its dataset",
            fields={"host": self.host, "port": self.port, "reason": "loading"},
        )

    def _failure(self, exc: BaseException, doing: str) -> RuntimeFailure:
        detail = self.scrub(str(exc).strip() or type(exc).__name__)
        if isinstance(exc, redis.AuthenticationError):
            if self._password is None:
                reason, what = "auth_required", "authentication required (no password given)"
            else:
                reason, what = "auth_failed", "authentication failed (wrong password?)"
            message = f"Key Value at {self.where}: {doing}: {what}: {detail}"
        elif isinstance(exc, redis.BusyLoadingError):
            return self._loading_failure()
        elif isinstance(exc, redis.TimeoutError):
            reason = "timeout"
            message = f"Key Value at {self.where}: {doing}: no answer within {self.timeout_s:g} s"
        elif isinstance(exc, redis.ConnectionError | OSError):
            reason = "unreachable"
            message = f"Key Value at {self.where}: {doing}: cannot connect: {detail}"
        else:
            reason = "error"
            message = f"Key Value at {self.where}: {doing} failed: {detail}"
        return RuntimeFailure(
            message, fields={"host": self.host, "port": self.port, "reason": reason}
        )
