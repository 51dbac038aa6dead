"""Training of the digits example models on scikit-learn's bundled 8×8 digits.

The data set (1797 digits, 64 pixel values 0..16 each) is split once, with a fixed
seed, into a training part and a held-out test part (25 %, stratified); every model
sees pixels scaled to 0..1 (divided by 16) and is scored on the same held-out part,
which is saved raw (0..16) as ``digits_test.npz`` so that the examples and tests can
replay it. The model files, their inputs and outputs, are listed in
``scripts/train_digits.py``, the command line over :func:`train_all`.

The stacking meta-model (``digits_stack.onnx``) is a logistic regression over the four
members' probabilities. It learns from out-of-fold predictions on the training part
(5 stratified folds: each member refitted on four folds predicts the fifth), so that it
sees the members' errors on digits they were not trained on, as at inference. The torch
fold networks train for half their member's epochs, to keep the whole under a minute
on two cores.

Everything is seeded: two runs write models that give the same results.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from torch import nn

from .direct import MEMBERS, member_probabilities, stacking_features

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
TEST_FILE = "digits_test.npz"
SEED = 0
THREADS = 2
SCALE = 16.0
ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}
CLASSES = 10
CNN_EPOCHS = 30
MLP_EPOCHS = 40
STACK_FOLDS = 5


@dataclass(frozen=True)
class Split:
    """The fixed train/test split: features scaled to 0..1 as float32, labels as int64,
    and the held-out pixels as scikit-learn gives them (0..16)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    raw_test: np.ndarray


def load_split() -> Split:
    """Load the digits and split them: 75 % to train, 25 % held out, stratified, seed 0."""
    digits = load_digits()
    raw_train, raw_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=SEED, stratify=digits.target)
    return Split(x_train=(raw_train / SCALE).astype(np.float32), y_train=y_train.astype(np.int64),
                 x_test=(raw_test / SCALE).astype(np.float32), y_test=y_test.astype(np.int64),
                 raw_test=raw_test.astype(np.float32))


class DigitsCNN(nn.Module):
    """Two 3×3 convolutions and a small dense head: [N,1,8,8] -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
                                  nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DigitsMLP(nn.Module):
    """One hidden layer of 128 units: [N,64] -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Probabilities(nn.Module):
    """Wraps a logits network so that it returns class probabilities (softmax)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


@contextmanager
def _torchscript() -> Iterator[None]:
    """Silence torch's deprecation notice of TorchScript, which the torch runtime loads."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated",
                                category=FutureWarning)
        yield


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, so no reader sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _fit_torch(net: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    """Train a logits network with Adam and cross-entropy, in seeded mini-batches of 64."""
    generator = torch.Generator().manual_seed(SEED)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(inputs), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(inputs[idx]), targets[idx]).backward()
            optimizer.step()
    net.eval()


def _export_torch(net: nn.Module, x_test: np.ndarray, y_test: np.ndarray, path: Path) -> float:
    """Save ``net`` with a softmax as TorchScript; return its held-out accuracy."""
    with _torchscript():
        scripted = torch.jit.script(Probabilities(net).eval())
        _write_atomically(path, lambda tmp: torch.jit.save(scripted, str(tmp)))
    with torch.inference_mode():
        proba = scripted(torch.from_numpy(x_test)).numpy()
    return float(np.mean(proba.argmax(axis=1) == y_test))


def train_cnn(split: Split, path: Path) -> float:
    """Train the CNN and save it as TorchScript: input ``x`` float32 [N,1,8,8] (pixels/16),
    output ``proba`` float32 [N,10]. Returns the held-out accuracy."""
    torch.manual_seed(SEED)
    net = DigitsCNN()
    _fit_torch(net, split.x_train.reshape(-1, 1, 8, 8), split.y_train, epochs=CNN_EPOCHS)
    return _export_torch(net, split.x_test.reshape(-1, 1, 8, 8), split.y_test, path)


def train_mlp(split: Split, path: Path) -> float:
    """Train the MLP and save it as TorchScript: input ``x`` float32 [N,64] (pixels/16),
    output ``proba`` float32 [N,10]. Returns the held-out accuracy."""
    torch.manual_seed(SEED)
    net = DigitsMLP()
    _fit_torch(net, split.x_train, split.y_train, epochs=MLP_EPOCHS)
    return _export_torch(net, split.x_test, split.y_test, path)


def _save_onnx(model: LogisticRegression | RandomForestClassifier, features: int,
               path: Path) -> ort.InferenceSession:
    """Save a fitted scikit-learn classifier as ONNX (input ``x`` float32 [N,features],
    outputs ``label`` int64 [N] and ``proba`` float32 [N,10], no ZipMap); return an
    ONNX Runtime session of the saved model."""
    onx = to_onnx(model, initial_types=[("x", FloatTensorType([None, features]))],
                  final_types=[("label", Int64TensorType([None])),
                               ("proba", FloatTensorType([None, CLASSES]))],
                  options={"zipmap": False}, target_opset=ONNX_OPSET)
    data = onx.SerializeToString()
    _write_atomically(path, lambda tmp: tmp.write_bytes(data))
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _fit_to_onnx(model: LogisticRegression | RandomForestClassifier, split: Split,
                 path: Path) -> float:
    """Fit a scikit-learn classifier on the pixels, save it as ONNX (input ``x`` float32
    [N,64]); return the ONNX model's held-out accuracy."""
    model.fit(split.x_train, split.y_train)
    (label,) = _save_onnx(model, 64, path).run(["label"], {"x": split.x_test})
    return float(np.mean(label == split.y_test))


def _logreg() -> LogisticRegression:
    """The logistic regression of the ``logreg`` member and of the meta-model."""
    return LogisticRegression(max_iter=2000, random_state=SEED)


def _forest() -> RandomForestClassifier:
    """40 trees of depth <= 12, to keep the ONNX file near 1 MB."""
    return RandomForestClassifier(n_estimators=40, max_depth=12, random_state=SEED)


def train_logreg(split: Split, path: Path) -> float:
    """Train a logistic regression and save it as ONNX. Returns the held-out accuracy."""
    return _fit_to_onnx(_logreg(), split, path)


def train_forest(split: Split, path: Path) -> float:
    """Train a random forest and save it as ONNX. Returns the held-out accuracy."""
    return _fit_to_onnx(_forest(), split, path)


def _torch_out_of_fold(make: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray,
                       epochs: int, folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Probabilities [N,10] of fold networks, each trained for ``epochs`` on all but one
    fold and predicting that fold."""
    proba = np.zeros((len(x), CLASSES), dtype=np.float32)
    for fit_idx, predict_idx in folds:
        torch.manual_seed(SEED)
        net = make()
        _fit_torch(net, x[fit_idx], y[fit_idx], epochs)
        with torch.inference_mode():
            proba[predict_idx] = torch.softmax(net(torch.from_numpy(x[predict_idx])),
                                               dim=1).numpy()
    return proba


def out_of_fold_probabilities(split: Split) -> dict[str, np.ndarray]:
    """Each member's out-of-fold probabilities [N,10] on the training part, in
    :data:`~digits.direct.MEMBERS` order (5 stratified folds, seeded; the torch fold
    networks train for half their member's epochs)."""
    x, y = split.x_train, split.y_train
    folds = list(StratifiedKFold(STACK_FOLDS, shuffle=True, random_state=SEED).split(x, y))
    return {
        "logreg": cross_val_predict(_logreg(), x, y, cv=folds, method="predict_proba"),
        "forest": cross_val_predict(_forest(), x, y, cv=folds, method="predict_proba"),
        "mlp": _torch_out_of_fold(DigitsMLP, x, y, MLP_EPOCHS // 2, folds),
        "cnn": _torch_out_of_fold(DigitsCNN, x.reshape(-1, 1, 8, 8), y, CNN_EPOCHS // 2,
                                  folds),
    }


def train_stack(split: Split, path: Path) -> float:
    """Train the stacking meta-model and save it as ONNX: input ``x`` float32 [N,40] (the
    members' probabilities side by side, in the order logreg, forest, mlp, cnn), outputs
    ``label`` int64 [N] and ``proba`` float32 [N,10]. Returns the held-out accuracy of the
    stacked ensemble, whose members are read from ``path``'s folder (train them first)."""
    oof = out_of_fold_probabilities(split)
    meta = _logreg().fit(stacking_features(oof), split.y_train)
    session = _save_onnx(meta, CLASSES * len(MEMBERS), path)
    members = member_probabilities(split.raw_test, path.parent)
    (label,) = session.run(["label"], {"x": stacking_features(members)})
    return float(np.mean(label == split.y_test))


TRAINERS: dict[str, Callable[[Split, Path], float]] = {
    "digits_cnn.pt": train_cnn,
    "digits_logreg.onnx": train_logreg,
    "digits_forest.onnx": train_forest,
    "digits_mlp.pt": train_mlp,
    "digits_stack.onnx": train_stack,  # last: it reads the members' files
}


def save_test_split(split: Split, path: Path) -> None:
    """Save the held-out digits: ``X`` float32 [N,64] raw pixels (0..16), ``y`` int64 [N]."""
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, X=split.raw_test, y=split.y_test)

    _write_atomically(path, write)


def train_all(out_dir: Path = MODELS_DIR, *, force: bool = False) -> dict[str, float | None]:
    """Write the test split and every model into ``out_dir``, keeping the files that
    already exist unless ``force``. Returns each model file's held-out accuracy, ``None``
    for a model kept as it was."""
    out_dir.mkdir(parents=True, exist_ok=True)
    split = load_split()
    if force or not (out_dir / TEST_FILE).exists():
        save_test_split(split, out_dir / TEST_FILE)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return {name: train(split, out_dir / name)
                if force or not (out_dir / name).exists() else None
                for name, train in TRAINERS.items()}
    finally:
        torch.set_num_threads(threads)
