"""The three agents of the OCR cascade, built from RapidOCR's own PP-OCR pieces.

Together they compute what ``rapidocr_onnxruntime.RapidOCR()(image)`` computes, split as
RapidOCR orders its steps:

* :class:`Detect` (``image`` → ``boxes``, ``crops``): decode, resize and letterbox the image,
  detect text boxes, sort them top-down and left-right, cut out one crop per box.
* :class:`Classify` (``crops`` → ``crops``): turn the crops that read upside down, with
  the crops of every payload in the batch classified together.
* :class:`Recognize` (``crops``, ``boxes`` → ``texts``, ``boxes``, ``scores``): read the
  crops, with the crops of every payload in the batch recognised together, and keep the
  lines scoring at least ``text_score``.

The models are the ONNX files shipped inside the installed ``rapidocr_onnxruntime``
package, configured by its ``config.yaml``; keyword options (``text_score``,
``intra_op_num_threads``, ``rec_batch_num``...) change that configuration as they do when
given to ``RapidOCR(**options)``. Unlike RapidOCR, whose sessions allocate every buffer
anew, each session keeps ONNX Runtime's CPU memory arena (``cpu_mem_arena: false`` turns
it off as RapidOCR does): the same results, for a quarter less detection time here.

``image`` is an H×W×3 uint8 array in **BGR** order (what ``cv2.imread`` returns; RapidOCR
uses an array as it is), or encoded PNG/JPEG bytes, or those bytes as base64 text (for
JSON producers). Encoded images are decoded by RapidOCR's ``LoadImage``, into BGR.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from itertools import pairwise
from typing import Any

import numpy as np
from onnxruntime import SessionOptions
from rapidocr_onnxruntime.ch_ppocr_cls import TextClassifier
from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer
from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH, RapidOCR
from rapidocr_onnxruntime.utils import (
    LoadImage,
    LoadImageError,
    OrtInferSession,
    UpdateParameters,
    read_yaml,
    update_model_path,
)

Payload = dict[str, Any]


def rapidocr_config(**options: Any) -> dict[str, Any]:
    """RapidOCR's configuration, changed by ``options`` as ``RapidOCR(**options)`` does."""
    config = update_model_path(read_yaml(DEFAULT_CFG_PATH))
    return UpdateParameters()(config, **options) if options else config


class ArenaSession(OrtInferSession):
    """RapidOCR's ONNX Runtime session with the CPU memory arena on: buffers of one run
    are reused by the next rather than allocated again."""

    @staticmethod
    def _init_sess_opts(config: dict[str, Any]) -> SessionOptions:
        options = OrtInferSession._init_sess_opts(config)
        options.enable_cpu_mem_arena = True
        return options


def with_arena(engine: RapidOCR) -> RapidOCR:
    """``engine`` with the arena on in its three sessions, as this module's steps have
    it (``benchmarks/ocr.py`` times RapidOCR both ways)."""
    config = rapidocr_config()
    engine.text_det.infer = ArenaSession(config["Det"])
    engine.text_cls.infer = ArenaSession(config["Cls"])
    engine.text_rec.session = ArenaSession(config["Rec"])
    return engine


def decode_image(value: Any) -> np.ndarray:
    """The BGR image RapidOCR would work on, from an array, image bytes or base64 text.

    An array (or the nested lists JSON turns it into) is used as it is; bytes are decoded
    by RapidOCR's ``LoadImage``. File paths are not accepted. Raises ``ValueError`` when
    the value is no image.
    """
    try:
        if isinstance(value, str):
            value = base64.b64decode(value, validate=True)
        elif isinstance(value, list):
            value = np.asarray(value, dtype=np.uint8)
        if not isinstance(value, bytes | np.ndarray):
            raise ValueError(f"expected an image array, image bytes or base64 text, "
                             f"got {type(value).__name__}")
        return LoadImage()(value)
    except (OSError, ValueError, OverflowError, LoadImageError) as exc:
        raise ValueError(f"cannot decode the image: {exc}") from exc


def _crops(payload: Payload) -> list[np.ndarray]:
    return [np.asarray(crop, dtype=np.uint8) for crop in payload["crops"]]


def _split(items: list[Any], counts: list[int]) -> list[list[Any]]:
    ends = np.cumsum([0, *counts]).tolist()
    return [items[start:end] for start, end in pairwise(ends)]


class _Detector(RapidOCR):
    """RapidOCR with only its detection model loaded, so that :class:`Detect` runs
    RapidOCR's own methods. Those methods read only the attributes set here."""

    def __init__(self, config: dict[str, Any]) -> None:  # not RapidOCR's: it loads 3 models
        settings = config["Global"]
        self.max_side_len = settings["max_side_len"]
        self.min_side_len = settings["min_side_len"]
        self.min_height = settings["min_height"]
        self.width_height_ratio = settings["width_height_ratio"]
        self.text_det = TextDetector(config["Det"])

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The sorted boxes (in ``image`` coordinates) and their crops, as RapidOCR
        finds them before classification."""
        raw_h, raw_w = image.shape[:2]
        image, ratio_h, ratio_w = self.preprocess(image)
        record: dict[str, Any] = {"preprocess": {"ratio_h": ratio_h, "ratio_w": ratio_w}}
        image, record = self.maybe_add_letterbox(image, record)
        boxes, _ = self.auto_text_det(image)
        if boxes is None:
            return np.zeros((0, 4, 2), dtype=np.float32), []
        crops = self.get_crop_img_list(image, boxes)
        return self._get_origin_points(boxes, record, raw_h, raw_w), crops


class Detect:
    """Text detection: ``image`` → ``boxes`` (N×4×2 float32) and ``crops`` (N arrays)."""

    inputs = ("image",)
    outputs = ("boxes", "crops")

    def __init__(self, cpu_mem_arena: bool = True, **options: Any) -> None:
        config = rapidocr_config(**options)
        self.detector = _Detector(config)
        if cpu_mem_arena:
            self.detector.text_det.infer = ArenaSession(config["Det"])

    def __call__(self, batch: list[Payload]) -> list[Payload]:
        """Detect each payload's image on its own (images differ in size)."""
        results = []
        for payload in batch:
            boxes, crops = self.detector.detect(decode_image(payload["image"]))
            results.append({"boxes": boxes, "crops": crops})
        return results

    def warmup(self) -> None:
        """Run the detector once on a blank image."""
        self.detector.detect(np.full((64, 64, 3), 255, dtype=np.uint8))


class Classify:
    """Text-angle classification: ``crops`` → ``crops``, the upside-down ones turned."""

    inputs = ("crops",)
    outputs = ("crops",)

    def __init__(self, cpu_mem_arena: bool = True, **options: Any) -> None:
        config = rapidocr_config(**options)["Cls"]
        self.classifier = TextClassifier(config)
        if cpu_mem_arena:
            self.classifier.infer = ArenaSession(config)

    def __call__(self, batch: list[Payload]) -> list[Payload]:
        """Classify the crops of the whole batch together, ``cls_batch_num`` at a time.

        Every crop is resized to the same input shape, so batching crops of several
        images gives each crop the result it gets alone.
        """
        per_payload = [_crops(p) for p in batch]
        turned, _, _ = self.classifier([c for crops in per_payload for c in crops])
        return [{"crops": crops} for crops in _split(turned, [len(c) for c in per_payload])]

    def warmup(self) -> None:
        """Run the classifier once on a blank crop."""
        self.classifier([np.full((48, 192, 3), 255, dtype=np.uint8)])


class Recognize:
    """Text recognition: ``crops`` and ``boxes`` → ``texts``, ``boxes`` and ``scores``.

    The result lists hold the lines scoring at least ``text_score``, in detection order,
    as RapidOCR returns them (empty where RapidOCR returns ``None``).
    """

    inputs = ("crops", "boxes")
    outputs = ("texts", "boxes", "scores")

    def __init__(self, max_batch: int = 32, cpu_mem_arena: bool = True,
                 **options: Any) -> None:
        """``max_batch`` caps the crops of one model run; ``options`` go to RapidOCR."""
        config = rapidocr_config(**options)
        self.recognizer = TextRecognizer(config["Rec"])
        if cpu_mem_arena:
            self.recognizer.session = ArenaSession(config["Rec"])
        self.text_score = config["Global"]["text_score"]
        self.max_batch = max_batch

    def _inputs(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Each crop's model input exactly as RapidOCR builds it for one image: sorted by
        aspect ratio, ``rec_batch_num`` at a time, padded to the widest of its group."""
        _, height, width = self.recognizer.rec_image_shape[:3]
        ratios = [crop.shape[1] / float(crop.shape[0]) for crop in crops]
        order = np.argsort(np.array(ratios))
        step = self.recognizer.rec_batch_num
        inputs: dict[int, np.ndarray] = {}
        for start in range(0, len(crops), step):
            group = order[start:start + step].tolist()
            max_ratio = max([width / height, *(ratios[i] for i in group)])
            for i in group:
                inputs[i] = self.recognizer.resize_norm_img(crops[i], max_ratio)
        return [inputs[i] for i in range(len(crops))]

    def _recognize(self, inputs: list[np.ndarray]) -> list[tuple[str, float]]:
        """Read every input, running inputs of equal width together (up to ``max_batch``)
        whichever image they come from: padding an input wider would change its text."""
        by_width: dict[int, list[int]] = defaultdict(list)
        for i, tensor in enumerate(inputs):
            by_width[tensor.shape[-1]].append(i)
        results: dict[int, tuple[str, float]] = {}
        for indices in by_width.values():
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start:start + self.max_batch]
                preds = self.recognizer.session(np.stack([inputs[i] for i in chunk]))[0]
                results.update(zip(chunk, self.recognizer.postprocess_op(preds), strict=True))
        return [results[i] for i in range(len(inputs))]

    def __call__(self, batch: list[Payload]) -> list[Payload]:
        """Recognise the crops of the whole batch, then filter each payload's lines."""
        per_payload = [_crops(p) for p in batch]
        inputs = [tensor for crops in per_payload for tensor in self._inputs(crops)]
        read = _split(self._recognize(inputs), [len(c) for c in per_payload])
        out = []
        for payload, lines in zip(batch, read, strict=True):
            kept = [(box, text, float(score)) for box, (text, score)
                    in zip(np.asarray(payload["boxes"], dtype=np.float32), lines, strict=True)
                    if float(score) >= self.text_score]
            out.append({"texts": [text for _, text, _ in kept],
                        "boxes": [box.tolist() for box, _, _ in kept],
                        "scores": [score for _, _, score in kept]})
        return out

    def warmup(self) -> None:
        """Run the recogniser once on a blank crop."""
        self._recognize(self._inputs([np.full((48, 320, 3), 255, dtype=np.uint8)]))
