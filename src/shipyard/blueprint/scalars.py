"""Scalars of a Blueprint: paths and positions into the file, YAML scalars that keep how they
were written, and the field validators the raw models share (model.py)."""

from __future__ import annotations

import ipaddress
import posixpath
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

Loc = tuple[str | int, ...]  # a path into the file's data: ("services", 1, "startCommand")
Positions = dict[Loc, tuple[int, int]]  # path -> (line, column), both 1-based


def format_path(loc: Loc) -> str:
    """("services", 1, "scaling") -> "services[1].scaling"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # always fullmatch: `$` allows "\n"
# Dots are allowed: render-examples/temporal (an official Render template) sets Elasticsearch
# settings such as `xpack.security.enabled` and `discovery.type` as env var keys. Any name
# without '=' and NUL reaches a process (execve); this keeps to names programs can look up.
ENV_KEY = _ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,255}")
# What the edge sends as a health check path unquoted (drivers/haproxy/config.py refuses
# anything else); '#' would start a comment in its map file.
_PATH_CHARS = re.compile(r"[A-Za-z0-9._~!&()*+,;=:@%/?-]*")
_HEALTH_PATH_MAX = 1024
# Linux passes a process at most 128 KiB in one argument or environment string
# (MAX_ARG_STRLEN): a value of at most 127 KiB leaves room for its key (256 characters at most).
EXEC_STRING_MAX = 127 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\ud800-\udfff]")  # C0 controls, and lone surrogates
_ENV_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")  # but tab, LF, CR
_COMMAND_CONTROL = re.compile(r"[\x00\ud800-\udfff]")
YAML11_BOOLS = {"yes": True, "on": True, "y": True, "no": False, "off": False, "n": False}


class Yaml11Bool(str):
    """A plain YAML scalar such as ``off`` or ``yes``: a string, as Render's Go YAML decoder
    (yaml.v3, YAML 1.2) reads it, except where the field is a boolean. So
    ``previews.generation: off`` is the string "off" (render-examples/sim-on-render and
    dify-render-template write it unquoted) while ``autoDeploy: no`` is still false."""

    @property
    def flag(self) -> bool:
        return YAML11_BOOLS[self.lower()]


def yaml_bool(value: Any) -> Any:
    return value.flag if isinstance(value, Yaml11Bool) else value


def plain_str(value: Any) -> Any:
    return str(value) if isinstance(value, Yaml11Bool) else value


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("blueprint", message)


def service_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a service Shipyard runs (None if it can). A DNS label is also
    a valid HAProxy backend name and, with ".localhost", the service's public host.

    Render itself accepts any name (ToolJet/ToolJet names services 'ToolJet' and 'PostgREST';
    Render's spec example has a Key Value instance named 'private cache'), so refs.py applies
    this only to the services Shipyard runs, which it addresses by name."""
    if _DNS_LABEL.fullmatch(name):
        return None
    hint = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    why = "uppercase letters are not allowed" if name.lower() != name else "not a DNS label"
    suggestion = f" Did you mean '{hint}'?" if hint and _DNS_LABEL.fullmatch(hint) else ""
    return (
        f"invalid service name {name!r} ({why}): use 1-63 lowercase letters, digits or '-', "
        f"not starting or ending with '-'.{suggestion}"
    )


def _bad_character(value: str, pattern: re.Pattern[str], rule: str) -> None:
    """Refuse the first character of ``value`` that ``pattern`` finds, saying which and where."""
    found = pattern.search(value)
    if found is None:
        return
    char, position = found.group(), found.start() + 1
    if "\ud800" <= char <= "\udfff":
        raise _fail(
            f"contains U+{ord(char):04X} at position {position}, half of a surrogate pair and "
            "not text: write the character itself"
        )
    what = (
        "a NUL character (U+0000)" if char == "\0" else f"the control character U+{ord(char):04X}"
    )
    raise _fail(f"contains {what} at position {position}: {rule}")


def _exec_string(value: str, what: str) -> None:
    size = len(value.encode(errors="surrogatepass"))
    if size > EXEC_STRING_MAX:
        raise _fail(
            f"is {size / 1024:.1f} KiB: {what} can be at most {EXEC_STRING_MAX // 1024} KiB "
            "(Linux passes a process at most 128 KiB in one string)"
        )


def _env_key(key: str) -> str:
    if not _ENV_KEY.fullmatch(key):
        raise _fail(
            f"invalid environment variable name {key!r}: expected a letter or '_', then "
            "letters, digits, '_', '.' or '-' (256 at most)"
        )
    return key


def _env_value(value: str) -> str:
    rule = "a value can hold tab, newline and carriage return, no other control character"
    _bad_character(value, _ENV_CONTROL, rule)
    _exec_string(value, "an environment variable's value")
    return value


def _command(value: str) -> str:
    _bad_character(value, _COMMAND_CONTROL, "a process cannot be given one in its command")
    _exec_string(value, "a command")
    return value


def _root_dir(value: str) -> str:
    _bad_character(value, _CONTROL, "rootDir cannot hold control characters")
    if value.startswith("/"):
        raise _fail(f"{value!r} is absolute: rootDir is relative to the repository root")
    norm = posixpath.normpath(value) if value else "."
    if norm == ".." or norm.startswith("../"):
        raise _fail(f"{value!r} points outside the repository root")
    return "" if norm == "." else norm


def _health_path(value: str) -> str:
    if not value.startswith("/"):
        raise _fail(f"{value!r} must start with '/' (for example '/healthz')")
    bad = next((i for i, c in enumerate(value) if not _PATH_CHARS.fullmatch(c)), None)
    if bad is not None:
        raise _fail(
            f"{value!r} has {value[bad]!r} at position {bad + 1}, which a health check request "
            "cannot carry as is: use letters, digits and / . _ ~ ! & ( ) * + , ; = : @ ? - , "
            "and percent-encode the rest (for example %20 for a space)"
        )
    if len(value) > _HEALTH_PATH_MAX:
        raise _fail(f"is {len(value)} characters long: at most {_HEALTH_PATH_MAX}")
    return value


def normal_host(value: str) -> str:
    """A domain as the edge routes it: lowercase, without surrounding blanks or final dot."""
    return value.strip().lower().rstrip(".")


def _hostname(value: str) -> str:
    """A domain the edge routes: a lowercase DNS name of two labels or more (or localhost)."""
    host = normal_host(value)
    labels = host.split(".")
    if labels[0] == "*":
        raise _fail(f"{value!r}: wildcard domains are not supported yet")
    if not host.isascii():
        raise _fail(
            f"{value!r} is not a valid hostname: write an internationalized domain in its "
            "ASCII form ('xn--...')"
        )
    if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise _fail(
            f"{value!r} is not a valid hostname: labels of 1-63 letters, digits or '-', not "
            "starting or ending with '-', joined by '.' (for example 'app.example.com')"
        )
    if len(labels) == 1 and host != "localhost":
        raise _fail(f"{value!r} is not a full domain name (for example 'app.example.com')")
    if labels[-1].isdigit():
        raise _fail(f"{value!r} is an IP address or ends in a number: give a domain name")
    if host.endswith(".localhost"):
        raise _fail(
            f"{value!r} is under .localhost, where Shipyard gives each web service its own "
            "host (<name>.localhost): use another domain"
        )
    return host


def _cidr(value: str) -> str:
    """An ipAllowList source: an IPv4 or IPv6 address or CIDR block, normalized."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise _fail(
            f"{value!r} is not an IP address or CIDR block (for example '203.0.113.0/24', "
            "'0.0.0.0/0' for everyone)"
        ) from None


RENDER_PROJECT_DIR = "/opt/render/project/src"  # Render's working tree (its repository root)
_SYSTEM_TREES = ("/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64",
                 "/boot", "/run")  # fmt: skip
_SYSTEM_DIRS = ("/", "/tmp", "/home", "/root", "/var", "/var/lib", "/var/log", "/opt",
                RENDER_PROJECT_DIR)  # fmt: skip


def _mount_path(value: str) -> str:
    """A disk's mountPath: an absolute, normalized path, neither a system directory nor in a
    system tree."""
    if not value.startswith("/"):
        raise _fail(f"{value!r} is not an absolute path (for example '/var/data')")
    _bad_character(value, _CONTROL, "control characters")
    parts = [p for p in value.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise _fail(f"{value!r}: '.' and '..' are not allowed in a mountPath")
    path = "/" + "/".join(parts)
    in_tree = any(path == t or path.startswith(t + "/") for t in _SYSTEM_TREES)
    if in_tree or path in _SYSTEM_DIRS:
        raise _fail(f"{value!r} is a system directory: mount the disk elsewhere (e.g. /var/data)")
    return path


_PG_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _pg_name(value: str) -> str:
    """A PostgreSQL database or role name Shipyard creates: a lowercase SQL identifier that
    needs no quoting anywhere (connection strings, psql, pg_hba)."""
    if not _PG_NAME.fullmatch(value):
        raise _fail(
            f"{value!r} is not a valid name: 1-63 lowercase letters, digits or '_', not "
            "starting with a digit"
        )
    if value in RESERVED_ROLES or value.startswith("pg_"):
        raise _fail(f"{value!r} is reserved: Shipyard and PostgreSQL use it themselves")
    return value


RESERVED_ROLES = frozenset({"postgres", "replicator", "template0", "template1", "public"})


class YamlInt(int):
    """An integer scalar that remembers how it was written (``010``, ``0x1F``, ``1_000``)."""

    source: str

    def __new__(cls, value: int, source: str) -> YamlInt:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj


class YamlFloat(float):
    """A float scalar that remembers how it was written: ``3.10`` must reach a process as
    "3.10" (PYTHON_VERSION), not "3.1" — Render passes env values as written."""

    source: str

    def __new__(cls, value: float, source: str) -> YamlFloat:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj


def to_str(value: Any) -> Any:
    if isinstance(value, YamlInt | YamlFloat):
        return value.source
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _scalar(value: Any) -> Any:
    """Env values: YAML numbers and booleans become the strings a process sees."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, YamlInt | YamlFloat):
        return value.source
    if isinstance(value, int | float | str):
        return str(value)
    raise _fail(f"expected a string, number or boolean, got {describe(value)}")


def describe(value: Any) -> str:
    """How a YAML value reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string '{value}'"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"{type(value).__name__} {value!r}"


ServiceName = Annotated[str, Field(min_length=1)]  # DNS-label rule: refs.py (runnable only)
Bool = Annotated[bool, BeforeValidator(yaml_bool)]
Str = Annotated[str, BeforeValidator(plain_str)]
EnvKey = Annotated[str, AfterValidator(_env_key)]
Command = Annotated[str, AfterValidator(_command)]
RootDir = Annotated[str, AfterValidator(_root_dir)]
HealthPath = Annotated[str, AfterValidator(_health_path)]
Hostname = Annotated[str, AfterValidator(_hostname)]
Cidr = Annotated[str, AfterValidator(_cidr)]
MountPath = Annotated[str, AfterValidator(_mount_path)]
PgName = Annotated[str, AfterValidator(_pg_name)]
Runtime = Literal["docker", "elixir", "go", "image", "node", "python", "ruby", "rust", "static"]
Percent = Annotated[int, Field(ge=1, le=90)]
EnvValue = Annotated[str, BeforeValidator(_scalar), AfterValidator(_env_value)]
