"""SPUMR: Similarity Propagation-enhanced Uncertainty for Multimodal Recommendation.

Modules follow the paper: `operators.py` (Eqs. 1-5, fixed propagation operators),
`encoder.py` (projection + propagation, literal and fast paths), `upa.py` (Eqs. 6-9),
`model.py` (fusion, ID branch, Eqs. 10-12, evaluation statistics).
"""
from src.models.spumr.model import SPUMR

__all__ = ["SPUMR"]
