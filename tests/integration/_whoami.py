"""WSGI app for the churn tests: answers ``NODE PID`` so a client knows who served it.

NODE comes from the ``BROOD_TEST_NODE`` environment variable of the brood instance
(``--env`` or the process environment); PID is the worker's. Loaded with --wsgi-file.
"""

import os


def application(environ, start_response):
    body = f"{os.environ.get('BROOD_TEST_NODE', '?')} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
