"""Load through the reference client, evolution-langchain's EvolutionInference.

    python reference_client.py --root http://127.0.0.1:PORT --requests N --threads T

One shared EvolutionInference (as a user would share it), `invoke` called N times:
in a plain loop with --threads 1, else from a ThreadPoolExecutor with T workers.
The client is built before the clock starts; the first call's token fetch is timed,
as it is for `evolution bench`. Prints one JSON object on the last line:
{"requests", "ok", "errors", "seconds", "rps"}.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

from evolution_langchain import EvolutionInference

PROMPT = "Привет!"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--key-id", default="demo-key-id")
    parser.add_argument("--secret", default="demo-secret")
    parser.add_argument("--model", default="demo-model")
    args = parser.parse_args()

    llm = EvolutionInference(
        model=args.model,
        key_id=args.key_id,
        secret=args.secret,
        base_url=f"{args.root}/v1",
        auth_url=f"{args.root}/api/v1/auth/token",
    )

    def one(_: int) -> bool:
        try:
            return llm.invoke(PROMPT).endswith(PROMPT)
        except Exception:  # noqa: BLE001 - a failed call is counted, not fatal
            return False

    start = time.perf_counter()
    if args.threads <= 1:
        results = [one(i) for i in range(args.requests)]
    else:
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            results = list(pool.map(one, range(args.requests)))
    seconds = time.perf_counter() - start

    ok = sum(results)
    print(
        json.dumps(
            {
                "requests": args.requests,
                "ok": ok,
                "errors": args.requests - ok,
                "seconds": round(seconds, 3),
                "rps": args.requests / seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
