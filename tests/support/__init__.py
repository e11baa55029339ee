"""Constants and small helpers the tests share (fixtures live in conftest.py).

Test modules import helpers only from this package, never from one another: `tests.support.servers` (a real
`flagsvc serve` process), `tests.support.sdk_fakes` and `tests.support.sdk_fake_server` (the SDK's fakes),
`tests.support.docker_files` (reading docker/).
"""

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from werkzeug.serving import make_server

from flagsvc.config import Settings

ADMIN_TOKEN = "admin-secret-token"
SDK_KEY = "sdk-secret-key-1"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SDK = {"Authorization": f"Bearer {SDK_KEY}"}
# A data dir of the test run's own: a server started by a test keeps its exports there, not in ./.flagsvc.
TEST_SETTINGS = Settings(admin_tokens={"ops": ADMIN_TOKEN}, sdk_keys={"web": SDK_KEY},
                         data_dir=Path(tempfile.mkdtemp(prefix="flagsvc-tests-")))


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Serve `app` over real HTTP (a threaded WSGI server on a free port) for the block; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll interval: shutdown() waits up to one interval (0.5 s by default) for serve_forever to notice.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        app.extensions["flagsvc"].changes.close()  # open streams end
        server.shutdown()
        server.server_close()
        thread.join(5)


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll `condition` until it holds or `timeout` passes; its last answer. Assert on it:
    `assert wait_for(lambda: ...), "what did not happen"` (a wait that is not asserted hides the failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())
