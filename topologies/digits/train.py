"""Training of the digits example models on scikit-learn's bundled 8×8 digits.

The data set (1797 digits, 64 pixel values 0..16 each) is split once, with a fixed
seed, into a training part and a held-out test part (25 %, stratified); every model
sees pixels scaled to 0..1 (divided by 16) and is scored on the same held-out part,
which is saved raw (0..16) as ``digits_test.npz`` so that the examples and tests can
replay it. The model files, their inputs and outputs, are listed in
``scripts/train_digits.py``, the command line over :func:`train_all`.

The four members are ``logreg`` (a logistic regression) and ``forest`` (a random forest),
both exported with skl2onnx, and the torch networks ``mlp`` (one hidden layer) and ``cnn``
(two convolutions). The CNN trains on its digits shifted at random by up to one pixel in
each direction (a fresh shift per digit and epoch, zeros shifted in): 8×8 digits vary in
position more than in shape, and the pixel-wise members cannot learn that invariance.

Nothing fitted here looks at the held-out part: every choice made from data comes from
out-of-fold predictions on the training part (5 stratified folds, seed 0: each member
refitted on four folds, with its own recipe, predicts the fifth), which show the
members' errors on digits they were not trained on, as at inference:

* the soft vote's weights (``digits_weights.json``, read by no topology: YAML is static,
  so ``topologies/digits_ensemble.yaml`` repeats them under ``vote.join.weights`` and a
  test checks that the two agree). Every member keeps a vote: each weight is an integer
  of :data:`WEIGHT_GRID` (1..4), and the four chosen maximise the accuracy of the
  weighted mean of the out-of-fold probabilities; ties go to the smallest sum of
  weights, then to the first in grid order. Out of fold, equal weights were less
  accurate (0.983 against 0.990): they undervalue the forest, whose averaged trees give
  flat probabilities, and the CNN, the most accurate member.
* the stacking meta-model (``digits_stack.onnx``), a logistic regression over the four
  members' out-of-fold probabilities side by side, whose regularisation ``C`` is the
  one of :data:`STACK_CS` with the smallest cross-validated log loss on those features
  (the same folds; ties to the smaller ``C``), then refitted on all of them.

Training everything takes about 20 s on one core (torch runs one thread: on two busy
cores, two threads were slower and erratic). Everything is seeded: two runs write models
that give the same results; another thread count or CPU may round differently and so
choose other weights, which the test of the topology's weights then reports.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from torch import nn
from training import save_onnx, write_atomically

from streamcompose.runtimes.torch_runtime import torchscript_allowed

from .direct import MEMBERS, WEIGHTS_FILE, member_probabilities, soft_vote, stacking_features

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
TEST_FILE = "digits_test.npz"
SEED = 0
THREADS = 1  # one thread: steadier than two on busy cores, and as fast for these nets
SCALE = 16.0
CLASSES = 10
CNN_EPOCHS = 30
MLP_EPOCHS = 40
STACK_FOLDS = 5
#: the soft vote's candidate weights, for each member
WEIGHT_GRID = (1, 2, 3, 4)
#: the stacking meta-model's candidate inverse regularisations
STACK_CS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


@dataclass(frozen=True)
class Split:
    """The fixed train/test split: features scaled to 0..1 as float32, labels as int64,
    and the held-out pixels as scikit-learn gives them (0..16)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    raw_test: np.ndarray

    @cached_property
    def out_of_fold(self) -> dict[str, np.ndarray]:
        """The members' out-of-fold probabilities on the training part (computed once:
        the soft vote's weights and the meta-model learn from them)."""
        return out_of_fold_probabilities(self)


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


def shift_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``images`` [B,1,8,8] moved by -1, 0 or 1 pixel down and as many right,
    both drawn from ``generator``; zeros come in at the edges."""
    count = len(images)
    padded = nn.functional.pad(images, (1, 1, 1, 1))[:, 0]
    rows = torch.randint(0, 3, (count,), generator=generator)[:, None] + torch.arange(8)
    cols = torch.randint(0, 3, (count,), generator=generator)[:, None] + torch.arange(8)
    return padded[torch.arange(count)[:, None, None], rows[:, :, None], cols[:, None, :]][:, None]


def _fit_torch(net: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, *,
               shift: bool = False, seed: int = SEED) -> None:
    """Train a logits network with Adam and cross-entropy, in seeded mini-batches of 64;
    with ``shift`` (images [N,1,8,8] only), each batch moved by :func:`shift_images`."""
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(inputs), generator=generator).split(64):
            batch = shift_images(inputs[idx], generator) if shift else inputs[idx]
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(batch), targets[idx]).backward()
            optimizer.step()
    net.eval()


def _export_torch(net: nn.Module, x_test: np.ndarray, y_test: np.ndarray, path: Path) -> float:
    """Save ``net`` with a softmax as TorchScript; return its held-out accuracy."""
    with torchscript_allowed():
        scripted = torch.jit.script(Probabilities(net).eval())
        write_atomically(path, lambda tmp: torch.jit.save(scripted, str(tmp)))
    with torch.inference_mode():
        proba = scripted(torch.from_numpy(x_test)).numpy()
    return float(np.mean(proba.argmax(axis=1) == y_test))


def train_cnn(split: Split, path: Path, seed: int = SEED) -> float:
    """Train the CNN on randomly shifted digits and save it as TorchScript: input ``x``
    float32 [N,1,8,8] (pixels/16), output ``proba`` float32 [N,10]. Returns the held-out
    accuracy. Another ``seed`` (of its initial weights and batches) trains another
    version of it."""
    torch.manual_seed(seed)
    net = DigitsCNN()
    _fit_torch(net, split.x_train.reshape(-1, 1, 8, 8), split.y_train, epochs=CNN_EPOCHS,
               shift=True, seed=seed)
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
    return save_onnx(model, path, inputs=("x", features), outputs=("label", "proba"),
                     classes=CLASSES)


def _fit_to_onnx(model: LogisticRegression | RandomForestClassifier, split: Split,
                 path: Path) -> float:
    """Fit a scikit-learn classifier on the pixels, save it as ONNX (input ``x`` float32
    [N,64]); return the ONNX model's held-out accuracy."""
    model.fit(split.x_train, split.y_train)
    (label,) = _save_onnx(model, 64, path).run(["label"], {"x": split.x_test})
    return float(np.mean(label == split.y_test))


def _logreg(c: float = 1.0) -> LogisticRegression:
    """The logistic regression of the ``logreg`` member (``C`` 1) and of the meta-model."""
    return LogisticRegression(C=c, max_iter=2000, random_state=SEED)


def _forest() -> RandomForestClassifier:
    """40 trees of depth <= 12, to keep the ONNX file near 1 MB."""
    return RandomForestClassifier(n_estimators=40, max_depth=12, random_state=SEED)


def train_logreg(split: Split, path: Path) -> float:
    """Train a logistic regression and save it as ONNX. Returns the held-out accuracy."""
    return _fit_to_onnx(_logreg(), split, path)


def train_forest(split: Split, path: Path) -> float:
    """Train a random forest and save it as ONNX. Returns the held-out accuracy."""
    return _fit_to_onnx(_forest(), split, path)


def _folds(split: Split) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 5 stratified folds of the training part (seeded): (fit, predict) indices."""
    return list(StratifiedKFold(STACK_FOLDS, shuffle=True, random_state=SEED)
                .split(split.x_train, split.y_train))


def _torch_out_of_fold(make: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray,
                       epochs: int, folds: list[tuple[np.ndarray, np.ndarray]], *,
                       shift: bool = False) -> np.ndarray:
    """Probabilities [N,10] of fold networks, each trained as its member is (``epochs``,
    ``shift``) on all but one fold and predicting that fold."""
    proba = np.zeros((len(x), CLASSES), dtype=np.float32)
    for fit_idx, predict_idx in folds:
        torch.manual_seed(SEED)
        net = make()
        _fit_torch(net, x[fit_idx], y[fit_idx], epochs, shift=shift)
        with torch.inference_mode():
            proba[predict_idx] = torch.softmax(net(torch.from_numpy(x[predict_idx])),
                                               dim=1).numpy()
    return proba


def out_of_fold_probabilities(split: Split) -> dict[str, np.ndarray]:
    """Each member's out-of-fold probabilities [N,10] on the training part, in
    :data:`~digits.direct.MEMBERS` order (5 stratified folds, seeded; each fold model
    trained with its member's recipe). :attr:`Split.out_of_fold` keeps them."""
    x, y = split.x_train, split.y_train
    folds = _folds(split)
    return {
        "logreg": cross_val_predict(_logreg(), x, y, cv=folds, method="predict_proba"),
        "forest": cross_val_predict(_forest(), x, y, cv=folds, method="predict_proba"),
        "mlp": _torch_out_of_fold(DigitsMLP, x, y, MLP_EPOCHS, folds),
        "cnn": _torch_out_of_fold(DigitsCNN, x.reshape(-1, 1, 8, 8), y, CNN_EPOCHS, folds,
                                  shift=True),
    }


def vote_weights(oof: dict[str, np.ndarray], y: np.ndarray) -> dict[str, int]:
    """The soft vote's weights, by member in :data:`~digits.direct.MEMBERS` order: of the
    combinations of :data:`WEIGHT_GRID`, the one whose weighted soft vote of the
    out-of-fold probabilities ``oof`` is the most accurate on the labels ``y``; ties go to
    the smallest sum of weights, then to the first in grid order."""
    best: tuple[float, int] | None = None
    chosen: dict[str, int] = {}
    for combo in itertools.product(WEIGHT_GRID, repeat=len(MEMBERS)):
        weights = dict(zip(MEMBERS, combo, strict=True))
        score = (float(np.mean(soft_vote(oof, weights).argmax(axis=1) == y)), -sum(combo))
        if best is None or score > best:
            best, chosen = score, weights
    return chosen


def train_weights(split: Split, path: Path) -> float:
    """Choose the soft vote's weights (:func:`vote_weights`) and save them as JSON, a
    mapping of member names to integers. Returns the held-out accuracy of the weighted
    soft vote, whose members are read from ``path``'s folder (train them first)."""
    weights = vote_weights(split.out_of_fold, split.y_train)
    data = json.dumps(weights, indent=2) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(data, encoding="utf-8"))
    members = member_probabilities(split.raw_test, path.parent)
    return float(np.mean(soft_vote(members, weights).argmax(axis=1) == split.y_test))


def stack_c(features: np.ndarray, y: np.ndarray,
            folds: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The meta-model's ``C``: of :data:`STACK_CS`, the one whose logistic regression has
    the smallest cross-validated log loss over ``folds`` (ties to the smaller ``C``)."""
    losses = [log_loss(y, cross_val_predict(_logreg(c), features, y, cv=folds,
                                            method="predict_proba"), labels=range(CLASSES))
              for c in STACK_CS]
    return STACK_CS[int(np.argmin(losses))]


def train_stack(split: Split, path: Path) -> float:
    """Train the stacking meta-model (its ``C`` from :func:`stack_c`) and save it as ONNX:
    input ``x`` float32 [N,40] (the members' probabilities side by side, in the order
    logreg, forest, mlp, cnn), outputs ``label`` int64 [N] and ``proba`` float32 [N,10].
    Returns the held-out accuracy of the stacked ensemble, whose members are read from
    ``path``'s folder (train them first)."""
    features = stacking_features(split.out_of_fold)
    c = stack_c(features, split.y_train, _folds(split))
    meta = _logreg(c).fit(features, split.y_train)
    session = _save_onnx(meta, CLASSES * len(MEMBERS), path)
    members = member_probabilities(split.raw_test, path.parent)
    (label,) = session.run(["label"], {"x": stacking_features(members)})
    return float(np.mean(label == split.y_test))


TRAINERS: dict[str, Callable[[Split, Path], float]] = {
    "digits_cnn.pt": train_cnn,
    "digits_logreg.onnx": train_logreg,
    "digits_forest.onnx": train_forest,
    "digits_mlp.pt": train_mlp,
    # last: these read the members' files
    WEIGHTS_FILE: train_weights,
    "digits_stack.onnx": train_stack,
}


def save_test_split(split: Split, path: Path) -> None:
    """Save the held-out digits: ``X`` float32 [N,64] raw pixels (0..16), ``y`` int64 [N]."""
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, X=split.raw_test, y=split.y_test)

    write_atomically(path, write)


def train_all(out_dir: Path = MODELS_DIR, *, force: bool = False,
              only: str | None = None, seed: int | None = None) -> dict[str, float | None]:
    """Write the test split and every model (``only`` that file) into ``out_dir``,
    keeping the files that already exist unless ``force``; ``seed`` seeds the CNN's
    training instead of :data:`SEED` (a retrained version). Returns each model file's
    held-out accuracy, ``None`` for a model kept as it was."""
    out_dir.mkdir(parents=True, exist_ok=True)
    split = load_split()
    if force or not (out_dir / TEST_FILE).exists():
        save_test_split(split, out_dir / TEST_FILE)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        seeded = {"digits_cnn.pt": lambda s, p: train_cnn(s, p, seed)} if seed is not None else {}
        return {name: seeded.get(name, train)(split, out_dir / name)
                if force or not (out_dir / name).exists() else None
                for name, train in TRAINERS.items() if only in (None, name)}
    finally:
        torch.set_num_threads(threads)
