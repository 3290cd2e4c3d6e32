"""Upload faults as they happen, between the OCI client and a real CNCF registry.

A blob goes up as one streamed PATCH (chunked transfer) between POST and PUT. When the stream
breaks or its answer is lost, the client asks the registry where the session stands (the
spec's upload status) and resumes from there; the CNCF registry cannot say (its upload URLs
carry a state token that is stale by then: 404), so there a new session starts. The proxy's
`answer_416` mode plays the registries that do answer the status."""

import os

import pytest

from lepton_ci.core.oci_client import OCIClient, sha256
from tests.support.fault_proxy import FaultProxy, Rule
from tests.support.services import Registry
from tests.support.token_server import TokenServer

pytestmark = pytest.mark.e2e
UPLOAD = r"/v2/faulty/blobs/uploads/."


@pytest.fixture(scope="module")
def blob():
    return os.urandom(9 * 1024 * 1024)


@pytest.fixture
def proxy(tmp_path):
    registry = Registry(tmp_path / "registry")
    p = FaultProxy(registry.host)
    yield p
    p.close()
    registry.stop()


def upload(proxy, blob):
    c = OCIClient(proxy.host, sleep=lambda s: None)
    c.upload_blob("faulty", sha256(blob), blob)
    calls = [(m, s) for m, _, s in proxy.log]
    assert c.get_blob("faulty", sha256(blob)) == blob
    return calls


def test_stream_landed_but_a_5xx_came_back_starts_a_new_session(proxy, blob):
    proxy.rules.append(Rule("PATCH", UPLOAD, 502, mode="after"))
    calls = upload(proxy, blob)
    # the status cannot be read with the now stale location (404), the blob is not there
    # yet (HEAD 404): a new session completes
    assert calls[:5] == [("POST", 202), ("PATCH", 502), ("GET", 404), ("HEAD", 404), ("POST", 202)]
    assert calls[-2:] == [("PATCH", 202), ("PUT", 201)]


def test_stream_landed_but_a_5xx_came_back_resumes_where_the_status_is_spoken(proxy, blob):
    proxy.answer_416 = True
    proxy.rules.append(Rule("PATCH", UPLOAD, 502, mode="after"))
    calls = upload(proxy, blob)
    # the registry says it holds every byte: nothing is sent again, the PUT completes
    assert calls == [("POST", 202), ("PATCH", 502), ("GET", 204), ("PUT", 201)]
    assert proxy.received == len(blob)


def test_answer_lost_resumes_where_the_status_is_spoken(proxy, blob):
    proxy.answer_416 = True
    proxy.rules.append(Rule("PATCH", UPLOAD, mode="lost"))
    calls = upload(proxy, blob)
    assert ("PATCH", -202) in calls and ("GET", 204) in calls
    assert calls.count(("POST", 202)) == 1 and proxy.received == len(blob)


def test_reset_mid_body_sends_the_blob_again(proxy, blob):
    proxy.rules.append(Rule("PATCH", UPLOAD, mode="reset"))
    calls = upload(proxy, blob)
    assert ("PATCH", -1) in calls and calls[-2:] == [("PATCH", 202), ("PUT", 201)]


def test_final_put_landed_but_its_answer_was_lost(proxy, blob):
    proxy.rules.append(Rule("PUT", UPLOAD, mode="lost"))
    calls = upload(proxy, blob)
    assert ("PUT", -201) in calls and calls.count(("POST", 202)) == 1


def test_session_that_cannot_be_resumed_starts_a_new_one(proxy, blob):
    proxy.answer_416 = True
    # the stream lands, its answer is lost, and the session's status cannot be read either
    proxy.rules.append(Rule("PATCH", UPLOAD, 500, mode="after"))
    proxy.rules.append(Rule("GET", UPLOAD, 500, times=10, mode="reject"))
    calls = upload(proxy, blob)
    assert ("GET", 500) in calls
    assert calls.count(("POST", 202)) == 2  # a new upload session, which completes


@pytest.mark.parametrize("at", [2, 3 * 1024 * 1024 + 12345, 9 * 1024 * 1024 - 1])
def test_a_stream_broken_mid_blob_resumes_with_exactly_the_bytes_that_follow(
    proxy, blob, tmp_path, at
):
    """Part of the blob landed before the connection broke: the registry says how much, and
    the resumed stream sends every byte after that and no other (from a file read in chunks,
    so the offset falls inside a chunk)."""
    proxy.answer_416 = True
    proxy.rules.append(Rule("PATCH", UPLOAD, mode="break", at=at))
    path = tmp_path / "layer"
    path.write_bytes(blob)
    c = OCIClient(proxy.host, sleep=lambda s: None)
    seen = []
    sent = c.upload_blob("faulty", sha256(blob), path, lambda done, size: seen.append(done))
    calls = [(m, s) for m, _, s in proxy.log]
    assert calls == [("POST", 202), ("PATCH", -202), ("GET", 204), ("PATCH", 202), ("PUT", 201)]
    assert sent == len(blob) + len(blob) - at
    assert seen[-1] == len(blob)
    assert c.calls == len(calls)  # every request counted, the streamed ones too
    assert c.get_blob("faulty", sha256(blob)) == blob


def test_an_upload_that_keeps_breaking_gives_up_after_its_tries_and_says_so(proxy, blob):
    from lepton_ci.core.oci_client import OCIError

    proxy.rules.append(Rule("PATCH", UPLOAD, mode="reset", times=1000))
    sleeps = []
    c = OCIClient(proxy.host, sleep=sleeps.append, max_retries=2)
    with pytest.raises(OCIError) as e:
        c.upload_blob("faulty", sha256(blob), blob)
    assert str(e.value).startswith(
        f"registry {proxy.host}: upload of {sha256(blob)[:19]} to faulty kept breaking off "
        "(3 tries)"
    )
    calls = [(m, s) for m, _, s in proxy.log]
    assert calls.count(("POST", 202)) == 3  # a new session per try
    assert calls.count(("PATCH", -1)) == 9  # and 3 streams in each, resumed twice
    # backoff between the streams of a try, and between tries; none after the last
    assert sleeps == [1, 2, 4, 1, 1, 2, 4, 2, 1, 2, 4]


def test_a_producer_of_unknown_size_reports_progress_against_zero(proxy, blob):
    """A layer streamed from tar and compression has no size until it is written."""
    seen = []
    c = OCIClient(proxy.host, sleep=lambda s: None)
    c.upload_blob("faulty", sha256(blob), lambda write: write(blob), lambda d, n: seen.append(n))
    assert seen and set(seen) == {0}
    assert c.get_blob("faulty", sha256(blob)) == blob


def test_a_producer_of_known_size_reports_progress_against_that_size(proxy, blob):
    """`build` passes a streamed layer's size when it knows it (a layer built before): the
    progress bar counts against it, not against the 0 a producer alone would give."""
    seen = []
    c = OCIClient(proxy.host, sleep=lambda s: None)
    c.upload_blob(
        "faulty",
        sha256(blob),
        lambda write: write(blob),
        lambda done, n: seen.append((done, n)),
        size=len(blob),
    )
    assert seen and {n for _, n in seen} == {len(blob)}
    assert seen[-1] == (len(blob), len(blob))


@pytest.mark.parametrize(("status", "sessions"), [(408, 1), (429, 1), (503, 1), (400, 2)])
def test_a_refused_stream_is_resumed_only_when_the_refusal_is_passing(
    proxy, blob, status, sessions
):
    """408, 429 and 5xx say "try again": the session is resumed. Any other refusal ends it and
    a new session starts."""
    proxy.rules.append(Rule("PATCH", UPLOAD, status))
    calls = upload(proxy, blob)
    assert ("PATCH", status) in calls
    assert calls.count(("POST", 202)) == sessions


def test_breaks_at_several_offsets_of_one_blob_resume_each_from_where_it_stands(proxy, blob):
    """Three breaks in one upload, the last one byte before the end: each resumed stream says
    where it starts (Content-Range) and sends exactly the bytes that follow; one session."""
    proxy.answer_416 = True
    offsets = [1024 * 1024 + 7, 5 * 1024 * 1024 + 3, len(blob) - 1]
    proxy.rules += [Rule("PATCH", UPLOAD, mode="break", at=at) for at in offsets]
    c = OCIClient(proxy.host, sleep=lambda s: None)
    sent = c.upload_blob("faulty", sha256(blob), blob)
    calls = [(m, s) for m, _, s in proxy.log]
    assert calls == [
        ("POST", 202),
        *[("PATCH", -202), ("GET", 204)] * 3,
        ("PATCH", 202),
        ("PUT", 201),
    ]
    last = len(blob) - 1
    assert proxy.ranges == ["", *(f"{at}-{last}" for at in offsets)]
    assert sent == len(blob) + sum(len(blob) - at for at in offsets)
    assert c.get_blob("faulty", sha256(blob)) == blob


def test_a_range_the_registry_refuses_with_416_resumes_from_the_status_it_reports(proxy, blob):
    """The status came from a replica that lags behind: the range sent from it does not start
    where the session stands, and the registry refuses it (416, no Range: the spec has the
    client ask). The client asks the status again and resumes from there, in the same
    session: it neither starts over nor appends bytes twice."""
    proxy.answer_416 = True
    at, lagging = 6 * 1024 * 1024, 2 * 1024 * 1024
    proxy.rules.append(Rule("PATCH", UPLOAD, mode="break", at=at))
    proxy.rules.append(Rule("GET", UPLOAD, mode="stale", at=lagging))
    c = OCIClient(proxy.host, sleep=lambda s: None)
    c.upload_blob("faulty", sha256(blob), blob)
    calls = [(m, s) for m, _, s in proxy.log]
    assert calls == [
        ("POST", 202),
        ("PATCH", -202),
        ("GET", 204),  # says 2 MiB
        ("PATCH", 416),  # 2 MiB- refused: the session holds 6 MiB
        ("GET", 204),  # says 6 MiB
        ("PATCH", 202),
        ("PUT", 201),
    ]
    last = len(blob) - 1
    assert proxy.ranges == ["", f"{lagging}-{last}", f"{at}-{last}"]
    assert c.get_blob("faulty", sha256(blob)) == blob


def test_all_of_the_blob_landed_before_the_break_goes_straight_to_the_put(proxy, blob):
    proxy.answer_416 = True
    proxy.rules.append(Rule("PATCH", UPLOAD, mode="lost"))
    calls = upload(proxy, blob)
    assert calls[:4] == [("POST", 202), ("PATCH", -202), ("GET", 204), ("PUT", 201)]
    assert proxy.received == len(blob)


def test_a_source_that_changes_size_while_resumed_is_an_error_not_a_hang(proxy, blob, tmp_path):
    """A resumed stream says its length; a file that shrank meanwhile cannot fill it."""
    from lepton_ci.core.oci_client import OCIError

    proxy.answer_416 = True
    proxy.rules.append(Rule("PATCH", UPLOAD, mode="break", at=1024 * 1024))
    path = tmp_path / "layer"
    path.write_bytes(blob)
    c = OCIClient(proxy.host, sleep=lambda s: None)

    def progress(done, size):
        if done >= 1024 * 1024 and path.stat().st_size == len(blob):
            path.write_bytes(blob[: len(blob) // 2])  # truncated under the upload

    with pytest.raises(OCIError, match="changed while it was uploaded"):
        c.upload_blob("faulty", sha256(blob), path, progress)


@pytest.fixture
def token_proxy(tmp_path):
    """The proxy in front of a registry that takes only bearer tokens from a token server."""
    tokens = TokenServer(tmp_path / "tokens", {"alice": "s3cret"})
    registry = Registry(tmp_path / "registry", auth=tokens.registry_auth())
    p = FaultProxy(registry.host)
    yield p, tokens
    p.close()
    registry.stop()
    tokens.close()


@pytest.mark.parametrize(
    ("where", "then"),
    [
        # the resumed stream is refused: renewed, asked where it stands, resumed from there
        ("PATCH", [("GET", 204), ("PATCH", 401), ("GET", 204), ("PATCH", 202), ("PUT", 201)]),
        # the status request is refused: renewed, asked again. Its challenge asks for `pull`
        # only (the registry asks by method): the renewed token keeps `push` too, or the
        # next stream would be refused after sending its whole body
        ("GET", [("GET", 401), ("GET", 204), ("PATCH", 202), ("PUT", 201)]),
        # the final PUT is refused: renewed, sent again
        ("PUT", [("GET", 204), ("PATCH", 202), ("PUT", 401), ("PUT", 201)]),
    ],
)
def test_a_token_that_expires_mid_upload_is_renewed_and_the_upload_goes_on(
    token_proxy, blob, where, then
):
    """The stream broke at 4 MiB, and the bearer token expires before the upload is done:
    from then on the registry answers every request carrying it with its 401 challenge. The
    client fetches a new token and goes on in the same session, from where it stands."""
    proxy, tokens = token_proxy
    proxy.answer_416 = True
    at = 4 * 1024 * 1024
    proxy.rules.append(Rule("PATCH", UPLOAD, mode="break", at=at))
    proxy.rules.append(Rule(where, UPLOAD, mode="expire"))
    c = OCIClient(proxy.host, auth=("alice", "s3cret"), sleep=lambda s: None)
    c.upload_blob("faulty", sha256(blob), blob)
    calls = [(m, s) for m, _, s in proxy.log]
    assert calls == [("POST", 401), ("POST", 202), ("PATCH", -202), *then]
    assert len(tokens.requests) == 2  # the first token, and the one that replaced it
    assert len(proxy.expired) == 1
    resent = len(blob) - at if where == "PATCH" else 0  # the refused stream's bytes
    assert c.uploaded_bytes == len(blob) + len(blob) - at + resent
    assert c.get_blob("faulty", sha256(blob)) == blob


BLOB_GET = r"/v2/faulty/blobs/sha256:"


def _stored(proxy, blob):
    OCIClient(proxy.upstream).upload_blob("faulty", sha256(blob), blob)
    return sha256(blob)


def _read(client, digest):
    got = bytearray()
    client.read_blob("faulty", digest, lambda f: got.extend(f.read()))
    return bytes(got)


@pytest.mark.parametrize("ignore_range", [False, True])
def test_a_download_broken_mid_blob_resumes_from_where_it_stopped(proxy, blob, ignore_range):
    """The body breaks off after 5 MiB and a bit: the client asks for the rest with a Range
    request; a registry that ignores the range sends the whole blob, whose first bytes the
    client skips. Either way the blob arrives whole, its digest checked."""
    digest = _stored(proxy, blob)
    proxy.ignore_range = ignore_range
    at = 5 * 1024 * 1024 + 777
    proxy.rules.append(Rule("GET", BLOB_GET, mode="cut", at=at))
    c = OCIClient(proxy.host, sleep=lambda s: None)
    assert _read(c, digest) == blob
    first, resumed = proxy.read_ranges
    start = int(resumed.removeprefix("bytes=").rstrip("-"))
    assert first == "" and 0 < start <= at
    assert c.downloaded_bytes == len(blob)  # each byte handed on once
    assert proxy.sent == at + (len(blob) if ignore_range else len(blob) - start)


def test_a_blob_served_corrupt_or_from_another_offset_is_refused(proxy, blob):
    from lepton_ci.core.oci_client import OCIError

    digest = _stored(proxy, blob)
    c = OCIClient(proxy.host, sleep=lambda s: None)
    real = c.session.request

    def flipped(method, url, **kw):  # a byte changed on the way
        r = real(method, url, **kw)
        chunks = r.iter_content

        def iter_content(size):
            for i, chunk in enumerate(chunks(size)):
                yield bytes([chunk[0] ^ 1]) + chunk[1:] if i == 3 else chunk

        r.iter_content = iter_content
        return r

    c.session.request = flipped
    with pytest.raises(OCIError, match=f"blob {digest[:19]} is corrupt"):
        _read(c, digest)

    def other_range(method, url, **kw):  # a resumed download answered from another offset
        if "Range" in (kw.get("headers") or {}):
            kw["headers"]["Range"] = "bytes=0-"
        return real(method, url, **kw)

    c.session.request = other_range
    proxy.rules.append(Rule("GET", BLOB_GET, mode="cut", at=3 << 20))
    with pytest.raises(OCIError, match=r"from byte \d+, it sent bytes 0-"):
        _read(c, digest)
