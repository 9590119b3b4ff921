"""Serve ASGI apps over real HTTP on loopback, in a background thread (tests, demo, `emulate`)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp


class BackgroundServer:
    """A uvicorn server on 127.0.0.1 in a daemon thread; `port=0` picks a free port.

    Use as a context manager, or call `start()` / `stop()`. `url` is `http://127.0.0.1:PORT`.
    """

    def __init__(self, app: ASGIApp, port: int = 0, host: str = "127.0.0.1") -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only then; without it every response waits ~40 ms
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        # no `Date` of uvicorn's own: an emulator dates its answers by its own clock
        config = uvicorn.Config(app, log_level=logging.WARNING, access_log=False, lifespan="off", timeout_keep_alive=30,
                                date_header=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
