"""poetryweb / uvweb: a Python app with one PyPI dependency (idna), installed into the release's
virtualenv by poetry (poetry.lock) or uv (uv.lock). Serves the interpreter, where the dependency
was imported from and the virtualenv it runs in."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import idna


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {
                "python": sys.version.split()[0],
                "executable": sys.executable,
                "prefix": sys.prefix,
                "dep": idna.__file__,
                "virtual_env": os.environ.get("VIRTUAL_ENV", ""),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
