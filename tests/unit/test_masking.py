"""Secret masking in build and pre-deploy logs: which values are secrets (release/masking.py),
and shipyard-logd's -m (native/logd/logd.c) as a real process: values from a pipe, masked in
whole lines even when a write splits them, longest first, never on its command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from shipyard.blueprint.spec import EnvVarSpec, FromService, ServiceSpec
from shipyard.drivers.local.logwriters import LogWriters, mask_values
from shipyard.release.masking import secret_keys

LOGD = Path(sys.executable).parent / "shipyard-logd"
DB_PASSWORD = "pw-0123456789abcdef"
DB_URL = f"postgresql://app:{DB_PASSWORD}@127.0.0.1:15400/app"


def _spec() -> ServiceSpec:
    return ServiceSpec(
        name="web",
        type="web",
        runtime="python",
        env_vars=(
            EnvVarSpec("LITERAL", value="not-a-secret"),
            EnvVarSpec("SECRET_KEY", generate=True),
            EnvVarSpec("STRIPE", sync=False),
            EnvVarSpec("DATABASE_URL", from_database=("db", "connectionString")),
            EnvVarSpec("DB_HOST", from_database=("db", "host")),
            EnvVarSpec("API", from_service=FromService("pserv", "api", "hostport", None)),
            EnvVarSpec("TOKEN", from_service=FromService("web", "other", None, "TOKEN")),
            EnvVarSpec(None, from_group="shared"),
        ),
    )


def test_secret_keys_follow_the_rule() -> None:
    env = {
        "LITERAL": "not-a-secret", "SECRET_KEY": "c2VjcmV0", "STRIPE": "sk_live_1",
        "DATABASE_URL": DB_URL, "DB_HOST": "127.0.0.1", "API": "127.0.0.1:20001",
        "TOKEN": "copied-token", "GROUP_VALUE": "from-the-group", "SET_LATER": "operator",
    }  # fmt: skip
    secrets = {DB_PASSWORD, DB_URL}
    expected = {"SECRET_KEY", "STRIPE", "DATABASE_URL", "TOKEN", "GROUP_VALUE", "SET_LATER"}
    assert secret_keys(_spec(), env, secrets) == expected
    # the stored form (digests only) gives the same answer
    assert secret_keys(_spec().stored(lambda text: "x"), env, secrets) == expected


def test_mask_values_lines_min_length_longest_first() -> None:
    assert mask_values(("abc", "longer-secret", "secret", "two\nlines-here", "secret")) == (
        b"longer-secret", b"lines-here", b"secret",
    )  # fmt: skip


def _run_logd(tmp_path: Path, values: list[bytes], chunks: list[bytes]) -> str:
    read_mask, write_mask = os.pipe()
    read_in, write_in = os.pipe()
    argv = [str(LOGD), "-m", str(read_mask), str(tmp_path / "log")]
    proc = subprocess.Popen(argv, stdin=read_in, pass_fds=(read_mask,), start_new_session=True)
    os.close(read_mask)
    os.close(read_in)
    os.write(write_mask, b"".join(v + b"\0" for v in values))
    os.close(write_mask)
    for chunk in chunks:
        os.write(write_in, chunk)
        time.sleep(0.05)  # separate reads
    os.close(write_in)
    assert proc.wait(timeout=10) == 0
    return (tmp_path / "log" / "current").read_text()


def test_logd_masks_values_split_across_writes(tmp_path: Path) -> None:
    assert LOGD.is_file(), f"{LOGD} is missing: `make install` builds it"
    text = _run_logd(
        tmp_path,
        [b"s3cr3t", b"s3cr3t-longer", b"ab"],
        [b"one s3cr3t-lon", b"ger two s3cr3t three ab\n", b"s3c", b"r3t\nclean line\n",
         b"tail s3cr3t"],
    )  # fmt: skip
    assert text.splitlines() == [
        "one ******** two ******** three ab", "********", "clean line", "tail ********",
    ]  # fmt: skip


def test_logd_masks_a_line_full_of_short_values(tmp_path: Path) -> None:
    text = _run_logd(tmp_path, [b"aaaa"], [b"aaaa" * 4096 + b"\n"])
    assert text == "********" * 4096 + "\n"


def test_logd_refuses_an_unreadable_mask_fd(tmp_path: Path) -> None:
    result = subprocess.run([str(LOGD), "-m", "77", str(tmp_path / "log")], input=b"",
                            capture_output=True, check=False)  # fmt: skip
    assert result.returncode == 111 and b"values to mask" in result.stderr


def test_log_writer_gets_the_values_through_a_pipe_not_argv(tmp_path: Path) -> None:
    writers = LogWriters(str(LOGD))
    writer, pipe = writers.start(tmp_path / "log", ("hunter2-secret",))
    try:
        proc = psutil.Process(writer.pid)
        assert "hunter2-secret" not in " ".join(proc.cmdline())
        assert all("hunter2" not in v for v in proc.environ().values())
        os.write(pipe, b"password: hunter2-secret\n")
    finally:
        os.close(pipe)
    assert writer.wait(timeout=10) == 0
    assert (tmp_path / "log" / "current").read_text().endswith("Z password: ********\n")


@pytest.mark.parametrize("values", [(), ("abc",)])
def test_no_mask_no_option(tmp_path: Path, values: tuple[str, ...]) -> None:
    writer, pipe = LogWriters(str(LOGD)).start(tmp_path / "log", values)
    try:
        assert "-m" not in psutil.Process(writer.pid).cmdline()
    finally:
        os.close(pipe)
    writer.wait(timeout=10)
