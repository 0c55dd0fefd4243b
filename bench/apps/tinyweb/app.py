"""tinyweb: the smallest web service Shipyard can run, for bench/many_services.py.

Binds 127.0.0.1:$PORT, one connection at a time (no threads, no http.server: a process is
~8 MB RSS). Every request gets ``Connection: close``; ``GET /healthz`` answers ``ok``, any other
path answers ``$RENDER_SERVICE_NAME``. SIGTERM's default action (exit) is the shutdown.
"""

import os
import socket

NAME = os.environ.get("RENDER_SERVICE_NAME", "tinyweb").encode()


def answer(conn: socket.socket) -> None:
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 8192:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    parts = data.split(b" ", 2)
    path = parts[1] if len(parts) > 2 else b"/"
    body = b"ok\n" if path == b"/healthz" else NAME + b"\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def main() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(os.environ["PORT"])))
    server.listen(128)
    print(f"tinyweb[{os.getpid()}] listening on 127.0.0.1:{os.environ['PORT']}", flush=True)
    while True:
        conn, _ = server.accept()
        try:
            answer(conn)
        except OSError:
            pass
        finally:
            conn.close()


if __name__ == "__main__":
    main()
