"""A client for the OCI distribution API over requests: one object, handed in.

Timeouts on every call; bounded retries with backoff on 5xx, broken connections and failed
uploads (a broken stream resumes from the offset the registry reports, a refused range (416)
asks it again, a session that cannot resume starts a new one); Basic and Bearer-token auth
from LEPTON_REGISTRY_USERNAME/PASSWORD or the docker config, a token that expires mid-upload
renewed with every scope held; credentials masked, never printed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import queue
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from lepton_ci.core import interrupt
from lepton_ci.core.errors import Interrupted, LeptonError
from lepton_ci.core.escape import clean_line

if TYPE_CHECKING:
    import requests

    from lepton_ci.core.gha import Runtime

CHUNK = 8 * 1024 * 1024
_DOWNLOAD_CHUNK = 1 << 20
_MANIFEST_MAX = 4 << 20  # the distribution spec's limit registries must accept

MANIFEST_OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX_OCI = "application/vnd.oci.image.index.v1+json"
CONFIG_OCI = "application/vnd.oci.image.config.v1+json"
LAYER_OCI = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"  # uncompressed
MANIFEST_DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
LIST_DOCKER = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (MANIFEST_OCI, MANIFEST_DOCKER, INDEX_OCI, LIST_DOCKER)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class OCIError(LeptonError):
    """A container registry call failed for good."""


@dataclass(frozen=True)
class Ref:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        rest, _, digest_part = text.partition("@")
        digest = digest_part or None
        first, _, remainder = rest.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, remainder
        else:
            registry, path = "docker.io", rest
        tag = None
        if ":" in path.rsplit("/", 1)[-1]:
            path, tag = path.rsplit(":", 1)
        if not re.fullmatch(
            r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*", path
        ):
            raise OCIError(
                f"`{text}` is not a valid image reference",
                hint="write it as REGISTRY/NAME[:TAG], e.g. 127.0.0.1:5000/digits:1.0.0",
            )
        return cls(registry, path, tag, digest)

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        s = f"{self.registry}/{self.repository}"
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def is_loopback(registry: str) -> bool:
    """A registry on this machine: the only kind spoken to over plain HTTP by default."""
    return registry.split(":")[0] in ("127.0.0.1", "localhost", "::1")


def credentials(registry: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """From LEPTON_REGISTRY_USERNAME/PASSWORD, else the docker config's `auths`."""
    if env.get("LEPTON_REGISTRY_USERNAME"):
        return env["LEPTON_REGISTRY_USERNAME"], env.get("LEPTON_REGISTRY_PASSWORD", "")
    home = env.get("HOME") or str(Path.home())
    cfg = Path(env.get("DOCKER_CONFIG") or Path(home) / ".docker") / "config.json"
    if not cfg.is_file():
        return None
    try:
        auths = json.loads(cfg.read_text()).get("auths", {})
    except ValueError:
        raise OCIError(f"{cfg}: not valid JSON", hint="fix or remove the file") from None
    for key in (registry, f"https://{registry}", f"http://{registry}"):
        entry = auths.get(key)
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
    return None


ProgressFn = Callable[[int, int], None]


class OCIClient:
    def __init__(
        self,
        registry: str,
        *,
        auth: tuple[str, str] | None = None,
        insecure: bool | None = None,
        session: requests.Session | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import requests

        plain = insecure if insecure is not None else is_loopback(registry)
        scheme = "http" if plain else "https"
        self.registry = registry
        self.base = f"{scheme}://{registry}"
        self.session = session or requests.Session()
        self.auth = auth
        self.timeout = timeout
        self.max_retries = max_retries
        self.sleep = sleep
        self._tokens: dict[str, tuple[str, float]] = {}  # repo -> (Authorization, expiry)
        self._scopes: dict[str, dict[str, set[str]]] = {}  # repo -> resource -> actions held
        self.uploaded_bytes = 0
        self.downloaded_bytes = 0
        self.calls = 0
        self.lock = threading.Lock()  # layers upload in parallel
        self.platform_note = ""  # which platform of an index image_manifest picked

    # -- transport -------------------------------------------------------------------------

    def _authorize(self, resp: requests.Response, scope_key: str) -> bool:
        challenge = resp.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("basic"):
            if self.auth is None:
                return False
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            self._tokens[scope_key] = (f"Basic {token}", float("inf"))
            return True
        if challenge.lower().startswith("bearer"):
            return self._fetch_token(challenge, scope_key)
        return False

    def _fetch_token(self, challenge: str, scope_key: str) -> bool:
        """The token flow of the distribution spec (GHCR, Docker Hub, `auth: token`): scopes
        may come space-separated in one challenge; each is sent as its own `scope=`."""
        import requests

        params = re.findall(r'(\w+)="([^"]*)"', challenge)
        realm = next((v for k, v in params if k == "realm"), "")
        query: list[tuple[str, str]] = [(k, v) for k, v in params if k == "service"]
        # A renewal asks for every scope held before as well: a registry challenges a GET
        # for `pull` only, and a pull-only token in place of the push token would get the
        # next PATCH of the upload refused after it streamed its whole body.
        held = self._scopes.setdefault(scope_key, {})
        for one in (one for k, v in params if k == "scope" for one in v.split()):
            resource, _, actions = one.rpartition(":")
            held.setdefault(resource, set()).update(filter(None, actions.split(",")))
        query += [("scope", f"{r}:{','.join(sorted(a))}") for r, a in held.items()]
        if self.auth is not None:
            query.append(("account", self.auth[0]))
        if not realm.startswith(("https://", "http://")):
            raise OCIError(
                f"registry {self.registry} asked for a token from {realm!r}, not an http(s) URL",
                hint="is this really a container registry?",
            )
        if self.auth is not None and self.base.startswith("https:") and realm.startswith("http:"):
            # The password would cross the network in the clear, to whatever host the
            # registry named: a registry served over https never needs that.
            raise OCIError(
                f"registry {self.registry} asked for a token from {realm!r} over plain http; "
                "the credentials were not sent",
                hint="is this really the registry? its token server must be https",
            )
        try:
            tr = self.session.get(realm, params=query, auth=self.auth, timeout=self.timeout)
        except requests.RequestException as e:
            raise OCIError(
                f"registry {self.registry}: its token server {realm} did not answer "
                f"({type(e).__name__})",
                hint="retry later; if it persists, check the registry's status page",
            ) from None
        if tr.status_code != 200:
            return False
        try:
            body = tr.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise OCIError(f"registry {self.registry}: its token server {realm} sent no token")
        # Refreshed a little before it expires; 60 s is the spec's default lifetime.
        expires = time.monotonic() + max(float(body.get("expires_in") or 60) - 10, 1)
        self._tokens[scope_key] = (f"Bearer {token}", expires)
        return True

    def request(
        self,
        method: str,
        url: str,
        *,
        repo: str,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> requests.Response:
        """One call with auth and retries; the caller judges the final status."""
        import requests

        full = url if url.startswith("http") else f"{self.base}{url}"
        attempt, authed = 0, False
        while True:
            h = dict(headers or {})
            held = self._tokens.get(repo)
            if held is not None and time.monotonic() < held[1]:
                h["Authorization"] = held[0]
            self.calls += 1
            try:
                resp = self.session.request(method, full, headers=h, timeout=self.timeout, **kw)
            except (requests.ConnectionError, requests.Timeout) as e:
                if attempt >= self.max_retries:
                    raise OCIError(
                        f"registry {self.registry} unreachable after {attempt + 1} tries "
                        f"({type(e).__name__})",
                        hint="is the registry running, and is the image name right?",
                    ) from None
                self.sleep(min(2**attempt, 30))
                attempt += 1
                continue
            except (requests.TooManyRedirects, requests.exceptions.InvalidSchema) as e:
                # Where the registry sent the request: a loop, or a file:// or ftp:// URL.
                raise OCIError(
                    f"registry {self.registry}: {method} {url.split('?')[0]} was redirected "
                    f"nowhere a registry answers ({type(e).__name__})",
                    hint="is this really a container registry? check the image name",
                ) from None
            if resp.status_code == 401 and not authed:  # no token, or it expired mid-upload
                authed = True
                if self._authorize(resp, repo):
                    continue
            if resp.status_code == 401:
                who = f"user {self.auth[0]!r}" if self.auth else "no credentials"
                raise OCIError(
                    f"registry {self.registry} refused {who} for {repo} (401 unauthorized)",
                    hint="check LEPTON_REGISTRY_USERNAME/LEPTON_REGISTRY_PASSWORD or "
                    "`docker login` (the docker config's auths)",
                )
            if resp.status_code >= 500 and attempt < self.max_retries:
                self.sleep(min(2**attempt, 30))
                attempt += 1
                continue
            return resp

    def _fail(self, what: str, resp: requests.Response) -> OCIError:
        # At most 300 bytes of the body (a streamed answer's may never end), on one line: the
        # registry's words must not print a `fix:` line of their own under ours.
        detail = clean_line(next(resp.iter_content(300), b"").decode("utf-8", "replace")).strip()
        # A page that quotes the request (some registries and proxies do) quotes its
        # credentials: none of them is printed, in Actions or any other CI's log.
        for secret in self._secrets():
            detail = detail.replace(secret, "***")
        return OCIError(f"registry {self.registry}: {what} failed: {resp.status_code} {detail}")

    def _secrets(self) -> list[str]:
        held = [h.split(" ", 1)[-1] for h, _ in self._tokens.values()]  # Basic's and Bearer's
        if self.auth is not None:
            basic = f"{self.auth[0]}:{self.auth[1]}".encode()
            held += [self.auth[1], base64.b64encode(basic).decode()]
        return sorted({s for s in held if len(s) >= 4}, key=len, reverse=True)

    # -- blobs -----------------------------------------------------------------------------

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo)
        return r.status_code == 200

    def get_blob(self, repo: str, digest: str, size: int | None = None) -> bytes:
        """A blob, in memory; with `size` (its descriptor's), one that goes on past it is
        refused as it arrives (an image config that never ends must not fill the memory)."""
        what = f"blob {digest[:19]} of {repo}"
        if size is None:
            r = self.request("GET", f"/v2/{repo}/blobs/{digest}", repo=repo)
            if r.status_code != 200:
                raise self._fail(f"GET {what}", r)
            body = r.content
        else:
            _, body = self._small_get(f"/v2/{repo}/blobs/{digest}", repo, {}, size, what)
        if sha256(body) != digest:
            raise OCIError(f"registry {self.registry}: blob {digest[:19]} is corrupt")
        return body

    def read_blob(self, repo: str, digest: str, read: Callable[[IO[bytes]], None]) -> None:
        """Stream a blob to `read` as a file object, a chunk at a time (a base layer of
        hundreds of MB is never held in memory); its digest is checked once read to the end."""
        stream = _ChunkReader(self.blob_chunks(repo, digest))
        read(io.BufferedReader(stream, 1 << 20))
        stream.drain()

    def blob_chunks(
        self, repo: str, digest: str, progress: ProgressFn | None = None, size: int = 0
    ) -> Iterator[bytes]:
        """A blob's bytes, a chunk at a time; its digest is checked after the last chunk (an
        OCIError then: the caller must not keep what it made of the bytes). With `size` (its
        descriptor's), a blob that goes on past it is refused at once. A download that
        breaks off resumes where it stopped with an HTTP Range request (at most max_retries
        times in a row); a registry that ignores the range sends the blob again from the
        start, and the bytes already had are skipped."""
        import requests

        url = f"/v2/{repo}/blobs/{digest}"
        h = hashlib.sha256()
        got, breaks = 0, 0
        r = self.request("GET", url, repo=repo, stream=True)
        while True:
            with contextlib.closing(r):
                if r.status_code not in (200, 206):
                    raise self._fail(f"GET blob {digest[:19]} of {repo}", r)
                skip = got if r.status_code == 200 else 0
                if r.status_code == 206 and not _range_starts(r.headers, got):
                    raise OCIError(
                        f"registry {self.registry}: asked for blob {digest[:19]} of {repo} "
                        f"from byte {got}, it sent {r.headers.get('Content-Range') or 'no range'}"
                    )
                length = int(r.headers.get("Content-Length") or 0)
                received = 0
                try:
                    for chunk in r.iter_content(_DOWNLOAD_CHUNK):
                        received += len(chunk)
                        if skip:  # the registry ignored the range: drop what we had
                            cut = min(skip, len(chunk))
                            skip -= cut
                            chunk = chunk[cut:]
                            if not chunk:
                                continue
                        if size and got + len(chunk) > size:
                            # A blob that never ends (or is bigger than its manifest says)
                            # is refused here, not read on until the disk or the job's
                            # time runs out: its digest could only be judged at the end.
                            raise OCIError(
                                f"registry {self.registry}: blob {digest[:19]} of {repo} "
                                f"goes on past the {size} bytes its manifest names; refused",
                                hint="the registry (or a proxy before it) serves another "
                                "blob than the image's: retry, then report it to its owner",
                            )
                        h.update(chunk)
                        got += len(chunk)
                        with self.lock:
                            self.downloaded_bytes += len(chunk)
                        if progress:
                            progress(got, size)
                        yield chunk
                        breaks = 0  # bytes arrived: the next break has its tries again
                    if not length or received >= length:
                        break
                    why = f"the connection closed after {received} of {length} bytes"
                except (
                    requests.ConnectionError,
                    requests.Timeout,
                    requests.exceptions.ChunkedEncodingError,  # the body broke off
                ) as e:
                    why = type(e).__name__
            if breaks >= self.max_retries:
                raise OCIError(
                    f"registry {self.registry}: the download of blob {digest[:19]} of {repo} "
                    f"broke off at byte {got} ({why}) {breaks + 1} times in a row",
                    hint="check the network to the registry, then run the command again",
                )
            self.sleep(min(2**breaks, 30))
            breaks += 1
            r = self.request("GET", url, repo=repo, stream=True, headers={"Range": f"bytes={got}-"})
        if "sha256:" + h.hexdigest() != digest:
            raise OCIError(f"registry {self.registry}: blob {digest[:19]} is corrupt")

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        r = self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            params={"mount": digest, "from": from_repo},
            repo=repo,
        )
        if r.status_code == 202 and r.headers.get("Location"):  # not mounted: cancel the session
            self.request("DELETE", self._abs(r.headers["Location"]), repo=repo)
        return r.status_code == 201

    def _abs(self, location: str) -> str:
        return location if location.startswith("http") else f"{self.base}{location}"

    def upload_blob(
        self,
        repo: str,
        digest: str | Callable[[], str],
        source: Path | bytes | Producer,
        progress: ProgressFn | None = None,
        size: int = 0,
    ) -> int:
        """Upload a blob: POST a session, stream the bytes in one PATCH, PUT the digest.

        `source` may be a producer that writes the blob's bytes to the function it is given,
        so a layer streams from tar and compression straight into the request, a few MiB in
        memory whatever its size. A stream that breaks is resumed from the offset the
        registry reports (the producer runs again and skips what landed); a session that
        cannot be resumed starts again. `digest` may be a function asked once the bytes are
        written: a producer that hashes as it writes saves a pass. Returns bytes sent."""
        produce = _producer(source)
        if not size:
            size = len(source) if isinstance(source, bytes) else 0
            size = source.stat().st_size if isinstance(source, Path) else size
        # The exact length is known for bytes, a file, and a blob whose digest is known (its
        # size is recorded): a resumed stream then says which range it carries, so a registry
        # that holds a different amount refuses it (416) instead of appending it wrongly.
        exact = size if isinstance(source, (bytes, Path)) or isinstance(digest, str) else 0
        for attempt in range(self.max_retries + 1):
            r = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo)
            if r.status_code != 202:
                raise self._fail(f"starting an upload to {repo}", r)
            location, offset, sent = self._abs(r.headers["Location"]), 0, 0
            try:
                for resume in range(self.max_retries + 1):
                    if exact and offset >= exact:
                        break  # every byte landed before the answer was lost: only the PUT
                    done, location, n = self._stream(
                        repo, location, produce, offset, progress, size, exact
                    )
                    sent += n
                    if done:
                        break
                    offset, location = self._upload_status(repo, location)
                    self.sleep(min(2**resume, 30))
                else:
                    raise _UploadBroken(None)
                known = digest if isinstance(digest, str) else digest()
                sep = "&" if "?" in location else "?"
                r = self.request(
                    "PUT",
                    f"{location}{sep}digest={known}",
                    repo=repo,
                    headers={"Content-Length": "0"},
                )
                if r.status_code != 201:
                    raise _UploadBroken(r)
                return sent
            except _UploadBroken as e:
                landed = digest if isinstance(digest, str) else _digest_so_far(digest)
                if landed and self.blob_exists(repo, landed):  # the PUT landed, its answer lost
                    return sent
                if attempt >= self.max_retries:
                    what = digest[:19] if isinstance(digest, str) else "a layer"
                    if e.resp is None:
                        raise OCIError(
                            f"registry {self.registry}: upload of {what} to {repo} kept "
                            f"breaking off ({self.max_retries + 1} tries)"
                        ) from None
                    raise self._fail(f"upload of {what} to {repo}", e.resp) from None
                self.sleep(min(2**attempt, 30))
        raise AssertionError("unreachable")

    def _stream(
        self,
        repo: str,
        location: str,
        produce: Producer,
        skip: int,
        progress: ProgressFn | None,
        size: int,
        exact: int = 0,
    ) -> tuple[bool, str, int]:
        """One streamed PATCH of everything after `skip` bytes. Returns (landed, location,
        bytes sent). The request body is fed by the producer from a thread, a few pieces
        ahead; the stream is sent once, never retried by the transport (it cannot rewind).
        A resumed stream of a blob of `exact` bytes names its range (Content-Range and
        Content-Length, as the spec's chunked upload does); the first one is a plain stream."""
        import requests

        pipe = _Pipe(skip)
        worker = threading.Thread(target=pipe.run, args=(produce,), daemon=True)
        worker.start()
        sent = 0
        length = exact - skip if exact and skip else 0

        def body() -> Iterator[bytes]:
            nonlocal sent
            for piece in pipe.pieces():
                if interrupt.requested():  # the main thread is stopping: so is this upload
                    raise Interrupted("upload stopped by a signal", signum=signal.SIGTERM)
                if length and sent + len(piece) > length:
                    raise _changed(self.registry, repo, skip + sent + len(piece), exact)
                sent += len(piece)
                with self.lock:
                    self.uploaded_bytes += len(piece)
                if progress:
                    progress(skip + sent, size)
                yield piece
            if length and sent != length:  # the server would wait for the rest for ever
                raise _changed(self.registry, repo, skip + sent, exact)

        headers = {"Content-Type": "application/octet-stream"}
        if length:
            headers["Content-Range"] = f"{skip}-{exact - 1}"
        held = self._tokens.get(repo)
        if held is not None and time.monotonic() < held[1]:
            headers["Authorization"] = held[0]
        with self.lock:
            self.calls += 1
        try:
            data = _Sized(body(), length) if length else body()
            r = self.session.request(
                "PATCH", location, data=data, headers=headers, timeout=self.timeout
            )
        except (requests.ConnectionError, requests.Timeout):
            return False, location, sent
        finally:
            pipe.close()
            worker.join()
        if pipe.error is not None:
            raise pipe.error  # the producer failed (a file vanished): not a network fault
        if r.status_code == 401 and self._authorize(r, repo):
            return False, location, sent  # the token expired mid-upload: renewed, resume
        if r.status_code == 416:
            return False, location, sent  # not where the session stands: ask it, resume
        if r.status_code != 202:
            if r.status_code < 500 and r.status_code not in (408, 429):
                raise _UploadBroken(r)
            return False, location, sent
        return True, self._abs(r.headers.get("Location", location)), sent

    def _upload_status(self, repo: str, location: str) -> tuple[int, str]:
        """How many bytes of an upload session landed (the OCI upload-status request)."""
        r = self.request("GET", location, repo=repo)
        if r.status_code != 204:
            raise _UploadBroken(r)
        return _range_end(r.headers.get("Range", "")) + 1, self._abs(
            r.headers.get("Location", location)
        )

    # -- manifests -------------------------------------------------------------------------

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """A manifest (or index) as the registry sent it, its media type and its digest. One
        asked for by digest is refused unless it is that digest's (a registry cannot hand in
        another image, or an index that names itself again and again); none is read past
        the 4 MiB registries accept."""
        what = f"manifest {repo}:{reference}"
        accept = {"Accept": ", ".join(MANIFEST_TYPES)}
        missing = OCIError(
            f"image {self.registry}/{repo}:{reference} not found in the registry",
            hint="build and push it first, or fix the name in lepton.yaml",
        )
        r, body = self._small_get(
            f"/v2/{repo}/manifests/{reference}", repo, accept, _MANIFEST_MAX, what, missing
        )
        media = r.headers.get("Content-Type", "").split(";")[0]
        digest = sha256(body)
        if reference.startswith("sha256:") and digest != reference:
            raise OCIError(
                f"registry {self.registry}: asked for manifest {repo}@{reference[:19]}.., it "
                f"sent {digest[:19]}..; refused",
                hint="the registry (or a proxy before it) serves other content than the "
                "digest names: retry, then report it to its owner",
            )
        return body, media, digest

    def _small_get(
        self,
        url: str,
        repo: str,
        headers: dict[str, str],
        limit: int,
        what: str,
        missing: OCIError | None = None,
    ) -> tuple[requests.Response, bytes]:
        """A GET of a small document (manifest, config) read bounded: the answer and its
        body; `missing` is raised for a 404, an OCIError for any other answer but 200. A body
        that breaks off is fetched again, as request() does for a connection that fails."""
        import requests
        import urllib3

        attempt = 0
        while True:
            r = self.request("GET", url, repo=repo, headers=headers, stream=True)
            with contextlib.closing(r):
                if r.status_code == 404 and missing is not None:
                    raise missing
                if r.status_code != 200:
                    raise self._fail(f"GET {what}", r)  # while the answer is open to quote
                try:
                    return r, self._bounded(r, limit, what)
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
                    if attempt >= self.max_retries:
                        raise OCIError(
                            f"registry {self.registry}: {what} broke off {attempt + 1} times "
                            f"({type(e).__name__})",
                            hint="check the network to the registry, then run the command again",
                        ) from None
            self.sleep(min(2**attempt, 30))
            attempt += 1

    def _bounded(self, r: requests.Response, limit: int, what: str) -> bytes:
        """The body of a streamed answer, refused once it passes `limit` bytes, or when it
        takes longer than twice the timeout in all: the timeout bounds each read, and a
        registry that sends a byte now and then would never meet it (a manifest is kB)."""
        out = bytearray()
        deadline = time.monotonic() + 2 * self.timeout
        # read1: what has arrived, not a full chunk's worth (urllib3 2); a read that waits
        # for 1 MiB of a byte-at-a-time answer would never look at the clock.
        read1 = getattr(r.raw, "read1", None)
        chunks = (
            iter(lambda: read1(_DOWNLOAD_CHUNK, decode_content=True), b"")
            if read1 is not None
            else r.iter_content(_DOWNLOAD_CHUNK)
        )
        for chunk in chunks:
            out += chunk
            if time.monotonic() > deadline:
                raise OCIError(
                    f"registry {self.registry}: {what} took more than {2 * self.timeout:g} s "
                    f"to arrive ({len(out)} bytes so far); refused",
                    hint="the registry is overloaded or not what it seems: retry later",
                )
            if len(out) > limit:
                raise OCIError(
                    f"registry {self.registry}: {what} is more than {limit} bytes; refused",
                    hint="is this really the image? a registry sends manifests of a few kB",
                )
        return bytes(out)

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest a tag points at (HEAD, no body), or None if the tag does not exist."""
        r = self.request(
            "HEAD",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        if r.status_code != 200:
            return None
        # Not every registry or proxy sends the header on a HEAD (it is a SHOULD): the
        # manifest's own digest then, never None, which callers read as "no such tag".
        return r.headers.get("Docker-Content-Digest") or self.get_manifest(repo, reference)[2]

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        self._put_manifest(repo, reference, body, media_type, f"PUT manifest {repo}:{reference}")
        return sha256(body)

    def _put_manifest(
        self, repo: str, reference: str, body: bytes, media_type: str, what: str
    ) -> requests.Response:
        r = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            data=body,
            headers={"Content-Type": media_type},
        )
        if r.status_code != 201:
            raise self._fail(what, r)
        return r

    # -- referrers (OCI distribution 1.1) ----------------------------------------------------

    def referrers(
        self, repo: str, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose `subject` is `digest`: from the referrers API
        when the registry answers it, else from the spec's fallback tag `<alg>-<hex>`."""
        params = {"artifactType": artifact_type} if artifact_type else None
        r = self.request(
            "GET",
            f"/v2/{repo}/referrers/{digest}",
            repo=repo,
            params=params,
            headers={"Accept": INDEX_OCI},
        )
        if r.status_code == 200 and "json" in r.headers.get("Content-Type", ""):
            found = list(json.loads(r.content).get("manifests") or [])
        elif r.status_code in (404, 400, 405):  # no referrers API: the tag schema
            found = self._fallback_index(repo, digest)
        else:
            raise self._fail(f"GET referrers of {repo}@{digest[:19]}", r)
        # A registry may ignore the filter (it says so in OCI-Filters-Applied): filter here too.
        return [d for d in found if artifact_type in (None, d.get("artifactType"))]

    def _fallback_index(self, repo: str, digest: str) -> list[dict[str, Any]]:
        tag = referrers_tag(digest)
        if self.manifest_digest(repo, tag) is None:
            return []
        body, _, _ = self.get_manifest(repo, tag)
        return list(json.loads(body).get("manifests") or [])

    def put_referrer(self, repo: str, body: bytes, descriptor: dict[str, Any]) -> str:
        """Push a manifest that names a `subject`, by digest. A registry that indexes it says
        so with `OCI-Subject`; for one that does not (the CNCF registry), the descriptor is
        added to the subject's fallback index, as the distribution spec asks of clients."""
        digest = sha256(body)
        r = self._put_manifest(repo, digest, body, MANIFEST_OCI, f"PUT referrer manifest to {repo}")
        if r.headers.get("OCI-Subject"):
            return digest
        subject = json.loads(body)["subject"]["digest"]
        manifests = self._fallback_index(repo, subject)
        if all(m.get("digest") != digest for m in manifests):
            manifests.append({**descriptor, "digest": digest, "size": len(body)})
            index = {"schemaVersion": 2, "mediaType": INDEX_OCI, "manifests": manifests}
            self.put_manifest(repo, referrers_tag(subject), _compact(index), INDEX_OCI)
        return digest

    def image_manifest(self, repo: str, reference: str) -> tuple[dict[str, Any], str]:
        """The single-platform manifest (linux/amd64 from an index) and its digest."""
        body, media, digest = self.get_manifest(repo, reference)
        doc = json.loads(body)
        if media in (INDEX_OCI, LIST_DOCKER) or "manifests" in doc:
            arch, variant = runner_platform()
            offered = [m.get("platform", {}) for m in doc["manifests"]]
            for m, p in zip(doc["manifests"], offered, strict=True):
                if (
                    p.get("os") == "linux"
                    and p.get("architecture") == arch
                    and (variant is None or p.get("variant") in (None, variant))
                ):
                    self.platform_note = (
                        f"{repo}:{reference} is a multi-platform index: using linux/{arch} "
                        f"({m['digest'][:19]}), the runner's platform"
                    )
                    return self.image_manifest(repo, m["digest"])
            names = ", ".join(
                "/".join(filter(None, (p.get("os"), p.get("architecture"), p.get("variant"))))
                for p in offered
            )
            raise OCIError(
                f"{repo}:{reference} has no linux/{arch} image (it offers: {names})",
                hint="pick a base built for this runner, or set LEPTON_PLATFORM_ARCH",
            )
        return doc, digest


def referrers_tag(digest: str) -> str:
    """The OCI 1.1 fallback tag of a subject's referrers index: `sha256-<hex>`."""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}-{hexpart}"[:128]


def _compact(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def runner_platform() -> tuple[str, str | None]:
    """The (architecture, variant) of this machine in OCI terms; LEPTON_PLATFORM_ARCH wins."""
    import platform

    arch = os.environ.get("LEPTON_PLATFORM_ARCH") or ARCH.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return arch, ("v8" if arch == "arm64" else None)


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.pending = memoryview(chunk)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]  # a view: no copy of the rest
        return n

    def drain(self) -> None:
        """Read to the end: the blob's digest is checked there."""
        for _ in self.chunks:
            pass


def _range_starts(headers: Mapping[str, str], offset: int) -> bool:
    """A 206 answer's Content-Range (`bytes 100-199/200`) starts at `offset`."""
    m = re.match(r"\s*bytes\s+(\d+)-", headers.get("Content-Range", ""))
    return m is not None and int(m[1]) == offset


class _Sized:
    """A streamed body whose length is known: requests sends Content-Length, not chunks."""

    def __init__(self, pieces: Iterator[bytes], length: int) -> None:
        self.pieces, self.length = pieces, length

    def __iter__(self) -> Iterator[bytes]:
        return self.pieces

    def __len__(self) -> int:
        return self.length


def _changed(registry: str, repo: str, produced: int, exact: int) -> OCIError:
    return OCIError(
        f"registry {registry}: the blob for {repo} changed while it was uploaded: "
        f"{exact} bytes expected, {'more than ' if produced > exact else ''}{produced} read",
        hint="something rewrote the file during the upload; run the command again",
    )


class _UploadBroken(Exception):
    def __init__(self, resp: requests.Response | None) -> None:
        self.resp = resp


Producer = Callable[[Callable[[bytes], None]], object]


def _producer(source: Path | bytes | Producer) -> Producer:
    if isinstance(source, bytes):
        return lambda write: write(source)
    if isinstance(source, Path):
        path = source

        def from_file(write: Callable[[bytes], None]) -> None:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    write(chunk)

        return from_file
    return source


def _digest_so_far(digest: Callable[[], str]) -> str | None:
    """The digest a producer learnt, or None when it never finished writing."""
    try:
        return digest()
    except (IndexError, LookupError):
        return None


def _range_end(header: str) -> int:
    """`Range: 0-1023` -> 1023; -1 when nothing was received. The CNCF registry says `0-0`
    for an empty session too: it is read as nothing (resending one byte costs nothing)."""
    m = re.fullmatch(r"\s*(?:bytes=)?0-(\d+)\s*", header)
    return int(m[1]) if m and int(m[1]) > 0 else -1


class _Pipe:
    """Hands a producer's writes to a request body, a few pieces ahead, after `skip` bytes."""

    PIECE = 1 << 20
    AHEAD = 4

    def __init__(self, skip: int) -> None:
        self.skip = skip
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=self.AHEAD)
        self.closed = threading.Event()
        self.error: BaseException | None = None
        self.buffer = bytearray()

    def run(self, produce: Producer) -> None:
        try:
            produce(self._write)
            if self.buffer:
                self._put(bytes(self.buffer))
        except _Closed:
            pass
        except Exception as e:  # handed to the uploading thread, which raises it
            self.error = e
        finally:
            self._put(None)

    def _write(self, data: bytes) -> None:
        if self.skip:
            cut = min(self.skip, len(data))
            self.skip -= cut
            data = data[cut:]
        self.buffer += data
        if len(self.buffer) >= self.PIECE:
            self._put(bytes(self.buffer))
            self.buffer.clear()

    def _put(self, item: bytes | None) -> None:
        while not self.closed.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if item is not None:
            raise _Closed

    def pieces(self) -> Iterator[bytes]:
        while (item := self.queue.get()) is not None:
            yield item

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.queue.get_nowait()


class _Closed(Exception):
    """The request stopped reading: the producer stops too."""


ClientFactory = Callable[[str], OCIClient]


def client_factory(
    env: Mapping[str, str], rt: Runtime | None, insecure: bool | None
) -> ClientFactory:
    """One client per registry, credentials from env or the docker config, masked in the log."""
    clients: dict[str, OCIClient] = {}

    def get(registry: str) -> OCIClient:
        if registry not in clients:
            creds = credentials(registry, env)
            if creds and rt is not None:
                rt.mask(creds[1])
                # As a Basic header carries them: a registry or proxy that quotes the request
                # in its error page (which an error message quotes) must not print them.
                rt.mask(base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode())
            clients[registry] = OCIClient(registry, auth=creds, insecure=insecure)
        return clients[registry]

    return get
