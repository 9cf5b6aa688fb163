"""Hypothesis over the HTTP side's decoders: the request reader, the Range parser and the
gateway path parser take any input and either answer it within bounds or refuse it with
their own error, never another exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.http.gateway import GatewayError, parse_gateway_path
from p2pd.http.ranges import MAX_RANGES, RangeNotSatisfiable, parse_range, parse_ranges
from p2pd.http.wire import MAX_HEAD, BadRequest, HTTPConnection

CID_TEXT = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"

token = st.text(st.sampled_from("abcXYZ019-_.~%/?=&:; \t\r\n\x00\xff"), max_size=40)


@st.composite
def requests(draw):
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "G ET", "", "get"]))
    target = draw(st.one_of(token, st.just("/ipfs/" + CID_TEXT), st.just("/")))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", ""]))
    headers = draw(st.lists(st.tuples(token, token), max_size=8))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (head + "\r\n").encode("latin-1", "replace") + draw(st.binary(max_size=64))


def _feed(data: bytes, cuts: list[int]) -> None:
    conn = HTTPConnection()
    pos = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        conn.receive_data(data[pos:cut])
        pos = cut
        try:
            request = conn.next_request()
        except (BadRequest, EOFError) as exc:
            if isinstance(exc, BadRequest):
                assert exc.status in (400, 405, 414, 431)
            return
        if request is not None:
            assert request.method in ("GET", "HEAD") and request.path.startswith("/")
            assert sum(len(k) + len(v) for k, v in request.headers.items()) <= MAX_HEAD
            conn.body_finished()
            return


@settings(max_examples=300, deadline=None)
@given(requests(), st.lists(st.integers(0, 400), max_size=4))
def test_request_reader_answers_or_refuses_any_request_shape(data, cuts):
    _feed(data, cuts)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512), st.lists(st.integers(0, 600), max_size=4))
def test_request_reader_answers_or_refuses_any_bytes(data, cuts):
    _feed(data, cuts)


range_text = st.one_of(
    st.text(st.sampled_from("bytes=0123456789-, \t"), max_size=60),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.one_of(st.just(""), st.integers(0, 10**30)),
              st.one_of(st.just(""), st.integers(0, 10**30))),
    st.text(max_size=300),
)


@settings(max_examples=500, deadline=None)
@given(range_text, st.integers(0, 1 << 40))
def test_a_range_is_inside_the_content_or_refused(header, size):
    try:
        got = parse_range(header, size)
    except RangeNotSatisfiable as exc:
        assert exc.size == size
        return
    if got is not None:
        first, last = got
        assert 0 <= first <= last < size


@settings(max_examples=500, deadline=None)
@given(st.one_of(range_text, st.lists(range_text.map(lambda t: t.removeprefix("bytes=")),
                                      max_size=20).map(lambda xs: "bytes=" + ",".join(xs))),
       st.integers(0, 1 << 40))
def test_several_ranges_are_inside_sorted_and_apart_or_refused(header, size):
    try:
        got = parse_ranges(header, size)
    except RangeNotSatisfiable as exc:
        assert exc.size == size
        return
    if got is not None:
        assert 1 <= len(got) <= MAX_RANGES
        for (first, last), after in zip(got, [*got[1:], None], strict=True):
            assert 0 <= first <= last < size
            if after is not None:
                assert after[0] > last + 1  # sorted, neither overlapping nor touching


segment = st.one_of(st.text(max_size=12), st.sampled_from(["..", ".", "%2e%2e", "%2F", "%00",
                                                            "%ff", "a%20b", ""]))


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=200),
                 st.builds(lambda segs: "/ipfs/" + CID_TEXT + "/" + "/".join(segs),
                           st.lists(segment, max_size=8))))
def test_a_gateway_path_never_names_a_segment_that_could_escape(path):
    try:
        gp = parse_gateway_path(path)
    except GatewayError as exc:
        assert exc.status in (400, 404, 414)
        return
    for name in gp.segments:
        assert name not in ("", ".", "..") and "/" not in name and "\0" not in name
