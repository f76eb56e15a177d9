"""Downloads against a real HTTP server on 127.0.0.1, and safe / strict checkpoint loading."""

from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import threading
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
import torch

from sam2_plugins import checkpoints as ck
from sam2_plugins.checkpoints import CheckpointError, download, load_state_dict_file

PAYLOAD = os.urandom(300_000)


class _Server:
    """A tiny file server with switchable faults, recording the requests it saw."""

    def __init__(self) -> None:
        self.files: Dict[str, bytes] = {"/model.pt": PAYLOAD}
        self.truncate_next = 0  # number of upcoming responses to cut short
        self.honour_range = True
        self.requests: List[Dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                outer.requests.append({"path": self.path, "range": self.headers.get("Range", "")})
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and outer.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.truncate_next > 0:
                    outer.truncate_next -= 1
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


def test_download_success_with_progress(server: _Server, tmp_path: Path) -> None:
    seen: List[int] = []
    out = download(server.url + "/model.pt", tmp_path / "m.pt",
                   sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD),
                   progress=lambda done, total: seen.append(done))
    assert out.read_bytes() == PAYLOAD
    assert seen and seen[-1] == len(PAYLOAD) and seen == sorted(seen)
    assert not (tmp_path / "m.pt.part").exists()


def test_truncated_transfer_is_resumed_with_range(server: _Server, tmp_path: Path) -> None:
    server.truncate_next = 1
    out = download(server.url + "/model.pt", tmp_path / "m.pt", progress=False,
                   sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert out.read_bytes() == PAYLOAD
    # The second request asked only for the missing tail.
    assert server.requests[0]["range"] == ""
    assert server.requests[1]["range"].startswith("bytes=") and server.requests[1]["range"] != "bytes=0-"


def test_truncated_transfer_without_retries_leaves_no_final_file(server: _Server, tmp_path: Path) -> None:
    server.truncate_next = 10
    with pytest.raises(CheckpointError, match="truncated"):
        download(server.url + "/model.pt", tmp_path / "m.pt", progress=False, retries=0)
    assert not (tmp_path / "m.pt").exists()


def test_server_ignoring_range_restarts_cleanly(server: _Server, tmp_path: Path) -> None:
    server.honour_range = False
    (tmp_path / "m.pt.part").write_bytes(PAYLOAD[:1000])
    out = download(server.url + "/model.pt", tmp_path / "m.pt", progress=False, size=len(PAYLOAD))
    assert out.read_bytes() == PAYLOAD


def test_wrong_hash_is_refused_and_cleaned(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        download(server.url + "/model.pt", tmp_path / "m.pt", sha256="0" * 64, progress=False, retries=1)
    assert not (tmp_path / "m.pt").exists()
    assert not (tmp_path / "m.pt.part").exists()
    assert len(server.requests) == 2  # one clean retry from scratch


def test_corrupt_partial_file_is_redownloaded(server: _Server, tmp_path: Path) -> None:
    # A stale .part with wrong bytes: resuming gives a bad hash, then a fresh download fixes it.
    (tmp_path / "m.pt.part").write_bytes(b"\0" * 5000)
    out = download(server.url + "/model.pt", tmp_path / "m.pt", progress=False,
                   sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert out.read_bytes() == PAYLOAD


def test_mirror_fallback_and_404_message(server: _Server, tmp_path: Path) -> None:
    out = download([server.url + "/missing.pt", server.url + "/model.pt"], tmp_path / "m.pt", progress=False)
    assert out.read_bytes() == PAYLOAD
    with pytest.raises(CheckpointError, match="404"):
        download(server.url + "/missing.pt", tmp_path / "x.pt", progress=False)


def test_resolve_download_uses_cache_env(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM2_PLUGINS_CACHE", str(tmp_path / "cache"))
    info = ck.REGISTRY["sam2.1_hiera_tiny"]
    monkeypatch.setitem(ck.REGISTRY, "sam2.1_hiera_tiny",
                        ck.CheckpointInfo(info.name, (server.url + "/model.pt",), info.filename))
    path = ck.resolve_checkpoint("sam2.1_hiera_tiny", "download", progress=False)
    assert path == tmp_path / "cache" / "sam2.1_hiera_tiny.pt" and path.read_bytes() == PAYLOAD
    n = len(server.requests)
    assert ck.resolve_checkpoint("sam2.1_hiera_tiny", "download", progress=False) == path
    assert len(server.requests) == n  # served from the cache


def _registry_on_server(server: _Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                        size: int = len(PAYLOAD), sha: str = hashlib.sha256(PAYLOAD).hexdigest()) -> None:
    monkeypatch.setenv("SAM2_PLUGINS_CACHE", str(tmp_path / "cache"))
    info = ck.REGISTRY["sam2.1_hiera_tiny"]
    monkeypatch.setitem(ck.REGISTRY, "sam2.1_hiera_tiny",
                        ck.CheckpointInfo(info.name, (server.url + "/model.pt",), info.filename, size, sha))


@pytest.mark.parametrize("damage", ["truncated", "same_size_other_bytes"])
def test_cached_file_that_does_not_match_is_moved_aside_and_downloaded_again(
        server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    _registry_on_server(server, monkeypatch, tmp_path)
    path = ck.resolve_checkpoint("sam2.1_hiera_tiny", "download", progress=False)
    assert path.read_bytes() == PAYLOAD and len(server.requests) == 1
    bad = PAYLOAD[:1000] if damage == "truncated" else bytes(len(PAYLOAD))
    path.write_bytes(bad)
    with pytest.warns(UserWarning, match="is not the official sam2.1_hiera_tiny file .*downloaded again"):
        again = ck.resolve_checkpoint("sam2.1_hiera_tiny", "download", progress=False)
    assert again == path and path.read_bytes() == PAYLOAD and len(server.requests) == 2
    aside = list(path.parent.glob("sam2.1_hiera_tiny.pt.mismatch-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bad  # kept, not deleted


def test_cached_file_is_hashed_once_then_only_size_checked(
        server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _registry_on_server(server, monkeypatch, tmp_path)
    ck.resolve_checkpoint("sam2.1_hiera_tiny", "download", progress=False)
    calls = []
    real = ck._sha256
    monkeypatch.setattr(ck, "_sha256", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        ck.resolve_checkpoint("sam2.1_hiera_tiny", "download", progress=False)
    assert len(calls) == 1 and len(server.requests) == 1  # first use hashed it; later uses trust the stamp


def test_download_that_disagrees_with_the_registry_size_is_refused(
        server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _registry_on_server(server, monkeypatch, tmp_path, size=len(PAYLOAD) + 1)
    with pytest.raises(CheckpointError, match=f"size mismatch: expected {len(PAYLOAD) + 1} bytes"):
        ck.resolve_checkpoint("sam2.1_hiera_tiny", "download", progress=False)
    assert not (tmp_path / "cache" / "sam2.1_hiera_tiny.pt").exists()


def test_registry_covers_all_official_models() -> None:
    assert len(ck.REGISTRY) == 8
    for info in ck.REGISTRY.values():  # sizes and digests of every official file are recorded
        assert info.size is not None and 1.5e8 < info.size < 9e8, info
        assert info.sha256 is not None and len(info.sha256) == 64 and int(info.sha256, 16) >= 0, info
    info = ck.REGISTRY["sam2.1_hiera_base_plus"]
    assert info.urls[0].endswith("/092824/sam2.1_hiera_base_plus.pt")
    assert "facebook/sam2.1-hiera-base-plus" in info.urls[1]
    assert ck.REGISTRY["sam2_hiera_large"].urls[0].endswith("/072824/sam2_hiera_large.pt")


def test_unknown_download_name_and_missing_file() -> None:
    with pytest.raises(CheckpointError, match="no official download"):
        ck.resolve_checkpoint("sam2.1_hiera_nano", "download")
    with pytest.raises(CheckpointError, match="not found"):
        ck.resolve_checkpoint("sam2.1_hiera_tiny", "/nonexistent/x.pt")


# --- loading -------------------------------------------------------------------------------------


def test_load_official_bare_lightning_and_safetensors(tmp_path: Path) -> None:
    sd = {"a.weight": torch.randn(3, 4), "b": torch.zeros(2)}
    torch.save({"model": sd}, tmp_path / "official.pt")
    torch.save(sd, tmp_path / "bare.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "l.ckpt")
    for name in ("official.pt", "bare.pt", "l.ckpt"):
        got = load_state_dict_file(tmp_path / name)
        assert set(got) == set(sd) and torch.equal(got["a.weight"], sd["a.weight"])
    safetensors = pytest.importorskip("safetensors.torch")
    safetensors.save_file(sd, str(tmp_path / "w.safetensors"))
    assert torch.equal(load_state_dict_file(tmp_path / "w.safetensors")["a.weight"], sd["a.weight"])


def test_truncated_and_empty_files_are_named(tmp_path: Path) -> None:
    torch.save({"model": {"w": torch.randn(64, 64)}}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_state_dict_file(tmp_path / "cut.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_state_dict_file(tmp_path / "empty.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk.pt is not a checkpoint: it is a text file \(it starts with 'not"):
        load_state_dict_file(tmp_path / "junk.pt")
    (tmp_path / "bin.pt").write_bytes(bytes(range(7, 40)))
    with pytest.raises(CheckpointError, match="unknown binary format"):
        load_state_dict_file(tmp_path / "bin.pt")
    # bytes that make torch's weights-only unpickler fail with an IndexError
    (tmp_path / "stop.pt").write_bytes(b"\x80\x02.")
    with pytest.raises(CheckpointError, match="not a checkpoint torch can read"):
        load_state_dict_file(tmp_path / "stop.pt")


def test_checkpoint_of_another_size_names_the_likely_model(tmp_path: Path) -> None:
    from sam2_plugins.build import load_checkpoint
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model

    torch.manual_seed(0)
    nano = SAM2Model(get_config("sam2.1_hiera_nano"))
    torch.save({"model": nano.state_dict()}, tmp_path / "nano.pt")
    tiny = SAM2Model(get_config("sam2.1_hiera_tiny"))
    with pytest.raises(CheckpointError, match="sam2.1_hiera_nano"):
        load_checkpoint(tiny, tmp_path / "nano.pt")


def test_parallel_downloads_of_one_file_take_turns(server: _Server, tmp_path: Path) -> None:
    results: List[object] = []

    def fetch() -> None:
        try:
            results.append(download(server.url + "/model.pt", tmp_path / "m.pt", progress=False,
                                    sha256=hashlib.sha256(PAYLOAD).hexdigest()))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, Path) for r in results) and len(results) == 3, results
    assert (tmp_path / "m.pt").read_bytes() == PAYLOAD
    # one transfer: the others waited for the lock and found the finished file
    assert len(server.requests) == 1, server.requests


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch " + str(_Evil.marker),))


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    _Evil.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_state_dict_file(path)
    assert not _Evil.marker.exists()
    # A plain pickle (not a torch zip) with code is refused too.
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(CheckpointError):
        load_state_dict_file(tmp_path / "evil.pkl")
    assert not _Evil.marker.exists()


def test_non_checkpoint_layout(tmp_path: Path) -> None:
    torch.save({"optimizer": {"lr": 1.0}}, tmp_path / "opt.pt")
    with pytest.raises(CheckpointError, match="not a SAM 2 checkpoint"):
        load_state_dict_file(tmp_path / "opt.pt")
