"""Constants and small helpers the tests share (fixtures live in conftest.py)."""

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from werkzeug.serving import make_server

from flagsvc.config import Settings

ADMIN_TOKEN = "admin-secret-token"
SDK_KEY = "sdk-secret-key-1"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SDK = {"Authorization": f"Bearer {SDK_KEY}"}
TEST_SETTINGS = Settings(admin_tokens={"ops": ADMIN_TOKEN}, sdk_keys={"web": SDK_KEY})


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Serve `app` over real HTTP (a threaded WSGI server on a free port) for the block; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        app.extensions["flagsvc"].changes.close()  # open streams end
        server.shutdown()
        server.server_close()
        thread.join(5)


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll `condition` until it holds or `timeout` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())
