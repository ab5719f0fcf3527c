"""Two tiers of routers joined by ``--fastrouter-resubscribe``: a worker pool announces
to a fastrouter, which announces itself to the HTTP router in front (as uWSGI 2.0 does),
so a request goes client -> HTTP router -> fastrouter -> worker."""

from __future__ import annotations

import re

from _broodkit import http_get, wait_until


def test_a_request_crosses_both_tiers(start_brood, hello_app) -> None:
    front = start_brood("--master", "--http", "127.0.0.1:0",
                        "--http-subscription-server", "127.0.0.1:0")
    (bound,) = front.wait_for_log(r"http subscription server bound on (127\.0\.0\.1:\d+) fd")
    lower = start_brood("--master", "--fastrouter", "127.0.0.1:0",
                        "--fastrouter-subscription-server", "127.0.0.1:0",
                        "--fastrouter-resubscribe", bound[1])
    (lower_ss,) = lower.wait_for_log(
        r"fastrouter subscription server bound on (127\.0\.0\.1:\d+) fd")
    lower_addr = lower.address_of("fastrouter socket 0")
    pool = start_brood("--master", "--socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                       "--disable-logging", "--subscribe-to", f"{lower_ss[1]}:localhost")
    node = pool.address_of()
    lower.wait_for_log(re.escape(f"localhost => new node: {node}"))
    # The front knows the fastrouter, not the worker pool behind it.
    front.wait_for_log(re.escape(f"localhost => new node: {lower_addr}"))
    assert f"new node: {node}" not in front.log()

    def served() -> tuple[int, bytes] | None:
        try:
            answer = http_get(front.address_of("http socket 0"))
        except OSError:
            return None
        return answer if answer[0] == 200 else None

    assert wait_until(served, timeout=10, what="an answer through both tiers")[1] == (
        b"Hello World")
