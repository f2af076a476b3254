#!/usr/bin/env python3
"""Conformance of evolution-emulator, judged by the real reference clients.

The emulator must be running already; run.sh starts it and sets:

    EMULATOR_ROOT     http://127.0.0.1:PORT (from the emulator's listening line)
    EMULATOR_KEY_ID   key id the emulator was started with (--key ID:SECRET)
    EMULATOR_SECRET   its secret
    EMULATOR_MODEL    model id the emulator serves (default demo-model)

Plain Python, self-counting: every check prints PASS/FAIL (with the
traceback on failure) and the last line is "N passed, M failed".
Exit status is 0 only when nothing failed.

If a reference client and the emulator disagree, the emulator is wrong:
these tests assert what the clients need, not what the emulator happens to do.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from typing import Any, Callable, List, Tuple

import httpx
import requests

ROOT = os.environ.get("EMULATOR_ROOT", "").rstrip("/")
KEY_ID = os.environ.get("EMULATOR_KEY_ID", "demo-key-id")
SECRET = os.environ.get("EMULATOR_SECRET", "demo-secret")
MODEL = os.environ.get("EMULATOR_MODEL", "demo-model")

BASE_URL = ROOT + "/v1"
AUTH_URL = ROOT + "/api/v1/auth/token"
STATS_URL = ROOT + "/_emulator/stats"

PROMPT = "Привет!"
ECHO = f"[{KEY_ID}] echo: {PROMPT}"
TIMEOUT = 10  # seconds, per HTTP request

# The real IAM URL, hard-coded as a default in both reference packages.
REAL_IAM_URL = "https://iam.api.cloud.ru/api/v1/auth/token"

CHECKS: List[Tuple[str, Callable[[], None]]] = []


def check(fn: Callable[[], None]) -> Callable[[], None]:
    CHECKS.append((fn.__name__, fn))
    return fn


# --------------------------------------------------------------------------
# helpers


def stats() -> dict:
    """The emulator's counters (GET /_emulator/stats)."""
    r = requests.get(STATS_URL, timeout=TIMEOUT)
    assert r.status_code == 200, f"GET {STATS_URL} -> {r.status_code} {r.text!r}"
    data = r.json()
    assert isinstance(data, dict), f"stats is not a JSON object: {data!r}"
    return data


def counted(before: dict, after: dict) -> dict:
    """How much each integer counter of the stats grew between two snapshots."""
    return {
        name: after[name] - before.get(name, 0)
        for name, value in after.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }


def iam_token(key_id: str = KEY_ID, secret: str = SECRET) -> str:
    """Get a bearer token by POSTing to the IAM endpoint ourselves."""
    r = requests.post(AUTH_URL, json={"keyId": key_id, "secret": secret}, timeout=TIMEOUT)
    assert r.status_code == 200, f"POST {AUTH_URL} -> {r.status_code} {r.text!r}"
    token = r.json()["access_token"]
    assert isinstance(token, str) and token, f"bad access_token {token!r}"
    return token


def user_messages(last: str = PROMPT) -> list:
    return [{"role": "user", "content": last}]


def langchain_llm(secret: str = SECRET):
    from evolution_langchain import EvolutionInference

    return EvolutionInference(
        model=MODEL,
        key_id=KEY_ID,
        secret=secret,
        base_url=BASE_URL,
        auth_url=AUTH_URL,
        request_timeout=TIMEOUT,
    )


class evolution_openai_iam_url:
    """Point evolution-openai 1.0.4 at the emulator's IAM endpoint.

    evolution-openai 1.0.4 has no way to pass the IAM URL: EvolutionOpenAI /
    EvolutionAsyncOpenAI.__init__ call EvolutionTokenManager(key_id, secret),
    and the URL exists only as the default value of that constructor's
    `token_url` parameter (the README's EVOLUTION_TOKEN_URL variable is not
    read anywhere in the code). So this patches exactly that default value,
    for the duration of the `with` block, and nothing else.
    """

    def __enter__(self) -> None:
        from evolution_openai.token_manager import EvolutionTokenManager

        self.init = EvolutionTokenManager.__init__
        self.saved = self.init.__defaults__
        assert self.saved == (REAL_IAM_URL, 30), (
            f"evolution-openai changed its token manager defaults: {self.saved!r}"
        )
        self.init.__defaults__ = (AUTH_URL, 30)

    def __exit__(self, *exc: Any) -> None:
        self.init.__defaults__ = self.saved


# --------------------------------------------------------------------------
# raw protocol (what every client relies on)


@check
def raw_iam_token_response() -> None:
    r = requests.post(AUTH_URL, json={"keyId": KEY_ID, "secret": SECRET}, timeout=TIMEOUT)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body["access_token"], str) and body["access_token"], body
    # Both reference clients do arithmetic with expires_in (time.time() + x,
    # timedelta(seconds=x)): it must be a JSON number, and > 30 or they
    # refresh on every call (both keep a 30 s safety buffer).
    expires_in = body["expires_in"]
    assert isinstance(expires_in, int) and not isinstance(expires_in, bool), body
    assert expires_in > 30, body
    assert body["token_type"] == "Bearer", body
    assert body["refresh_token"] == "", body
    assert isinstance(body["id_token"], str), body


@check
def raw_iam_wrong_secret_is_401() -> None:
    r = requests.post(AUTH_URL, json={"keyId": KEY_ID, "secret": SECRET + "-wrong"}, timeout=TIMEOUT)
    assert r.status_code == 401, (r.status_code, r.text)


@check
def raw_sse_framing() -> None:
    token = iam_token()
    with httpx.stream(
        "POST",
        BASE_URL + "/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": MODEL, "messages": user_messages(), "stream": True},
        timeout=TIMEOUT,
    ) as r:
        assert r.status_code == 200, (r.status_code, r.read())
        assert r.headers.get("content-type", "").startswith("text/event-stream"), r.headers
        lines = list(r.iter_lines())
    data = [line[len("data: "):] for line in lines if line.startswith("data: ")]
    others = [line for line in lines if line and not line.startswith("data: ")]
    assert not others, f"non-data SSE lines: {others!r}"
    assert data and data[-1] == "[DONE]", f"stream does not end with [DONE]: {data[-3:]!r}"
    text = ""
    for payload in data[:-1]:
        chunk = json.loads(payload)
        assert chunk["object"] == "chat.completion.chunk", chunk
        for choice in chunk["choices"]:
            text += choice.get("delta", {}).get("content") or ""
    assert text == ECHO, (text, ECHO)


# --------------------------------------------------------------------------
# evolution-langchain 1.0.0


@check
def langchain_invoke_stream_and_token_reuse() -> None:
    before = stats()
    llm = langchain_llm()

    assert llm.invoke(PROMPT) == ECHO
    token = llm._token_manager._token
    assert token, "no token cached after the first invoke"

    # EvolutionInference does not implement _stream: BaseLLM.stream falls back
    # to one invoke and yields its whole text as a single chunk.
    chunks = list(llm.stream(PROMPT))
    assert chunks, "stream yielded nothing"
    assert "".join(chunks) == ECHO, chunks

    assert llm.invoke(PROMPT) == ECHO
    assert llm._token_manager._token == token, "token was not reused"

    # One IAM request for three chat requests; .stream() never asked for SSE.
    grew = counted(before, stats())
    assert grew["iam_requests"] == 1, grew
    assert grew["chat_requests"] == 3, grew
    assert grew["chat_streams"] == 0, grew


@check
def langchain_wrong_secret_raises() -> None:
    llm = langchain_llm(secret=SECRET + "-wrong")
    try:
        llm.invoke(PROMPT)
    except RuntimeError as e:
        msg = str(e)
        assert msg.startswith("Failed to obtain access token: 401"), msg
    else:
        raise AssertionError("invoke with a wrong secret did not raise")


# --------------------------------------------------------------------------
# official openai client, token fetched by hand


def openai_client(api_key: str):
    from openai import OpenAI

    return OpenAI(api_key=api_key, base_url=BASE_URL, timeout=TIMEOUT, max_retries=0)


@check
def openai_completion() -> None:
    client = openai_client(iam_token())
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are a test."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": PROMPT},
        ],
    )
    assert resp.object == "chat.completion", resp
    assert len(resp.choices) == 1, resp
    choice = resp.choices[0]
    assert choice.message.role == "assistant", resp
    assert choice.message.content == ECHO, resp
    assert choice.finish_reason == "stop", resp


@check
def openai_stream() -> None:
    client = openai_client(iam_token())
    stream = client.chat.completions.create(model=MODEL, messages=user_messages(), stream=True)
    text = ""
    finish = None
    count = 0
    for chunk in stream:
        count += 1
        assert chunk.object == "chat.completion.chunk", chunk
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    # Iterating to the end without an exception is the "ends cleanly" part;
    # the SDK closes the response once it has read [DONE] and drained it.
    assert stream.response.is_closed, "stream response not closed after iteration"
    assert count >= 1, "no chunks"
    assert text == ECHO, (text, ECHO)
    assert finish == "stop", finish


@check
def openai_models_list() -> None:
    client = openai_client(iam_token())
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids, ids


@check
def openai_invalid_token_is_authentication_error() -> None:
    import openai

    client = openai_client("not-a-valid-token")
    try:
        client.chat.completions.create(model=MODEL, messages=user_messages())
    except openai.AuthenticationError as e:
        assert e.status_code == 401, e
    else:
        raise AssertionError("invalid token did not raise openai.AuthenticationError")


@check
def openai_no_token_is_authentication_error() -> None:
    import openai

    # The SDK always sends "Authorization: Bearer <api_key>"; drop the header
    # to see the emulator refuse a request without any bearer token.
    client = openai_client("unused")
    try:
        client.models.list(extra_headers={"Authorization": openai.Omit()})
    except openai.AuthenticationError as e:
        assert e.status_code == 401, e
    else:
        raise AssertionError("request without a token did not raise openai.AuthenticationError")


# --------------------------------------------------------------------------
# evolution-openai 1.0.4


@check
def evolution_openai_completion_and_stream() -> None:
    from evolution_openai import EvolutionOpenAI

    before = stats()
    with evolution_openai_iam_url():
        client = EvolutionOpenAI(
            key_id=KEY_ID, secret=SECRET, base_url=BASE_URL, timeout=TIMEOUT, max_retries=0
        )

    resp = client.chat.completions.create(model=MODEL, messages=user_messages())
    assert resp.choices[0].message.content == ECHO, resp

    stream = client.chat.completions.create(model=MODEL, messages=user_messages(), stream=True)
    text = "".join(c.delta.content or "" for chunk in stream for c in chunk.choices)
    assert text == ECHO, (text, ECHO)

    ids = [m.id for m in client.models.list()]
    assert MODEL in ids, ids

    # The token fetched in the constructor serves all three requests.
    grew = counted(before, stats())
    assert grew["iam_requests"] == 1, grew
    assert grew["chat_requests"] == 2, grew
    assert grew["chat_streams"] == 1, grew
    assert grew["models_requests"] == 1, grew


@check
def evolution_openai_async_completion_and_stream() -> None:
    from evolution_openai import EvolutionAsyncOpenAI

    async def run() -> None:
        with evolution_openai_iam_url():
            client = EvolutionAsyncOpenAI(
                key_id=KEY_ID, secret=SECRET, base_url=BASE_URL, timeout=TIMEOUT, max_retries=0
            )
        try:
            resp = await client.chat.completions.create(model=MODEL, messages=user_messages())
            assert resp.choices[0].message.content == ECHO, resp
            stream = await client.chat.completions.create(
                model=MODEL, messages=user_messages(), stream=True
            )
            text = ""
            async for chunk in stream:
                for c in chunk.choices:
                    text += c.delta.content or ""
            assert text == ECHO, (text, ECHO)
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(run(), timeout=4 * TIMEOUT))


@check
def evolution_openai_wrong_secret_raises() -> None:
    from evolution_openai import EvolutionAuthError, EvolutionOpenAI

    try:
        with evolution_openai_iam_url():
            EvolutionOpenAI(key_id=KEY_ID, secret=SECRET + "-wrong", base_url=BASE_URL)
    except EvolutionAuthError as e:
        assert e.status_code == 401, e
    else:
        raise AssertionError("EvolutionOpenAI with a wrong secret did not raise")


# --------------------------------------------------------------------------


def main() -> int:
    if not ROOT:
        print("EMULATOR_ROOT is not set (run tests/conformance/run.sh)", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    only = set(sys.argv[1:])
    passed = failed = 0
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
        else:
            passed += 1
            print(f"PASS {name} ({time.monotonic() - started:.2f}s)")
        sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
