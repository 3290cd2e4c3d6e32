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
    assert calls == [("POST", 202), ("PATCH", 502), ("GET", 204), ("PATCH", 202), ("PUT", 201)]
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
