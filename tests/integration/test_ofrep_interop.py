"""OFREP interoperability with clients nobody here wrote: the published Python `openfeature-provider-ofrep` under
`openfeature-sdk`, and the published JavaScript `@openfeature/ofrep-provider` under `@openfeature/server-sdk` on
the machine's Node.js (installed by the test from the npm registry with the committed lock file), against a real
`flagsvc serve` on a real redis-server.

Each evaluates 10,000 user ids on a flag at 30 % and must agree with `flagsvc_client`, the native SDK on the same
server, id for id; then the rollout is raised to 60 % and each must agree again on the first 500 ids (and only
have added users to the canary), then rolled back: every answer false (300 ids), reason DISABLED. Both published
providers evaluate one flag a request (neither uses the bulk endpoint), so each sees a change on its next
evaluation. The published `@openfeature/ofrep-web-provider` (the browsers' provider, run on Node.js) uses the bulk
endpoint: its answers agree with the SDK's rule, its polls get 304 with the ETag until a change, which it picks up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from flagsvc_client import FlagClient, is_canary
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

from tests.support import wait_for
from tests.support.node import NodeScript, install
from tests.support.servers import Server

ADMIN_SECRET = "interop-admin-secret"
SDK_SECRET = "interop-sdk-secret"
FLAG = "interop_checkout"
USERS = 10_000
CHANGED = 500  # ids asked again after the raise
KILLED = 300  # and after the rollback
PREFIX = "user-"
THREADS = 8
WEB_USERS = 200  # the web provider: one bulk evaluation per context
POLL_MS = 200
JS_SOURCE = Path(__file__).resolve().parents[1] / "interop-js"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("ofrep-interop")
    running = Server(data / "data", "--workers", "2", env={
        "FLAGSVC_ADMIN_TOKENS": f"ops={ADMIN_SECRET}", "FLAGSVC_SDK_KEYS": f"web={SDK_SECRET}"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def js(tmp_path_factory: pytest.TempPathFactory, server: Server) -> Iterator[NodeScript]:
    folder = install(JS_SOURCE, tmp_path_factory.mktemp("interop-js"))
    script = NodeScript(folder / "evaluate.mjs", server.url, SDK_SECRET)
    yield script
    script.close()


def _admin(server: Server, method: str, path: str, body: dict | None = None) -> dict:
    answer = requests.request(method, server.url + path, json=body, timeout=30,
                              headers={"Authorization": f"Bearer {ADMIN_SECRET}"})
    assert answer.ok, answer.text
    return answer.json()


def _python_ofrep(server: Server, count: int, flag: str = FLAG,
                  attributes: tuple[dict, ...] = ({},)) -> tuple[str, Counter[str], Counter[str]]:
    """The published Python provider's answers for user-0 .. user-(count-1) (with attributes[i % len] in the
    context of user-i), one provider per thread (each has its own HTTP session): the values as "1"/"0" ("d": the
    default after an error), the reasons, the errors."""
    clients = []
    for n in range(THREADS):
        domain = f"ofrep-interop-{n}"
        api.set_provider(OFREPProvider(server.url, headers_factory=lambda: {"Authorization": f"Bearer {SDK_SECRET}"},
                                       timeout=30), domain=domain)
        clients.append(api.get_client(domain))

    def run(n: int) -> list[tuple[int, str, str]]:
        out = []
        for i in range(n, count, THREADS):
            context = EvaluationContext(f"{PREFIX}{i}", attributes[i % len(attributes)])
            details = clients[n].get_boolean_details(flag, True, context)
            if details.error_code is not None:
                out.append((i, "d", str(details.error_code)))
            else:
                out.append((i, "1" if details.value else "0", str(details.reason)))
        return out

    with ThreadPoolExecutor(THREADS) as pool:
        answers = sorted(a for part in pool.map(run, range(THREADS)) for a in part)
    values = "".join(v for _, v, _ in answers)
    reasons = Counter(r for _, v, r in answers if v != "d")
    errors = Counter(r for _, v, r in answers if v == "d")
    return values, reasons, errors


def _native(client: FlagClient, count: int) -> str:
    return "".join("1" if client.is_enabled(FLAG, f"{PREFIX}{i}") else "0" for i in range(count))


def _differences(expected: str, found: str) -> list[tuple[str, str, str]]:
    return [(f"{PREFIX}{i}", e, f) for i, (e, f) in enumerate(zip(expected, found, strict=True)) if e != f][:10]


def _wait_for_revision(client: FlagClient, revision: int) -> None:
    assert wait_for(lambda: client.evaluate(FLAG, "probe").revision == revision, 30), "the SDK missed the change"


def _both(server: Server, js: NodeScript, count: int) -> tuple[tuple[str, Counter[str], Counter[str]], dict]:
    """The Python provider's answers (`_python_ofrep`) and the JavaScript provider's, asked at the same time."""
    with ThreadPoolExecutor(1) as pool:
        js_future = pool.submit(js.ask, {"flag": FLAG, "prefix": PREFIX, "count": count}, 240.0)
        python = _python_ofrep(server, count)
        return python, js_future.result()


@pytest.mark.slow  # 21,600 OFREP evaluations over HTTP by the published providers: ~5 ms of CPU each (server
# ~2.3, the Python provider ~2.3, the JavaScript one ~3), so about a minute on 2 idle cores
def test_published_ofrep_providers_agree_with_the_native_sdk_id_for_id(server: Server, js: NodeScript):
    _admin(server, "POST", "/api/v1/flags", {"key": FLAG})
    flag = _admin(server, "PUT", f"/api/v1/flags/{FLAG}/percent", {"percent": 30})
    native = FlagClient(server.url, sdk_key=SDK_SECRET)
    try:
        assert native.wait_until_ready(30)
        _wait_for_revision(native, flag["revision"])
        expected = _native(native, USERS)
        assert 2_700 < expected.count("1") < 3_300, expected.count("1")  # 30 %, give or take sampling

        (py_values, py_reasons, py_errors), js_answer = _both(server, js, USERS)
        assert not py_errors and py_reasons == Counter({"SPLIT": USERS}), (py_errors, py_reasons)
        assert py_values == expected, _differences(expected, py_values)
        assert not js_answer["errors"] and js_answer["reasons"] == {"SPLIT": USERS}, js_answer
        assert js_answer["values"] == expected, _differences(expected, js_answer["values"])

        # raised: each provider sees the change on its next evaluation, and the canary only gains users
        flag = _admin(server, "PUT", f"/api/v1/flags/{FLAG}/percent", {"percent": 60})
        _wait_for_revision(native, flag["revision"])
        raised = _native(native, CHANGED)
        gained = [(e, r) for e, r in zip(expected[:CHANGED], raised, strict=True) if e != r]
        assert gained and all(r == "1" for _, r in gained), gained[:10]
        (py_values, _, py_errors), js_answer = _both(server, js, CHANGED)
        assert not py_errors and py_values == raised, _differences(raised, py_values)
        assert not js_answer["errors"] and js_answer["values"] == raised, _differences(raised, js_answer["values"])

        # rolled back: nobody on the canary, and both providers say why
        _admin(server, "POST", f"/api/v1/flags/{FLAG}/rollback", {"reason": "interop test"})
        (py_values, py_reasons, py_errors), js_answer = _both(server, js, KILLED)
        assert py_values == "0" * KILLED and py_reasons == Counter({"DISABLED": KILLED}), (py_reasons, py_errors)
        assert js_answer["values"] == "0" * KILLED and js_answer["reasons"] == {"DISABLED": KILLED}, js_answer
    finally:
        native.close()


def test_context_attributes_reach_targeting_as_the_sdks_context(server: Server, js: NodeScript):
    """The other attributes of the OpenFeature context are the SDK's evaluation context: a flag rolling out to a
    segment (country NZ) at 50 %, bucketed by organisation, answers each provider as the native SDK answers."""
    key, count = "interop_targeted", 600
    segment = {"name": "nz", "conditions": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}
    _admin(server, "POST", "/api/v1/segments", segment)
    _admin(server, "POST", "/api/v1/flags", {"key": key})
    _admin(server, "PATCH", f"/api/v1/flags/{key}", {"eligible_segments": ["nz"], "bucket_by": "org"})
    flag = _admin(server, "PUT", f"/api/v1/flags/{key}/percent", {"percent": 50})
    attributes = tuple({"country": country, "org": f"org-{n}"} for n in range(20) for country in ("NZ", "AU"))
    native = FlagClient(server.url, sdk_key=SDK_SECRET)
    try:
        assert native.wait_until_ready(30)
        assert wait_for(lambda: native.evaluate(key, "probe").revision == flag["revision"], 30)
        expected = "".join("1" if native.is_enabled(key, f"{PREFIX}{i}", context=attributes[i % len(attributes)])
                           else "0" for i in range(count))
    finally:
        native.close()
    assert 0 < expected.count("1") < count // 2  # half of the users are outside the segment: never canary
    values, reasons, errors = _python_ofrep(server, count, key, attributes)
    assert not errors and values == expected, (errors, _differences(expected, values))
    assert set(reasons) == {"SPLIT", "TARGETING_MATCH"}, reasons
    answer = js.ask({"flag": key, "prefix": PREFIX, "count": count, "attributes": list(attributes)})
    assert not answer["errors"] and answer["values"] == expected, (answer["errors"], _differences(expected,
                                                                                                  answer["values"]))


def test_published_providers_get_ofreps_errors(server: Server, js: NodeScript):
    """An unknown flag is FLAG_NOT_FOUND to both, a wrong key an error, and the caller's default comes back."""
    for domain, secret in (("ofrep-errors", SDK_SECRET), ("ofrep-bad-key", "not-a-key-at-all")):
        api.set_provider(OFREPProvider(server.url, headers_factory=lambda s=secret: {"Authorization": f"Bearer {s}"}),
                         domain=domain)
    details = api.get_client("ofrep-errors").get_boolean_details("no_such_flag", True, EvaluationContext("u1"))
    assert details.value is True and str(details.error_code) == "FLAG_NOT_FOUND", details
    refused = api.get_client("ofrep-bad-key").get_boolean_details(FLAG, True, EvaluationContext("u1"))
    assert refused.value is True and str(refused.error_code) == "GENERAL" and "unauthorized" in str(refused), refused
    answer = js.ask({"flag": "no_such_flag", "prefix": PREFIX, "count": 3})
    assert answer["values"] == "ddd" and answer["errors"] == {"FLAG_NOT_FOUND": 3}, answer


@pytest.fixture(scope="module")
def web(js: NodeScript, server: Server) -> Iterator[NodeScript]:
    script = NodeScript(Path(js.proc.args[1]).with_name("web.mjs"), server.url, SDK_SECRET, str(POLL_MS))
    yield script
    script.close()


def test_the_published_web_provider_evaluates_in_bulk_and_polls_with_the_etag(server: Server, web: NodeScript):
    """`@openfeature/ofrep-web-provider` (static context, for browsers; run here on Node.js): each context change
    is one bulk evaluation, the answers agree with the SDK's rule, and its polls get 304 until a change, which it
    then picks up."""
    key = "interop_web"
    _admin(server, "POST", "/api/v1/flags", {"key": key})
    flag = _admin(server, "PUT", f"/api/v1/flags/{key}/percent", {"percent": 30})
    answer = web.ask({"cmd": "evaluate", "flag": key, "prefix": PREFIX, "count": WEB_USERS})
    expected = "".join("1" if is_canary(flag["salt"], f"{PREFIX}{i}", 30) else "0" for i in range(WEB_USERS))
    assert answer["values"] == expected and answer["reasons"] == {"SPLIT": WEB_USERS}, answer

    user = next(f"{PREFIX}{i}" for i in range(WEB_USERS, 10 * WEB_USERS)
                if is_canary(flag["salt"], f"{PREFIX}{i}", 60) and not is_canary(flag["salt"], f"{PREFIX}{i}", 30))
    quiet = web.ask({"cmd": "watch", "flag": key, "user": user, "until": True, "polls": 3, "timeout_ms": 60_000})
    assert quiet["value"] is False and quiet["statuses"].get("304", 0) >= 3 and "200" not in quiet["statuses"], quiet
    _admin(server, "PUT", f"/api/v1/flags/{key}/percent", {"percent": 60})
    changed = web.ask({"cmd": "watch", "flag": key, "user": user, "until": True, "timeout_ms": 60_000})
    assert changed["value"] is True and changed["statuses"].get("200", 0) >= 1 and changed["changed"] >= 1, changed
