"""On-disk cache for built graphs, keyed by (name, params, dataset fingerprint).

A file `<directory>/<name>-<key>.pt` holds one payload (anything `torch.save` writes and
`torch.load(weights_only=True)` reads back: dense or sparse tensors, and dicts, lists, tuples,
str, int, float, bool and None around them). Layout:

    b"GRAPHCACHE v1\\n" + sha256(body) as 64 hex digits + b"\\n" + body

where body is the `torch.save` bytes of {"name", "params", "fingerprint", "value"}. A file whose
header, digest or stored key does not match is never trusted: it is logged as a warning, rebuilt
and overwritten. Writes go to a temp file in the same directory and are moved in place with
`os.replace`, so readers (and parallel runs building the same graph) only ever see whole files.
Loading uses `weights_only=True` (no arbitrary code from a pickle) under
`torch.sparse.check_sparse_tensor_invariants`, so a sparse tensor with out-of-range indices is
rejected instead of crashing later.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch

log = logging.getLogger(__name__)

T = TypeVar("T")
MAGIC = b"GRAPHCACHE v1\n"
FORMAT_VERSION = 1
KEY_LENGTH = 16
_NAME = re.compile(r"^[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*$")


class CacheError(Exception):
    """A cache file cannot be trusted (bad header, digest, key or payload)."""


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, (Path, torch.dtype)):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} {obj!r} is not JSON-serialisable")


def canonical_params(params: dict) -> str:
    """Params as canonical JSON (sorted keys, no spaces); tuples and lists read the same."""
    if not isinstance(params, dict):
        raise TypeError(f"graph cache params must be a dict, got {type(params).__name__}")
    try:
        return json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False,
                          default=_json_default)
    except (TypeError, ValueError) as e:
        raise TypeError(f"graph cache params {params!r} cannot be used as a key: {e}; "
                        f"expected JSON values (str, int, float, bool, None, lists, dicts)") from None


class GraphCache:
    """Build-once store for graphs of one dataset (identified by its content fingerprint)."""

    def __init__(self, directory: str | os.PathLike, fingerprint: str, enabled: bool = True):
        if enabled and not fingerprint:
            raise ValueError("GraphCache: an empty dataset fingerprint would let graphs of "
                             "different datasets share files; pass RecData.fingerprint")
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.enabled = enabled

    def key(self, name: str, params: dict) -> str:
        blob = json.dumps([FORMAT_VERSION, name, canonical_params(params), self.fingerprint])
        return hashlib.sha256(blob.encode()).hexdigest()[:KEY_LENGTH]

    def path(self, name: str, params: dict) -> Path:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"graph cache name {name!r}: expected letters, digits, '_', '.' "
                             f"and single '-' (it becomes part of a file name)")
        return self.directory / f"{name}-{self.key(name, params)}.pt"

    def get_or_build(self, name: str, params: dict, build: Callable[[], T]) -> T:
        """The cached value for (name, params), else `build()` (then stored)."""
        if not self.enabled:
            return build()
        path = self.path(name, params)
        if path.exists():
            try:
                value = self._load(path, name, params)
                log.debug("graph cache hit: %s", path)
                return value
            except CacheError as e:
                log.warning("graph cache file %s cannot be trusted (%s); rebuilding it", path, e)
        value = build()
        self._save(path, name, params, value)
        return value

    # ----------------------------------------------------------------- file format

    def _payload(self, name: str, params: dict, value: Any) -> dict:
        return {"name": name, "params": canonical_params(params),
                "fingerprint": self.fingerprint, "value": value}

    def _save(self, path: Path, name: str, params: dict, value: Any) -> None:
        try:                    # refuse payloads that a safe load could not read back
            buf = io.BytesIO()
            torch.save(self._payload(name, params, value), buf)
            body = buf.getvalue()
            torch.load(io.BytesIO(body), weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure means "not storable"
            raise TypeError(f"graph {name!r}: the built value cannot be cached ({e}); expected "
                            f"tensors inside dicts, lists or tuples of plain values") from None
        digest = hashlib.sha256(body).hexdigest().encode()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.stem}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(MAGIC + digest + b"\n" + body)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:    # a read-only or full disk costs a rebuild next time, not the run
            log.warning("graph cache: could not write %s (%s); continuing without caching", path, e)

    def _load(self, path: Path, name: str, params: dict) -> Any:
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise CacheError(f"unreadable: {e}") from None
        head = len(MAGIC) + 65
        if len(raw) < head or not raw.startswith(MAGIC) or raw[head - 1:head] != b"\n":
            raise CacheError("not a graph cache file (bad header)")
        digest, body = raw[len(MAGIC):head - 1], raw[head:]
        if hashlib.sha256(body).hexdigest().encode() != digest:
            raise CacheError("sha256 mismatch: the file is corrupt or truncated")
        try:
            with torch.sparse.check_sparse_tensor_invariants():
                payload = torch.load(io.BytesIO(body), weights_only=True)
        except Exception as e:  # noqa: BLE001 - anything torch.load raises means "untrusted"
            raise CacheError(f"payload does not load safely: {e}") from None
        expected = self._payload(name, params, None)
        if not isinstance(payload, dict) or any(payload.get(f) != expected[f]
                                                for f in ("name", "params", "fingerprint")):
            raise CacheError("stored name/params/fingerprint differ from the requested ones")
        return payload["value"]
