"""Distances between face embeddings, and each model's default threshold: the one home of
this maths for curation (per person), the gallery self-test and recognition.

Vectors are rows. cosine and euclidean_l2 work on unit rows; `prepare` normalises once so a
stored matrix (the gallery) is not normalised again for every query.
"""

from __future__ import annotations

import numpy as np

METRICS = ("cosine", "euclidean", "euclidean_l2")

# DeepFace 0.0.103 deepface/config/threshold.py (copied: importing deepface here would load
# the whole engine into modules that must stay pure and light).
THRESHOLDS: dict[str, dict[str, float]] = {
    "VGG-Face": {"cosine": 0.68, "euclidean": 1.17, "euclidean_l2": 1.17},
    "Facenet": {"cosine": 0.40, "euclidean": 10, "euclidean_l2": 0.80},
    "Facenet512": {"cosine": 0.30, "euclidean": 23.56, "euclidean_l2": 1.04},
    "ArcFace": {"cosine": 0.68, "euclidean": 4.15, "euclidean_l2": 1.13},
    "Dlib": {"cosine": 0.07, "euclidean": 0.6, "euclidean_l2": 0.4},
    "SFace": {"cosine": 0.593, "euclidean": 10.734, "euclidean_l2": 1.055},
    "OpenFace": {"cosine": 0.10, "euclidean": 0.55, "euclidean_l2": 0.55},
    "DeepFace": {"cosine": 0.23, "euclidean": 64, "euclidean_l2": 0.64},
    "DeepID": {"cosine": 0.015, "euclidean": 45, "euclidean_l2": 0.17},
    "GhostFaceNet": {"cosine": 0.65, "euclidean": 35.71, "euclidean_l2": 1.10},
    "Buffalo_L": {"cosine": 0.55, "euclidean": 0.6, "euclidean_l2": 1.1},
}


def default_metric(model: str) -> str:
    """dlib's descriptor is trained for plain euclidean distance (0.6); the others for cosine."""
    return "euclidean" if model == "Dlib" else "cosine"


def default_threshold(model: str, metric: str) -> float:
    """DeepFace's tuned threshold for the model and metric."""
    try:
        return float(THRESHOLDS[model][metric])
    except KeyError:
        try:  # a model newer than our copy: ask DeepFace itself
            from deepface.config.threshold import thresholds

            return float(thresholds[model][metric])
        except Exception:
            raise ValueError(
                f"no default threshold for model {model!r} with metric {metric!r}; "
                "set curation.threshold"
            ) from None


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"unknown distance metric {metric!r} (one of {', '.join(METRICS)})")
    return metric


def normalise(m: np.ndarray) -> np.ndarray:
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def prepare(m: np.ndarray, metric: str, dtype: type = np.float64) -> np.ndarray:
    """Rows as `dtype`, unit length where the metric needs it."""
    m = np.atleast_2d(np.asarray(m, dtype=dtype))
    return normalise(m) if check_metric(metric) != "euclidean" and m.size else m


def distances(
    a: np.ndarray, b: np.ndarray, metric: str, b_sq: np.ndarray | None = None
) -> np.ndarray:
    """(len(a), len(b)) distances between prepared rows; b_sq: b's squared norms if known."""
    dots = a @ b.T
    if metric == "cosine":
        return np.clip(1.0 - dots, 0.0, 2.0)
    b_sq = (b * b).sum(1) if b_sq is None else b_sq
    sq = (a * a).sum(1)[:, None] + b_sq[None, :] - 2.0 * dots
    return np.sqrt(np.maximum(sq, 0.0))


def distance_matrix(
    a: np.ndarray, b: np.ndarray, metric: str, dtype: type = np.float64
) -> np.ndarray:
    """(len(a), len(b)) distances between the row vectors of a and b."""
    return distances(prepare(a, metric, dtype), prepare(b, metric, dtype), metric)
