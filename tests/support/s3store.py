"""A real S3-compatible store for tests: SeaweedFS ``weed mini`` on free loopback ports.

:func:`running_s3` starts one in ``workdir`` (data, logs, config, TLS files, local sockets all
live there), waits until it stores and reads back an object, yields an :class:`S3Store` and
stops it (SIGTERM to its process group, SIGKILL after a grace period; every descendant) on
exit, even when the block raised. With ``https`` (the default: pgBackRest speaks S3 over TLS
only) the S3 API listens on HTTPS with a certificate for ``localhost`` and ``127.0.0.1`` signed
by a CA generated for this store (``S3Store.ca_file``); the plain-HTTP S3 port is still open
(``http_endpoint``).

A store takes about a second to start and ~370 MB of memory: share one per test module.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shipyard.drivers.s3 import S3, S3Endpoint
from shipyard.errors import RuntimeFailure
from tests.support.harness import REPO, free_port

WEED = REPO / ".venv" / "bin" / "weed"
REGION = "us-east-1"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
# Ports weed mini opens, each set explicitly so that two stores (or a store and anything else)
# never collide on a default port. Iceberg and Lance catalogs are switched off (0).
PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
)  # fmt: skip


@dataclass
class S3Store:
    endpoint: str
    host_port: str
    ca_file: Path
    access_key: str
    secret_key: str = field(repr=False)
    region: str
    http_endpoint: str
    pid: int
    log_file: Path

    def s3_endpoint(self) -> S3Endpoint:
        ca = self.ca_file if self.endpoint.startswith("https://") else None
        return S3Endpoint(
            url=self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            ca_file=ca,
        )

    def client(self) -> S3:
        return S3(self.s3_endpoint())

    def make_bucket(self, name: str) -> None:
        self.client().ensure_bucket(name)


_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


def write_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for DNS ``localhost`` and IP 127.0.0.1:
    (ca.pem, server.pem, server.key) in ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Shipyard test S3 CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "server.pem", "server.key"))
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ca_file.chmod(0o644)  # other accounts (pgBackRest as postgres) read the CA
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


@contextmanager
def running_s3(workdir: Path, https: bool = True) -> Iterator[S3Store]:
    """A started store in ``workdir`` (created); stopped with all its children on exit."""
    data, logs = workdir / "data", workdir / "logs"
    for d in (data, logs):
        d.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = f"AK{secrets.token_hex(8)}", secrets.token_urlsafe(24)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "shipyard-test",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))  # fmt: skip
    config.chmod(0o600)
    ca_file, cert_file, key_file = write_tls(workdir / "tls")
    ports = {flag: free_port() for flag in PORT_FLAGS}
    https_port = free_port() if https else None
    argv = [
        str(WEED), f"-logdir={logs}", "mini",
        f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={config}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.localSocket={workdir / 's3.sock'}", f"-filer.localSocket={workdir / 'filer.sock'}",
        "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
        "-volume.preStopSeconds=0", "-master.volumeSizeLimitMB=64",
    ]  # fmt: skip
    if https_port is not None:
        argv += [
            f"-s3.port.https={https_port}", f"-s3.cert.file={cert_file}",
            f"-s3.key.file={key_file}",
        ]  # fmt: skip
    log_file = logs / "weed.out"
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                         "HOME": str(workdir)},
        )  # fmt: skip
    try:
        port = https_port if https_port is not None else ports["s3.port"]
        scheme = "https" if https_port is not None else "http"
        store = S3Store(
            endpoint=f"{scheme}://localhost:{port}",
            host_port=f"localhost:{port}",
            ca_file=ca_file,
            access_key=access_key,
            secret_key=secret_key,
            region=REGION,
            http_endpoint=f"http://localhost:{ports['s3.port']}",
            pid=proc.pid,
            log_file=log_file,
        )
        _wait_ready(store, proc, workdir)
        yield store
    finally:
        _stop(proc)
        for used in (*ports.values(), https_port):
            for sock in Path("/tmp").glob(f"seaweedfs-*-{used}.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()


def _wait_ready(store: S3Store, proc: subprocess.Popen[bytes], workdir: Path) -> None:
    """Until an object can be written and listed (the S3 port opens before the volume server
    has registered with the master)."""
    probe = workdir / "probe.txt"
    probe.write_text("ready\n")
    client = store.client()
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited ({proc.returncode}): {_tail(store.log_file)}")
        try:
            client.ensure_bucket("readiness-probe")
            client.put_file("readiness-probe", "probe.txt", probe)
            if [o.key for o in client.list("readiness-probe")] == ["probe.txt"]:
                client.delete("readiness-probe", "probe.txt")
                return
        except RuntimeFailure as exc:
            last = exc.message
        time.sleep(0.1)
    raise RuntimeError(f"weed mini not ready within {START_TIMEOUT_S:g} s ({last})")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    for p in family[1:]:  # children that left the group
        with contextlib.suppress(psutil.Error):
            p.kill()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
