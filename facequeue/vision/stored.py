"""A FaceAnalysis as the columns of its ``images`` row, and back (parent side, no models).

``faces_json`` holds every detected box ([x, y, w, h, confidence], largest first);
``face_values_json`` + ``face_vectors`` what analysis measured on each face it embedded
(migration 0010); the older single-face columns (blur ... phash, embedding) keep the main
face's values, so rows analysed before 0010 still read as one embedded face.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from facequeue.vision.analyze import Face, FaceAnalysis, FaceValues


def to_columns(fa: FaceAnalysis) -> dict[str, Any]:
    values = [
        {
            "index": v.index,
            "blur": v.blur,
            "brightness": v.brightness,
            "contrast": v.contrast,
            "phash": v.phash,
            "phash_mirror": v.phash_mirror,
            "landmarks": [list(p) for p in v.landmarks],
        }
        for v in fa.embedded
    ]
    return dict(
        analysis_status=fa.status,
        detail=fa.detail,
        faces_json=json.dumps([[f.x, f.y, f.w, f.h, round(f.confidence, 4)] for f in fa.faces]),
        face_count=len(fa.faces),
        blur=fa.blur,
        brightness=fa.brightness,
        contrast=fa.contrast,
        embedding=fa.embedding,
        phash=fa.phash,
        timings_json=json.dumps({k: round(v, 4) for k, v in fa.timings.items()}),
        face_values_json=json.dumps(values) if values else None,
        face_vectors=b"".join(v.embedding for v in fa.embedded) if fa.embedded else None,
    )


def _values(row: dict[str, Any], main_embedding: bytes | None) -> tuple[FaceValues, ...]:
    raw = row.get("face_values_json")
    if not raw:  # analysed before per-face values: the main face only
        if main_embedding is None or row.get("blur") is None:
            return ()
        return (
            FaceValues(
                0,
                row["blur"],
                row.get("brightness") or 0.0,
                row.get("contrast") or 0.0,
                main_embedding,
                row.get("phash") or "",
                "",
            ),
        )
    items = json.loads(raw)
    vectors = row.get("face_vectors") or b""
    step = len(vectors) // max(1, len(items))
    return tuple(
        FaceValues(
            index=int(d["index"]),
            blur=d["blur"],
            brightness=d["brightness"],
            contrast=d["contrast"],
            embedding=bytes(vectors[k * step : (k + 1) * step]),
            phash=d.get("phash") or "",
            phash_mirror=d.get("phash_mirror") or "",
            landmarks=tuple((int(p[0]), int(p[1])) for p in d.get("landmarks") or ()),
        )
        for k, d in enumerate(items)
    )


def from_row(row: dict[str, Any]) -> FaceAnalysis:
    faces = tuple(
        Face(int(b[0]), int(b[1]), int(b[2]), int(b[3]), float(b[4]))
        for b in json.loads(row.get("faces_json") or "[]")
    )
    values = _values(row, row.get("embedding"))
    main = next((v for v in values if v.index == 0), None)
    return FaceAnalysis(
        status=row["analysis_status"],
        detail=row.get("detail"),
        width=row.get("width") or 0,
        height=row.get("height") or 0,
        faces=faces,
        blur=main.blur if main else row.get("blur"),
        brightness=main.brightness if main else row.get("brightness"),
        contrast=main.contrast if main else row.get("contrast"),
        embedding=main.embedding if main else row.get("embedding"),
        phash=main.phash if main else row.get("phash"),
        timings=json.loads(row.get("timings_json") or "{}"),
        embedded=values,
    )


def vector_of(fa: FaceAnalysis, index: int) -> np.ndarray | None:
    v = fa.values_of(index)
    return None if v is None else v.vector()
