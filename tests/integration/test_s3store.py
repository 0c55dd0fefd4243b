"""The SeaweedFS test store (tests/support/s3store.py) and drivers/s3.py against it: files go
in and come back over HTTPS verified with the store's CA, errors are RuntimeFailures that name
the object and never the secret, and stopping the store leaves no process or port behind."""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shipyard.drivers.s3 import S3, S3Endpoint
from shipyard.errors import RuntimeFailure
from tests.support.s3store import S3Store, running_s3

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Store]:
    with running_s3(tmp_path_factory.mktemp("s3")) as s:
        yield s


def test_tls_with_the_generated_ca(store: S3Store) -> None:
    assert store.endpoint.startswith("https://localhost:")
    assert store.host_port == store.endpoint.removeprefix("https://")
    ctx = ssl.create_default_context(cafile=str(store.ca_file))
    try:
        urllib.request.urlopen(store.endpoint, context=ctx, timeout=10)
    except urllib.error.HTTPError as exc:  # anonymous: refused, but over verified TLS
        assert exc.code in (400, 403)
    ip_url = store.endpoint.replace("localhost", "127.0.0.1")
    try:
        urllib.request.urlopen(ip_url, context=ctx, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code in (400, 403)
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(store.endpoint, context=ssl.create_default_context(), timeout=10)


def test_put_list_get_delete(store: S3Store, tmp_path: Path) -> None:
    client = store.client()
    assert client.ensure_bucket("files-one") is True
    assert client.ensure_bucket("files-one") is False
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 40_000)  # 10 MB: a multipart upload
    client.put_file("files-one", "dir/a.bin", src)
    small = tmp_path / "b"
    small.write_text("b")
    client.put_file("files-one", "dir/b.txt", small)
    client.put_file("files-one", "other/c.txt", small)
    assert [(o.key, o.size) for o in client.list("files-one", "dir/")] == [
        ("dir/a.bin", src.stat().st_size),
        ("dir/b.txt", 1),
    ]
    dst = tmp_path / "dst.bin"
    client.get_file("files-one", "dir/a.bin", dst)
    assert dst.read_bytes() == src.read_bytes()
    client.delete("files-one", "dir/a.bin")
    client.delete("files-one", "dir/a.bin")  # already gone: fine
    assert [o.key for o in client.list("files-one")] == ["dir/b.txt", "other/c.txt"]


def test_errors_name_the_object_and_hide_the_secret(store: S3Store, tmp_path: Path) -> None:
    client = store.client()
    client.ensure_bucket("files-two")
    with pytest.raises(
        RuntimeFailure, match=r"S3 download s3://files-two/missing\.txt at https://"
    ) as c:
        client.get_file("files-two", "missing.txt", tmp_path / "x")
    assert "404" in c.value.message

    wrong_secret = "definitely-not-the-secret-key"
    bad = S3(
        S3Endpoint(
            url=store.endpoint,
            access_key=store.access_key,
            secret_key=wrong_secret,
            ca_file=store.ca_file,
        )
    )
    with pytest.raises(RuntimeFailure, match=r"SignatureDoesNotMatch|AccessDenied") as c:
        bad.list("files-two")
    assert wrong_secret not in c.value.message + repr(c.value.to_dict())
    assert store.secret_key not in c.value.message
    assert wrong_secret not in repr(bad.endpoint)

    no_ca = S3(S3Endpoint(url=store.endpoint, access_key="a", secret_key="b" * 8))
    with pytest.raises(RuntimeFailure, match="TLS failure"):
        no_ca.list("files-two")


def test_plain_http_store_stops_cleanly(tmp_path: Path) -> None:
    with running_s3(tmp_path / "plain", https=False) as plain:
        assert plain.endpoint.startswith("http://localhost:")
        plain.make_bucket("plain-bucket")
        assert plain.client().list("plain-bucket") == []
        proc = psutil.Process(plain.pid)
        family = [proc, *proc.children(recursive=True)]
        port = int(plain.host_port.rsplit(":", 1)[1])
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
    with pytest.raises(RuntimeFailure, match="cannot connect"):
        S3(
            S3Endpoint(url=plain.endpoint, access_key="a", secret_key="b", connect_timeout_s=2)
        ).list("plain-bucket")
