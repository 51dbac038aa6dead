"""The OCR example needs rapidocr-onnxruntime, which the `examples` extra installs only
below Python 3.13 (its 1.4 releases declare Python < 3.13): without it, its steps are not
collected for doctests."""

from importlib.util import find_spec

collect_ignore = [] if find_spec("rapidocr_onnxruntime") else ["steps.py"]
