#!/usr/bin/env python3
"""Conformance of `evolution gateway`, judged by real OpenAI clients and curl.

gateway.sh builds the binaries, starts one emulator and a redis-server, and sets:

    EMULATOR_ROOT     http://127.0.0.1:PORT (from the emulator's listening line)
    EMULATOR_KEY_ID   key id the emulator was started with (--key ID:SECRET)
    EMULATOR_SECRET   its secret
    EMULATOR_MODEL    model id the emulator serves (default demo-model)
    GATEWAY_BIN       the `evolution` binary
    REDIS_URL         redis://127.0.0.1:PORT/ (the fleet check)

Each check starts the gateways it needs (`evolution gateway --listen 127.0.0.1:0`, the
upstream given by EVOLUTION_* variables) and stops them. The clients hold only a gateway
key: no check here has any token code.

Plain Python, self-counting: every check prints PASS/FAIL (with the traceback and the
gateways' logs on failure) and the last line is "N passed, M failed". Exit status is 0
only when nothing failed. `test_gateway.py NAME...` runs only those checks.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import httpx
import requests

ROOT = os.environ.get("EMULATOR_ROOT", "").rstrip("/")
KEY_ID = os.environ.get("EMULATOR_KEY_ID", "demo-key-id")
SECRET = os.environ.get("EMULATOR_SECRET", "demo-secret")
MODEL = os.environ.get("EMULATOR_MODEL", "demo-model")
GATEWAY_BIN = os.environ.get("GATEWAY_BIN", "")
REDIS_URL = os.environ.get("REDIS_URL", "")

CONTROL_URL = ROOT + "/_emulator/control"
STATS_URL = ROOT + "/_emulator/stats"

# What clients present to the gateway; never sent upstream.
GATEWAY_KEY = "gw-conformance-key"
# Gateways other than the main one use their own upstream key, so that each key's IAM
# count belongs to one check.
AUX_KEY_ID, AUX_SECRET = "aux-key", "aux-secret"
FLEET_KEY_ID, FLEET_SECRET = "fleet-key", "fleet-secret"

PROMPT = "Привет!"
TIMEOUT = 10  # seconds, per HTTP request
# Seconds to wait for a gateway's listening line.
START_TIMEOUT = int(os.environ.get("CONFORMANCE_START_TIMEOUT", "30"))
# Emulator tokens start with this; no answer of the gateway may carry one.
TOKEN_PREFIX = "evo_"
LISTENING = re.compile(r"^listening on (http://127\.0\.0\.1:[0-9]+)$")


def echo(key_id: str = KEY_ID, prompt: str = PROMPT) -> str:
    """The emulator's answer: it names the upstream key, so a test sees which one was used."""
    return f"[{key_id}] echo: {prompt}"


CHECKS: List[Tuple[str, Callable[[], None]]] = []


def check(fn: Callable[[], None]) -> Callable[[], None]:
    CHECKS.append((fn.__name__, fn))
    return fn


# --------------------------------------------------------------------------
# the emulator


def stats() -> dict:
    r = requests.get(STATS_URL, timeout=TIMEOUT)
    assert r.status_code == 200, f"GET {STATS_URL} -> {r.status_code} {r.text!r}"
    return r.json()


def control(command: str, **fields) -> dict:
    r = requests.post(CONTROL_URL, json={"command": command, **fields}, timeout=TIMEOUT)
    assert r.status_code == 200, f"{command} {fields} -> {r.status_code} {r.text!r}"
    return r.json()


def push_faults(fault: dict, times: int) -> None:
    for _ in range(times):
        control("push_fault", route="chat", fault=fault)


class upstream_faults:
    """Leaves the emulator clean after a check: no queued faults, no added latency, streams
    unpaced."""

    def __enter__(self) -> None:
        control("clear_faults")

    def __exit__(self, *exc) -> None:
        control("clear_faults")
        control("set_latency", route="chat", ms=0)
        control("set_stream_interval", ms=0)
        control("set_stream_chunks", chunks=0)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# gateway processes

GATEWAYS: List["Gateway"] = []


class Gateway:
    """One `evolution gateway` process on a free loopback port.

    Upstream settings come only from the environment given here (inherited EVOLUTION_*
    variables are dropped, and the working directory is an empty temporary one so that no
    .env is read). stdout's first line gives the address; stderr goes to a log file that
    a failed check prints.
    """

    def __init__(
        self,
        *flags: str,
        key_id: str = KEY_ID,
        secret: str = SECRET,
        root: str = ROOT,
        base_url: Optional[str] = None,
        keys: Optional[str] = GATEWAY_KEY,
        redis_url: Optional[str] = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVOLUTION_")}
        env.update(
            EVOLUTION_KEY_ID=key_id,
            EVOLUTION_SECRET=secret,
            EVOLUTION_BASE_URL=base_url or root + "/v1",
            EVOLUTION_TOKEN_URL=root + "/api/v1/auth/token",
            EVOLUTION_MODEL=MODEL,
            RUST_LOG=os.environ.get("RUST_LOG", "info"),
        )
        if keys is not None:
            env["EVOLUTION_GATEWAY_KEYS"] = keys
        if redis_url is not None:
            env["EVOLUTION_REDIS_URL"] = redis_url
        self.flags = flags
        self.cwd = tempfile.mkdtemp(prefix="evolution-gateway-cwd.")
        self.log = tempfile.NamedTemporaryFile(prefix="evolution-gateway.", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [GATEWAY_BIN, "gateway", "--listen", "127.0.0.1:0", *flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            cwd=self.cwd,
        )
        GATEWAYS.append(self)
        self.url = ""
        self._lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
        # Reads stdout to its end, so that later lines never block the gateway on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_listening(self) -> "Gateway":
        try:
            line = self._lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"gateway {self.flags} did not print its address in {START_TIMEOUT}s")
        text = (line or b"").decode(errors="replace").rstrip("\n")
        match = LISTENING.match(text)
        assert match, f"gateway {self.flags}: first stdout line {text!r} (exit {self.proc.poll()})"
        self.url = match.group(1)
        return self

    @property
    def host_port(self) -> Tuple[str, int]:
        host, port = self.url[len("http://"):].rsplit(":", 1)
        return host, int(port)

    def stop(self) -> None:
        """Stops the process (TERM, then KILL after 10 s) and removes its files."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if os.path.exists(self.log.name):
            os.unlink(self.log.name)
        shutil.rmtree(self.cwd, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        with open(self.log.name, errors="replace") as f:
            return "".join(f.readlines()[-lines:])


def start(*flags: str, **kw) -> Gateway:
    return Gateway(*flags, **kw).wait_listening()


def stop_all() -> None:
    while GATEWAYS:
        GATEWAYS.pop().stop()


MAIN: Optional[Gateway] = None


def main_gateway() -> Gateway:
    """The gateway most checks share: gateway key required, the emulator's main key."""
    global MAIN
    if MAIN is None or MAIN.proc.poll() is not None:
        MAIN = start()
    return MAIN


def auth(key: str = GATEWAY_KEY) -> Dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat_body(prompt: str = PROMPT, stream: bool = False) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": stream}


# --------------------------------------------------------------------------
# curl


@dataclass
class Answer:
    status: int
    headers: Dict[str, str]  # lower-case names; the last answer's block (after any 100)
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def curl(
    gw: Gateway,
    path: str,
    method: str = "GET",
    headers: Optional[Dict[str, str]] = None,
    data: Optional[bytes] = None,
    max_time: float = 30,
) -> Answer:
    """One request with the curl binary, as a shell user would send it."""
    with tempfile.TemporaryDirectory() as tmp:
        body_file, header_file = os.path.join(tmp, "body"), os.path.join(tmp, "headers")
        cmd = ["curl", "-sS", "--max-time", str(max_time), "-X", method, "-o", body_file,
               "-D", header_file, "-w", "%{http_code}"]
        for name, value in (headers or {}).items():
            cmd += ["-H", f"{name}: {value}"]
        if data is not None:
            data_file = os.path.join(tmp, "data")
            with open(data_file, "wb") as f:
                f.write(data)
            cmd += ["-H", "Content-Type: application/json", "--data-binary", "@" + data_file]
        cmd.append(gw.url + path)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=max_time + 10)
        assert done.returncode == 0, f"curl {method} {path}: exit {done.returncode}: {done.stderr}"
        with open(header_file, errors="replace") as f:
            raw = f.read()
        with open(body_file, "rb") as f:
            body = f.read()
    # The dump holds one block per answer (a 100 Continue comes first): keep the last.
    block = [b for b in re.split(r"\r?\n\r?\n", raw) if b.startswith("HTTP/")][-1]
    parsed = {}
    for line in block.splitlines()[1:]:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return Answer(int(done.stdout), parsed, body)


def assert_clean(a: Answer) -> None:
    """No answer carries an upstream token, the upstream secret or a gateway key."""
    text = a.body.decode(errors="replace") + "\n" + json.dumps(a.headers)
    for secret in (TOKEN_PREFIX, SECRET, AUX_SECRET, FLEET_SECRET, GATEWAY_KEY):
        assert secret not in text, f"answer carries {secret!r}: {a}"


def assert_request_id(a: Answer, sent: Optional[str] = None) -> None:
    rid = a.headers.get("x-request-id", "")
    assert rid, f"no x-request-id: {a.headers}"
    if sent is not None:
        assert rid == sent, f"x-request-id {rid!r}, sent {sent!r}"


def assert_error(a: Answer, status: int, code: str) -> dict:
    """An error in OpenAI's shape with this status and code; returns the error object."""
    assert a.status == status, f"status {a.status}, expected {status}: {a.body[:500]!r}"
    assert a.headers.get("content-type", "").startswith("application/json"), a.headers
    err = a.json()["error"]
    assert isinstance(err.get("message"), str) and err["message"], err
    assert isinstance(err.get("type"), str) and err["type"], err
    assert err.get("code") == code, f"code {err.get('code')!r}, expected {code!r}: {err}"
    assert_clean(a)
    assert_request_id(a)
    return err


# --------------------------------------------------------------------------
# the openai SDK: chat, stream, embeddings, models


def openai_client(gw: Gateway, api_key: str = GATEWAY_KEY):
    from openai import OpenAI

    # No SDK retries: a failure must show, not be retried away.
    return OpenAI(api_key=api_key, base_url=gw.url + "/v1", timeout=TIMEOUT, max_retries=0)


@check
def openai_chat() -> None:
    client = openai_client(main_gateway())
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"x-request-id": "conformance-openai-chat"},
    )
    assert raw.headers.get("x-request-id") == "conformance-openai-chat", raw.headers
    resp = raw.parse()
    assert resp.choices[0].message.content == echo(), resp
    assert resp.choices[0].finish_reason == "stop", resp


@check
def openai_stream() -> None:
    client = openai_client(main_gateway())
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    # The emulator sends the echo in several pieces: more than one chunk must arrive.
    assert len(chunks) >= 2, chunks
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == echo(), (text, echo())


@check
def openai_embeddings() -> None:
    client = openai_client(main_gateway())
    inputs = ["first text", "second text"]
    # The SDK asks for base64 by default and decodes it; also ask for floats explicitly.
    for kw in ({}, {"encoding_format": "float"}):
        resp = client.embeddings.create(model=MODEL, input=inputs, **kw)
        assert [d.index for d in resp.data] == [0, 1], resp
        dims = {len(d.embedding) for d in resp.data}
        assert len(dims) == 1 and dims.pop() > 0, resp
        for d in resp.data:
            assert all(isinstance(x, float) for x in d.embedding), d


@check
def openai_models() -> None:
    client = openai_client(main_gateway())
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids, ids


@check
def openai_wrong_key_is_authentication_error() -> None:
    from openai import AuthenticationError

    client = openai_client(main_gateway(), api_key=GATEWAY_KEY + "-wrong")
    try:
        client.models.list()
    except AuthenticationError as e:
        assert e.status_code == 401, e
    else:
        raise AssertionError("a wrong gateway key was accepted")


@check
def client_disconnect_drops_the_upstream_stream() -> None:
    gw = main_gateway()
    with upstream_faults():
        # 50 pieces 300 ms apart: the stream would last 15 s.
        control("set_stream_interval", ms=300)
        control("set_stream_chunks", chunks=50)
        with httpx.stream("POST", gw.url + "/v1/chat/completions", headers=auth(),
                          json=chat_body(stream=True), timeout=TIMEOUT) as r:
            assert r.status_code == 200, r
            # next(), not a loop with break: closing the generator would close the
            # connection before the check below.
            lines = r.iter_lines()
            assert next(lines).startswith("data: "), "no event"
            assert stats()["chat_streams_open"] == 1, stats()
            r.close()
        # The client hung up after one event: the upstream stream must go too.
        deadline = time.monotonic() + 3
        while stats()["chat_streams_open"] != 0:
            assert time.monotonic() < deadline, f"upstream stream still open 3 s later: {stats()}"
            time.sleep(0.05)


# --------------------------------------------------------------------------
# LangChain's ChatOpenAI


def chat_openai(gw: Gateway):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=MODEL, api_key=GATEWAY_KEY, base_url=gw.url + "/v1",
                      timeout=TIMEOUT, max_retries=0)


@check
def langchain_chat_openai_invoke() -> None:
    msg = chat_openai(main_gateway()).invoke(PROMPT)
    assert msg.content == echo(), msg


@check
def langchain_chat_openai_stream() -> None:
    chunks = list(chat_openai(main_gateway()).stream(PROMPT))
    texts = [c.content for c in chunks if c.content]
    assert len(texts) >= 2, chunks
    assert "".join(texts) == echo(), texts


@check
def one_iam_request_for_all_clients() -> None:
    # Every call above went through one gateway with one upstream key: the gateway
    # exchanged it once, and the clients never saw IAM.
    main_gateway()
    s = stats()
    assert s["iam_requests_by_key"].get(KEY_ID) == 1, s
    assert s["chat_by_key"].get(KEY_ID, 0) >= 1, s


# --------------------------------------------------------------------------
# the gateway's own routes


@check
def health_ready_and_metrics() -> None:
    gw = main_gateway()
    for path in ("/healthz", "/readyz"):
        a = curl(gw, path)
        assert a.status == 200, (path, a)
        assert_request_id(a)
    a = curl(gw, "/metrics")
    assert a.status == 200, a
    assert b"evolution_gateway_requests_total" in a.body, a.body[:500]
    assert_clean(a)


@check
def request_id_echoed_or_generated() -> None:
    gw = main_gateway()
    sent = curl(gw, "/v1/models", headers={**auth(), "x-request-id": "conformance-rid-1"})
    assert sent.status == 200, sent
    assert_request_id(sent, "conformance-rid-1")
    first, second = curl(gw, "/v1/models", headers=auth()), curl(gw, "/v1/models", headers=auth())
    assert_request_id(first)
    assert_request_id(second)
    assert first.headers["x-request-id"] != second.headers["x-request-id"], (first, second)


# --------------------------------------------------------------------------
# curl: every error status of the contract


@check
def error_400_malformed_json() -> None:
    gw = main_gateway()
    before = stats()["chat_requests"]
    a = curl(gw, "/v1/chat/completions", "POST", {**auth(), "x-request-id": "conformance-400"},
             data=b'{"model": "demo-model", "messages": [')
    assert_error(a, 400, "invalid_json")
    assert_request_id(a, "conformance-400")
    assert stats()["chat_requests"] == before, "a malformed body was sent upstream"


@check
def error_401_missing_key() -> None:
    gw = main_gateway()
    before = stats()["chat_requests"]
    a = curl(gw, "/v1/chat/completions", "POST", data=json.dumps(chat_body()).encode())
    assert_error(a, 401, "invalid_api_key")
    assert stats()["chat_requests"] == before, "an unauthenticated call was sent upstream"


@check
def error_401_wrong_key() -> None:
    gw = main_gateway()
    wrong = "gw-wrong-key-0123456789"
    before = stats()["chat_requests"]
    for headers in (auth(wrong), {"Authorization": wrong}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        a = curl(gw, "/v1/chat/completions", "POST", headers, data=json.dumps(chat_body()).encode())
        assert_error(a, 401, "invalid_api_key")
        assert wrong.encode() not in a.body, a
    a = curl(gw, "/v1/models", headers=auth(wrong))
    assert_error(a, 401, "invalid_api_key")
    assert stats()["chat_requests"] == before, "a call with a wrong key was sent upstream"


@check
def error_404_unknown_route() -> None:
    gw = main_gateway()
    for method, path in (("GET", "/v1/nope"), ("POST", "/v1/completions"), ("GET", "/")):
        a = curl(gw, path, method, auth(), data=b"{}" if method == "POST" else None)
        assert_error(a, 404, "unknown_route")


@check
def error_405_wrong_method() -> None:
    gw = main_gateway()
    for method, path in (("GET", "/v1/chat/completions"), ("DELETE", "/v1/models"),
                         ("GET", "/v1/embeddings")):
        a = curl(gw, path, method, auth())
        assert_error(a, 405, "method_not_allowed")


@check
def error_413_body_over_limit() -> None:
    gw = main_gateway()
    before = stats()["chat_requests"]
    # Valid JSON just over the default 4 MiB limit.
    big = json.dumps(chat_body("x" * (4 * 1024 * 1024 + 1))).encode()
    a = curl(gw, "/v1/chat/completions", "POST", auth(), data=big)
    assert_error(a, 413, "request_too_large")
    # ... and with a small configured limit, a normal request is over it.
    small = start("--max-body-bytes", "64", key_id=AUX_KEY_ID, secret=AUX_SECRET)
    a = curl(small, "/v1/chat/completions", "POST", auth(),
             data=json.dumps(chat_body("y" * 100)).encode())
    assert_error(a, 413, "request_too_large")
    a = curl(small, "/v1/chat/completions", "POST", auth(), data=b'{"messages":[]}')
    assert a.status != 413, a
    assert stats()["chat_requests"] <= before + 1, "an oversized body was sent upstream"


def expect_passthrough(status: int, kind: str) -> Answer:
    gw = main_gateway()
    message = f"conformance: upstream says {status}"
    with upstream_faults():
        push_faults({"kind": "status", "status": status, "message": message}, 1)
        a = curl(gw, "/v1/chat/completions", "POST", auth(), data=json.dumps(chat_body()).encode())
    assert a.status == status, a
    # The upstream's own body, unchanged.
    assert a.json() == {"error": {"message": message, "type": kind, "param": None,
                                  "code": "injected_fault"}}, a
    assert_clean(a)
    assert_request_id(a)
    return a


@check
def upstream_400_passed_through() -> None:
    expect_passthrough(400, "invalid_request_error")


@check
def upstream_404_passed_through() -> None:
    expect_passthrough(404, "invalid_request_error")


@check
def upstream_429_passed_through_with_retry_after() -> None:
    gw = main_gateway()
    message = "conformance: slow down"
    with upstream_faults():
        # Enough for every attempt the gateway's retry layer makes (it honours Retry-After).
        push_faults({"kind": "status", "status": 429, "message": message,
                     "headers": {"retry-after": "1"}}, 10)
        started = time.monotonic()
        a = curl(gw, "/v1/chat/completions", "POST", auth(), data=json.dumps(chat_body()).encode())
        took = time.monotonic() - started
    assert a.status == 429, a
    assert a.headers.get("retry-after") == "1", a.headers
    assert a.json()["error"]["message"] == message, a
    assert a.json()["error"]["type"] == "rate_limit_error", a
    assert_clean(a)
    assert_request_id(a)
    assert took < 20, f"took {took:.1f}s"


@check
def upstream_500_after_retries_is_502() -> None:
    gw = main_gateway()
    with upstream_faults():
        push_faults({"kind": "status", "status": 500, "message": "conformance: boom"}, 10)
        before = stats()["chat_by_status"].get("500", 0)
        a = curl(gw, "/v1/chat/completions", "POST", auth(), data=json.dumps(chat_body()).encode())
        attempts = stats()["chat_by_status"].get("500", 0) - before
    assert_error(a, 502, "upstream_error")
    assert attempts >= 2, f"the gateway did not retry a 500: {attempts} attempt(s)"


@check
def upstream_503_after_retries_is_503_with_retry_after() -> None:
    gw = main_gateway()
    with upstream_faults():
        push_faults({"kind": "status", "status": 503, "message": "conformance: maintenance",
                     "headers": {"retry-after": "1"}}, 10)
        a = curl(gw, "/v1/chat/completions", "POST", auth(), data=json.dumps(chat_body()).encode())
    assert_error(a, 503, "upstream_unavailable")
    assert a.headers.get("retry-after") == "1", a.headers


@check
def upstream_unreachable_is_502() -> None:
    port = closed_port()
    gw = start(key_id=AUX_KEY_ID, secret=AUX_SECRET, base_url=f"http://127.0.0.1:{port}/v1")
    a = curl(gw, "/v1/chat/completions", "POST", auth(), data=json.dumps(chat_body()).encode())
    assert_error(a, 502, "upstream_error")


@check
def upstream_timeout_is_504() -> None:
    gw = start("--request-timeout", "1", "--total-timeout", "2",
               key_id=AUX_KEY_ID, secret=AUX_SECRET)
    with upstream_faults():
        control("set_latency", route="chat", ms=4000)
        started = time.monotonic()
        a = curl(gw, "/v1/chat/completions", "POST", auth(), data=json.dumps(chat_body()).encode())
        took = time.monotonic() - started
    assert_error(a, 504, "upstream_timeout")
    # --total-timeout bounds the whole call, retries included.
    assert took < 3.5, f"took {took:.1f}s with --total-timeout 2"


@check
def load_shed_is_503_with_retry_after() -> None:
    gw = start("--max-in-flight", "1", key_id=AUX_KEY_ID, secret=AUX_SECRET)
    # The token first, so that the slow call below holds the only slot on the upstream.
    assert curl(gw, "/v1/models", headers=auth()).status == 200
    results: Dict[str, Answer] = {}

    def slow() -> None:
        results["slow"] = curl(gw, "/v1/chat/completions", "POST", auth(),
                               data=json.dumps(chat_body()).encode())

    with upstream_faults():
        control("set_latency", route="chat", ms=1500)
        before = stats()["chat_requests"]
        t = threading.Thread(target=slow)
        t.start()
        deadline = time.monotonic() + 5
        while stats()["chat_requests"] == before and time.monotonic() < deadline:
            time.sleep(0.02)
        shed = curl(gw, "/v1/chat/completions", "POST", auth(), data=json.dumps(chat_body()).encode())
        t.join(timeout=15)
    assert_error(shed, 503, "overloaded")
    assert shed.headers.get("retry-after", "").isdigit(), shed.headers
    assert results["slow"].status == 200, results["slow"]
    assert results["slow"].json()["choices"][0]["message"]["content"] == echo(AUX_KEY_ID)
    # Once the slot is free, calls are served again.
    again = curl(gw, "/v1/chat/completions", "POST", auth(), data=json.dumps(chat_body()).encode())
    assert again.status == 200, again


# --------------------------------------------------------------------------
# graceful shutdown


def refused(host_port: Tuple[str, int]) -> bool:
    """True once a new connection is refused. A connection the kernel queued just before the
    listener closed is reset instead: that is the moment of closing, not yet the answer."""
    try:
        with socket.create_connection(host_port, timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False


@check
def sigterm_finishes_the_stream_in_flight() -> None:
    gw = start("--drain-timeout", "20", key_id=AUX_KEY_ID, secret=AUX_SECRET)
    assert curl(gw, "/v1/models", headers=auth()).status == 200
    result: Dict[str, object] = {}
    first_event = threading.Event()

    def stream() -> None:
        lines: List[str] = []
        result["lines"] = lines
        try:
            with httpx.stream("POST", gw.url + "/v1/chat/completions", headers=auth(),
                              json=chat_body(stream=True), timeout=30) as r:
                result["status"] = r.status_code
                for line in r.iter_lines():
                    lines.append(line)
                    if line.startswith("data: "):
                        first_event.set()
        except Exception as e:  # reported by the assertions below
            result["error"] = repr(e)

    with upstream_faults():
        # A slow stream: 10 pieces 300 ms apart, the signal landing after the first.
        control("set_stream_interval", ms=300)
        control("set_stream_chunks", chunks=10)
        t = threading.Thread(target=stream)
        t.start()
        assert first_event.wait(timeout=5), f"no first event in 5 s: {result}"
        signalled = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        assert t.is_alive(), "the stream ended before the signal"
        # New connections are refused while the stream drains.
        while not refused(gw.host_port):
            assert time.monotonic() - signalled < 1.5, "still accepting 1.5 s after SIGTERM"
            time.sleep(0.05)
        assert gw.proc.poll() is None, "the gateway exited before its stream finished"
        t.join(timeout=30)
    assert "error" not in result, result
    assert result.get("status") == 200, result
    lines = result["lines"]
    data = [line[len("data: "):] for line in lines if line.startswith("data: ")]
    assert data and data[-1] == "[DONE]", lines
    text = "".join(
        (choice.get("delta", {}).get("content") or "")
        for payload in data[:-1]
        for choice in json.loads(payload)["choices"]
    )
    assert text == echo(AUX_KEY_ID), text
    assert len(data) >= 10, f"{len(data)} events for 10 pieces"
    assert gw.proc.wait(timeout=20) == 0, f"exit status {gw.proc.returncode}"


# --------------------------------------------------------------------------
# a fleet: three gateways, one redis, one token


@check
def fleet_of_three_shares_one_token() -> None:
    assert REDIS_URL, "REDIS_URL is not set (run tests/conformance/gateway.sh)"
    control("add_key", key_id=FLEET_KEY_ID, secret=FLEET_SECRET)
    # Started together: their first token fetches race, and the shared cache's lock decides.
    fleet = [Gateway(key_id=FLEET_KEY_ID, secret=FLEET_SECRET, redis_url=REDIS_URL)
             for _ in range(3)]
    for gw in fleet:
        gw.wait_listening()
    calls = 0
    for _ in range(3):
        for gw in fleet:
            a = curl(gw, "/v1/chat/completions", "POST", auth(), data=json.dumps(chat_body()).encode())
            assert a.status == 200, a
            assert a.json()["choices"][0]["message"]["content"] == echo(FLEET_KEY_ID), a
            calls += 1
    s = stats()
    assert s["chat_by_key"].get(FLEET_KEY_ID) == calls, s
    assert s["iam_requests_by_key"].get(FLEET_KEY_ID) == 1, s


# --------------------------------------------------------------------------


def main() -> int:
    missing = [name for name, value in (("EMULATOR_ROOT", ROOT), ("GATEWAY_BIN", GATEWAY_BIN))
               if not value]
    if missing:
        print(f"{', '.join(missing)} not set (run tests/conformance/gateway.sh)", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    only = set(sys.argv[1:])
    control("add_key", key_id=AUX_KEY_ID, secret=AUX_SECRET)
    passed = failed = 0
    try:
        for name, fn in CHECKS:
            if only and name not in only:
                continue
            started = time.monotonic()
            try:
                fn()
            except Exception:
                failed += 1
                print(f"FAIL {name} ({time.monotonic() - started:.2f}s)")
                print("    " + traceback.format_exc().rstrip().replace("\n", "\n    "))
                for gw in GATEWAYS:
                    print(f"    gateway {' '.join(gw.flags) or '(no flags)'} log:")
                    print("      " + gw.log_tail().rstrip().replace("\n", "\n      "))
            else:
                passed += 1
                print(f"PASS {name} ({time.monotonic() - started:.2f}s)")
            sys.stdout.flush()
            # Every gateway but the main one lives for one check.
            for gw in [g for g in GATEWAYS if g is not MAIN]:
                GATEWAYS.remove(gw)
                gw.stop()
    finally:
        stop_all()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
