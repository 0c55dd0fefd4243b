"""The pre-receive hook of Shipyard's repositories: `git push shipyard main` deploys the pushed
commit and streams the deploy back (git shows it as ``remote:`` lines). A failed deploy
rejects the push (git exits non-zero); the commit stays stored as
refs/shipyard/pushed/<branch>, so nothing pushed is lost.

Run by git as ``python -I -m shipyard.triggers.prereceive REPO`` with SHIPYARD_HOME and
SHIPYARD_API_PORT set by the hook script; reads ``old new ref`` lines on stdin.
"""

from __future__ import annotations

import os
import sys
import time

from shipyard.client import Client
from shipyard.errors import ShipyardError
from shipyard.settings import Settings
from shipyard.triggers.models import ReceiveBody, RefUpdate


def say(line: str = "") -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    name = argv[1]
    updates = []
    for line in sys.stdin.read().splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append(RefUpdate(old=parts[0], new=parts[1], ref=parts[2]))
    env = {k: v for k, v in os.environ.items() if k in ("SHIPYARD_HOME", "SHIPYARD_API_PORT")}
    settings = Settings.from_env({**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    body = ReceiveBody(updates=updates, quarantine=os.environ.get("GIT_QUARANTINE_PATH", ""))
    with Client(settings, timeout=600) as client:
        try:
            result = client.receive(name, body)
        except ShipyardError as exc:
            say(f"shipyard: the push was not deployed: {exc.message}")
            return 1
        ok = True
        for ref in result.refs:
            if ref.action != "deploy" or ref.ticket is None:
                say(f"shipyard: {ref.ref}: {ref.message}")
                continue
            ok = follow(client, ref.ticket, ref.commit) and ok
    return 0 if ok else 1


def follow(client: Client, ticket_id: int, commit: str) -> bool:
    say(f"shipyard: deploying {commit[:12]} ...")
    announced = ""
    while True:
        ticket = client.trigger(ticket_id)
        if ticket.status == "queued":
            if announced != "queued":
                say("shipyard: waiting for the deploy under way to finish ...")
                announced = "queued"
            time.sleep(0.5)
            continue
        break
    if ticket.status == "skipped":
        say(f"shipyard: {ticket.message}")
        return True
    if ticket.status in ("superseded", "failed") or ticket.deploy_id is None:
        say(f"shipyard: deploy {ticket.status}: {ticket.message}")
        return ticket.status == "superseded"
    last = [time.monotonic()]

    def show(event: object) -> None:
        service = getattr(event, "service", "") or ""
        message = getattr(event, "message", "")
        level = getattr(event, "level", "info")
        mark = "!" if level in ("error", "warning") else "-"
        say(f"{mark} {service + ': ' if service else ''}{message}")
        last[0] = time.monotonic()

    final = client.wait(ticket.deploy_id, on_event=show, timeout_s=7200)
    if final.status == "succeeded":
        say(f"shipyard: deployed {commit[:12]} (operation #{final.id})")
        for service in ticket.services:
            try:
                view = client.service(service)
            except ShipyardError:
                continue
            url = getattr(view, "url", None)
            if url:
                say(f"shipyard:   {service}: {url}")
        return True
    say(f"shipyard: DEPLOY FAILED (operation #{final.id}): {final.error}")
    say(
        "shipyard: the push is rejected; the commit is kept as refs/shipyard/pushed/<branch>"
        " on the Shipyard remote. Fix and push again."
    )
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv))
