"""Which values of a service's env are secrets, so build and pre-deploy logs show them masked
(``********``, as CI systems do; the log writer does the masking, see native/logd/logd.c).

The rule, per env var of the service's resolved env (the release's env snapshot):

* a literal ``value:`` of the Blueprint is not a secret (it is in the repository for anyone
  to read);
* ``generateValue``, ``sync: false`` and every value set with ``shipyard env set`` are;
* every variable an env group adds is (Render's groups hold shared secrets);
* ``fromDatabase`` / ``fromService`` of a datastore: the ``password`` and ``connectionString``
  are, the host, port, user and database name are not (recognised by comparing with the
  datastores' own connection properties);
* ``fromService`` of a service: ``host``/``port``/``hostport`` (loopback addresses) are not,
  ``envVarKey`` (a copy of another service's variable, maybe a secret) is.

The log writer masks only values (or lines of multi-line values) of at least 4 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from shipyard.blueprint.spec import ServiceSpec
from shipyard.context import Context
from shipyard.data import lifecycle

_ENDPOINT = re.compile(r"^(127\.0\.0\.1|localhost)?(:?\d{1,5})?$")
_DATASTORE_SECRETS = ("password", "connectionString")


def secret_keys(
    spec: ServiceSpec, env: Mapping[str, str], datastore_secrets: Collection[str]
) -> set[str]:
    """The keys of ``env`` whose values are secrets, by the rule above. Pure."""
    kinds = {d.key: d.kind for d in spec.env_digests}
    for entry in spec.env_vars:  # a spec not yet in its stored form
        if entry.key is not None and entry.from_group is None:
            kinds[entry.key] = _kind(entry.value, entry.generate, entry.sync,
                                     entry.from_service is not None)  # fmt: skip
    secret = set()
    for key, value in env.items():
        kind = kinds.get(key)
        if kind == "value":
            continue
        if kind == "from_database":
            if value in datastore_secrets:
                secret.add(key)
        elif kind == "from_service":
            if value in datastore_secrets or not _ENDPOINT.match(value):
                secret.add(key)
        else:  # generate, sync, an env group's, set by the operator
            secret.add(key)
    return secret


def _kind(value: str | None, generate: bool, sync: bool, from_service: bool) -> str:
    if value is not None:
        return "value"
    if generate:
        return "generate"
    if not sync:
        return "sync"
    return "from_service" if from_service else "from_database"


def secret_values(ctx: Context, spec: ServiceSpec, env: Mapping[str, str]) -> tuple[str, ...]:
    """The secret values of ``env`` (a service's resolved env), for ``ProcessSpec.mask``."""
    datastore_secrets = {
        props[name]
        for props in lifecycle.connections(ctx).values()
        for name in _DATASTORE_SECRETS
        if props.get(name)
    }
    keys = secret_keys(spec, env, datastore_secrets)
    return tuple(sorted({env[k] for k in keys if env[k]}))
