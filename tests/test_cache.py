"""GraphCache: build-once behaviour, keys, integrity checks, atomic writes."""
from __future__ import annotations

import logging
import os

import pytest
import torch

from src.data.cache import MAGIC, GraphCache


class Builder:
    """A build function that counts its calls."""

    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self):
        self.calls += 1
        return self.value


def sparse_value() -> dict:
    a = torch.sparse_coo_tensor(torch.tensor([[0, 1, 2], [1, 2, 0]]), torch.tensor([1.0, 0.5, 2.0]),
                                (3, 3), check_invariants=True).coalesce()
    return {"adj": a, "lists": (torch.tensor([[1], [2], [0]]), torch.tensor([[0.9], [0.8], [0.7]])),
            "note": "x", "k": 3}


def assert_same(a, b):
    assert a.keys() == b.keys()
    assert all(v["adj"].is_sparse and v["adj"].is_coalesced() for v in (a, b))
    assert torch.equal(a["adj"].to_dense(), b["adj"].to_dense())
    assert all(torch.equal(x, y) for x, y in zip(a["lists"], b["lists"]))
    assert a["note"] == b["note"] and a["k"] == b["k"]


def files(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_second_call_loads_instead_of_building(tmp_path):
    build = Builder(sparse_value())
    first = GraphCache(tmp_path, "fp1").get_or_build("knn", {"k": 3}, build)
    second = GraphCache(tmp_path, "fp1").get_or_build("knn", {"k": 3}, build)   # a new process
    assert build.calls == 1
    assert_same(first, second)
    assert len(files(tmp_path)) == 1 and files(tmp_path)[0].startswith("knn-")
    assert files(tmp_path)[0].endswith(".pt")


def test_params_order_does_not_matter_but_values_and_fingerprint_do(tmp_path):
    c = GraphCache(tmp_path, "fp1")
    assert c.path("g", {"a": 1, "b": [1, 2]}) == c.path("g", {"b": (1, 2), "a": 1})
    paths = {c.path("g", {"a": 1}), c.path("g", {"a": 2}), c.path("h", {"a": 1}),
             GraphCache(tmp_path, "fp2").path("g", {"a": 1})}
    assert len(paths) == 4
    build = Builder(torch.ones(2))
    c.get_or_build("g", {"a": 1}, build)
    c.get_or_build("g", {"a": 2}, build)
    GraphCache(tmp_path, "fp2").get_or_build("g", {"a": 1}, build)
    assert build.calls == 3 and len(files(tmp_path)) == 3


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "header"])
def test_corrupt_file_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    c = GraphCache(tmp_path, "fp")
    build = Builder(sparse_value())
    c.get_or_build("g", {}, build)
    path = c.path("g", {})
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) - 100]
    elif damage == "empty":
        raw = bytearray()
    else:
        raw[:5] = b"XXXXX"
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="src.data.cache"):
        value = c.get_or_build("g", {}, build)
    assert build.calls == 2
    assert_same(value, sparse_value())
    assert any("rebuilding" in rec.message and rec.levelno == logging.WARNING for rec in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="src.data.cache"):       # rewritten: trusted again
        c.get_or_build("g", {}, build)
    assert build.calls == 2 and not caplog.records


def test_file_with_a_valid_digest_but_another_key_is_not_trusted(tmp_path, caplog):
    c = GraphCache(tmp_path, "fp")
    c.get_or_build("g", {"k": 1}, Builder(torch.zeros(1)))
    os.replace(c.path("g", {"k": 1}), c.path("g", {"k": 2}))          # simulated key collision
    build = Builder(torch.ones(1))
    with caplog.at_level(logging.WARNING, logger="src.data.cache"):
        assert torch.equal(c.get_or_build("g", {"k": 2}, build), torch.ones(1))
    assert build.calls == 1 and "differ" in caplog.text


def test_sparse_tensor_with_bad_indices_is_rejected_on_load(tmp_path, caplog):
    """weights_only=True loads sparse tensors; the invariant check catches out-of-range indices."""
    import hashlib
    import io
    c = GraphCache(tmp_path, "fp")
    bad = torch.sparse_coo_tensor(torch.tensor([[0, 5], [1, 0]]), torch.tensor([1.0, 2.0]), (6, 2),
                                  check_invariants=False)
    bad = torch.sparse_coo_tensor(bad._indices(), bad._values(), (2, 2), check_invariants=False)
    buf = io.BytesIO()
    torch.save(c._payload("g", {}, bad), buf)
    body = buf.getvalue()
    c.directory.mkdir(exist_ok=True)
    c.path("g", {}).write_bytes(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    build = Builder(torch.eye(2).to_sparse())
    with caplog.at_level(logging.WARNING, logger="src.data.cache"):
        out = c.get_or_build("g", {}, build)
    assert build.calls == 1 and torch.equal(out.to_dense(), torch.eye(2))
    assert "does not load safely" in caplog.text


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    c = GraphCache(tmp_path / "nested" / "dir", "fp")
    for k in range(3):
        c.get_or_build("g", {"k": k}, Builder(torch.arange(k + 1)))
    assert len(files(c.directory)) == 3 and not any(n.endswith(".tmp") for n in files(c.directory))

    def failing():
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        c.get_or_build("g", {"k": 9}, failing)
    assert len(files(c.directory)) == 3


class Custom:
    """Picklable, but not something weights_only=True may load."""


@pytest.mark.parametrize("value", [Custom(), lambda: 1], ids=["custom-class", "lambda"])
def test_value_a_safe_load_cannot_read_is_refused(tmp_path, value):
    c = GraphCache(tmp_path, "fp")
    with pytest.raises(TypeError, match="cannot be cached"):
        c.get_or_build("g", {}, lambda: value)
    assert files(tmp_path) == []


def test_disabled_cache_always_builds_and_writes_nothing(tmp_path):
    c = GraphCache(tmp_path / "cache", "fp", enabled=False)
    build = Builder(torch.ones(1))
    c.get_or_build("g", {}, build)
    c.get_or_build("g", {}, build)
    assert build.calls == 2 and not (tmp_path / "cache").exists()


def test_bad_names_and_params_are_refused(tmp_path):
    c = GraphCache(tmp_path, "fp")
    with pytest.raises(ValueError, match="file name"):
        c.path("../escape", {})
    with pytest.raises(TypeError, match="cannot be used as a key"):
        c.path("g", {"x": object()})
    with pytest.raises(TypeError, match="must be a dict"):
        c.path("g", [1])
    with pytest.raises(ValueError, match="fingerprint"):
        GraphCache(tmp_path, "")
