"""Upload faults as they happen, between the OCI client and a real CNCF registry."""

import os

import pytest

from lepton_ci.core import oci_client
from lepton_ci.core.oci_client import OCIClient, sha256
from tests.support.fault_proxy import FaultProxy, Rule
from tests.support.services import Registry

pytestmark = pytest.mark.e2e
UPLOAD = r"/v2/faulty/blobs/uploads/."


@pytest.fixture(scope="module")
def blob():
    return os.urandom(9 * 1024 * 1024)  # larger than one 8 MiB chunk: two PATCHes


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
    assert c.get_blob("faulty", sha256(blob)) == blob
    return [(m, s) for m, _, s in proxy.log]


def test_chunk_landed_but_a_5xx_came_back_starts_a_new_session(proxy, blob):
    proxy.rules.append(Rule("PATCH", UPLOAD, 502, mode="after"))
    calls = upload(proxy, blob)
    # retried with the now stale location: the CNCF registry no longer knows it (404)
    assert calls[:3] == [("POST", 202), ("PATCH", 502), ("PATCH", 404)]
    assert calls.count(("POST", 202)) == 2  # a new upload session, which completes


def test_chunk_landed_but_a_5xx_came_back_resumes_where_416_is_spoken(proxy, blob):
    proxy.answer_416 = True
    proxy.rules.append(Rule("PATCH", UPLOAD, 502, mode="after", skip=1))
    calls = upload(proxy, blob)
    # the registry has the chunk: it says so (416) and the upload goes on after it
    assert ("PATCH", 502) in calls and ("PATCH", 416) in calls
    assert calls.count(("POST", 202)) == 1 and proxy.received < len(blob) * 2


def test_second_chunk_answer_lost_resumes_where_416_is_spoken(proxy, blob):
    proxy.answer_416 = True
    proxy.rules.append(Rule("PATCH", UPLOAD, mode="lost", skip=1))
    calls = upload(proxy, blob)
    assert ("PATCH", -202) in calls and ("PATCH", 416) in calls
    assert calls.count(("POST", 202)) == 1


def test_reset_mid_body_resends_the_chunk(proxy, blob):
    proxy.rules.append(Rule("PATCH", UPLOAD, mode="reset"))
    calls = upload(proxy, blob)
    assert ("PATCH", -1) in calls and calls.count(("PATCH", 202)) == 2


def test_final_put_landed_but_its_answer_was_lost(proxy, blob):
    proxy.rules.append(Rule("PUT", UPLOAD, mode="lost"))
    calls = upload(proxy, blob)
    assert ("PUT", -201) in calls and calls.count(("POST", 202)) == 1


def test_session_that_cannot_be_resumed_starts_a_new_one(proxy, blob, monkeypatch):
    monkeypatch.setattr(oci_client, "CHUNK", 1024 * 1024)
    # a chunk lands, its answer is lost, and the session's status cannot be read either
    proxy.rules.append(Rule("PATCH", UPLOAD, 500, mode="after", skip=2))
    proxy.rules.append(Rule("PATCH", UPLOAD, 416, times=1, skip=2))
    proxy.rules.append(Rule("GET", UPLOAD, 500, times=10))
    calls = upload(proxy, blob)
    assert ("PATCH", 416) in calls and ("GET", 500) in calls
    assert calls.count(("POST", 202)) == 2  # a new upload session, which completes
