"""Key rotation of the SecretBox over a real state: nothing becomes undecryptable, digests
(and so plans) do not change, the old key is gone afterwards, the original file format reads."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

from shipyard.controlplane.secrets import SecretBox
from shipyard.testing import make_context, seed_service


def test_rotation_re_encrypts_every_value_and_keeps_digests(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    seed_service(ctx, "api", env={"TOKEN": "t0k"})
    ctx.state.set_env_values("api", {"STRIPE": ctx.box.encrypt("sk_1")}, [])
    ctx.state.save_generated("api", {"SECRET": ctx.box.encrypt("gen")})
    box = ctx.box
    assert isinstance(box, SecretBox)
    old_key = (tmp_path / "secret.key").read_text().split()[0]
    digest = box.digest("x")
    count = box.rotate(ctx.state.reencrypt)
    assert count >= 3
    assert box.digest("x") == digest  # stored specs' digests are still valid
    release = ctx.state.release("api", 1)
    assert box.decrypt_env(release.env_enc) == {"TOKEN": "t0k"}
    assert box.decrypt(ctx.state.env_values("api")["STRIPE"]) == "sk_1"
    lines = (tmp_path / "secret.key").read_text().split()
    assert old_key not in lines and len([ln for ln in lines if not ln.startswith("mac:")]) == 1
    with pytest.raises(InvalidToken):  # the old key alone no longer opens anything
        Fernet(old_key.encode()).decrypt(ctx.state.env_values("api")["STRIPE"])
    reopened = SecretBox(tmp_path / "secret.key")
    assert reopened.decrypt(ctx.state.env_values("api")["STRIPE"]) == "sk_1"
    assert reopened.digest("x") == digest


def test_an_interrupted_rotation_leaves_every_value_readable(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    token = ctx.box.encrypt("kept")
    box = ctx.box
    assert isinstance(box, SecretBox)

    def crash(_: object) -> int:
        raise KeyboardInterrupt  # killed in the middle of re-encrypting

    with contextlib.suppress(KeyboardInterrupt):
        box.rotate(crash)
    assert SecretBox(tmp_path / "secret.key").decrypt(token) == "kept"  # both keys are there
