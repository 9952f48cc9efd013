"""Request bodies over PARSE_IN_ONE_BYTES are parsed in pieces (be.api.common.loads),
so no single call holds the interpreter for long; the answer is json.loads's."""
import json

import pytest

from be.api import common


def _big(value):
    """``value`` padded with a string past PARSE_IN_ONE_BYTES."""
    return dict(value, padding="字" * (common.PARSE_IN_ONE_BYTES // 2 + 1))


@pytest.mark.parametrize("value", [
    {"user_id": "u", "book_info": {"id": "b", "tags": ["小说", "经典"], "pages": 12,
                                   "price": None, "ok": True, "ratio": 1.5e3}},
    {"nested": [[[{"a": [1, -2, 3.25]}]]], "escapes": "quote \" backslash \\ newline \n tab \t \u0041",
     "emoji": "😀", "empty": {}, "list": []},
])
def test_a_large_body_parses_as_json_loads_does(value):
    data = _big(value)
    for encoding in ("utf-8", "utf-16", "utf-32"):
        raw = json.dumps(data, ensure_ascii=False).encode(encoding)
        assert len(raw) > common.PARSE_IN_ONE_BYTES
        assert common.loads(raw) == json.loads(raw) == data


def test_a_large_body_that_is_not_json_is_a_value_error():
    raw = json.dumps(_big({})).encode()
    for broken in (raw[:-1], raw + b"x", b"\xff" + raw, raw.replace(b"{", b"[", 1)):
        with pytest.raises(ValueError):
            common.loads(broken)


def test_a_large_body_nested_too_deeply_is_a_recursion_error():
    raw = b"[" * 100_000 + b"]" * 100_000 + b" " * common.PARSE_IN_ONE_BYTES
    with pytest.raises(RecursionError):
        common.loads(raw)
