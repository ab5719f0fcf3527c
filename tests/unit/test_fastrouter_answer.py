"""When the fastrouter relays only the answer: the request is complete after its packet."""

from __future__ import annotations

import pytest

from brood.routers.fastrouter import body_sent


@pytest.mark.parametrize(
    ("pairs", "sent", "only_answer"),
    [
        ([(b"REQUEST_METHOD", b"GET")], 0, True),  # no CONTENT_LENGTH
        ([(b"CONTENT_LENGTH", b"")], 0, True),
        ([(b"CONTENT_LENGTH", b"0")], 0, True),
        ([(b"CONTENT_LENGTH", b"10")], 10, True),  # the body came with the packet
        ([(b"CONTENT_LENGTH", b"10")], 4, False),  # the rest still has to be relayed
        ([(b"CONTENT_LENGTH", b"ten")], 100, False),  # unreadable: relay both ways
        ([(b"HTTP_TRANSFER_ENCODING", b"chunked")], 0, False),
        ([(b"HTTP_UPGRADE", b"websocket"), (b"CONTENT_LENGTH", b"0")], 0, False),
    ],
)
def test_body_sent(pairs, sent, only_answer):
    assert body_sent(pairs, sent) is only_answer
