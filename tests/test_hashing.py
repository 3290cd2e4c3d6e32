import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_ci.core.hashing import StatCache, combine, hash_file

pytestmark = pytest.mark.unit


def test_hash_is_content_addressed(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"hello")
    b.write_bytes(b"hello")
    assert hash_file(a) == hash_file(b)
    assert hash_file(a).startswith("blake3:")
    # the well-known blake3 digest of "hello"
    assert hash_file(a).endswith("ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f")


def test_large_file_path_matches_small_file_path(tmp_path):
    import blake3

    big = tmp_path / "big"
    data = os.urandom(70 * 1024 * 1024)
    big.write_bytes(data)
    assert hash_file(big) == "blake3:" + blake3.blake3(data).hexdigest()


def test_stat_cache_serves_unchanged_and_catches_changes(tmp_path):
    f = tmp_path / "data.csv"
    f.write_text("1,2\n")
    cache_path = tmp_path / "stat.json"
    c = StatCache(cache_path)
    h1 = c.hash(f)
    c.save()
    later = f.stat().st_ctime_ns + 10**9  # written down after the file settled (not racy)
    os.utime(cache_path, ns=(later, later))
    c2 = StatCache(cache_path)
    assert c2.hash(f) == h1
    assert (c2.hits, c2.misses) == (1, 0)
    # same size, new content, mtime forced back: ctime still changes, so it is re-read
    st = f.stat()
    f.write_text("3,4\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert c2.hash(f) != h1
    assert c2.misses == 1


def test_corrupt_stat_cache_is_ignored(tmp_path):
    p = tmp_path / "stat.json"
    p.write_text("{broken")
    f = tmp_path / "f"
    f.write_text("x")
    assert StatCache(p).hash(f) == hash_file(f)


def test_combine_is_order_independent():
    assert combine({"a": "1", "b": "2"}) == combine({"b": "2", "a": "1"})
    assert combine({"a": "1"}) != combine({"a": "2"})


@pytest.mark.unit
def test_windowed_hash_of_a_big_file_equals_the_hash_of_its_bytes(tmp_path, monkeypatch):
    import blake3

    from lepton_ci.core import hashing

    monkeypatch.setattr(hashing, "_MMAP_FROM", 1 << 16)
    monkeypatch.setattr(hashing, "_WINDOW", mmap.ALLOCATIONGRANULARITY)
    data = os.urandom(5 * mmap.ALLOCATIONGRANULARITY + 12345)  # windows plus a partial one
    f = tmp_path / "w.bin"
    f.write_bytes(data)
    assert hashing.hash_file(f) == "blake3:" + blake3.blake3(data).hexdigest()


@pytest.mark.unit
def test_hashing_a_big_file_keeps_memory_flat(tmp_path):
    f = tmp_path / "big.bin"
    with f.open("wb") as out:
        for _ in range(6):
            out.write(os.urandom(64 << 20))  # 384 MiB
    code = (
        "import resource, sys\nfrom pathlib import Path\n"
        "from lepton_ci.core.hashing import hash_file\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "hash_file(Path(sys.argv[1]))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(f)], capture_output=True, text=True, check=True
    )
    grown_mb = int(out.stdout) / 1024
    assert grown_mb < 150, f"hashing 384 MiB grew peak RSS by {grown_mb:.0f} MB"


def test_racily_clean_entry_is_not_trusted(tmp_path):
    """Timestamps as a filesystem with one-second granularity records them: a same-size
    rewrite within the second the hash was written keeps (size, mtime, inode, ctime); it
    must be hashed again, as git does for racily clean index entries."""
    f = (tmp_path / "data.csv").resolve()
    cache_path = (tmp_path / "stat.json").resolve()
    stamps = {}
    second = 1_700_000_000 * 10**9

    def stat(p):
        st, t = os.stat(p), stamps[Path(p)]
        return os.stat_result(
            (*list(st)[:7], t // 10**9, t // 10**9, t // 10**9),
            {"st_atime_ns": t, "st_mtime_ns": t, "st_ctime_ns": t},
        )

    f.write_text("1,2\n")
    stamps[f] = second
    c = StatCache(cache_path, stat=stat)
    h1 = c.hash(f)
    c.save()
    stamps[cache_path] = second  # the hashes were written down in the same second
    f.write_text("3,4\n")  # same size, same second: every stat field as cached
    c2 = StatCache(cache_path, stat=stat)
    h2 = c2.hash(f)
    assert h2 != h1 and (c2.hits, c2.misses) == (0, 1)
    c2.save()
    stamps[cache_path] = second + 10**9  # written a second later: now the entry has settled
    c3 = StatCache(cache_path, stat=stat)
    assert c3.hash(f) == h2 and (c3.hits, c3.misses) == (1, 0)
