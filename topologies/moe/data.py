"""The mixture-of-experts example's data: three sub-domains, each labelled by its own rule.

Every sample has :data:`FEATURES` = 4 features. Features ``x2, x3`` say *where* a sample
lies: each region (``a``, ``b``, ``c``) is a Gaussian blob (standard deviation 1) around
its own centre in that plane, the centres about 7 apart, so a linear gate tells the
regions apart. Features ``x0, x1`` (standard normal in every region) say *what* its
label (0 or 1) is, by a rule that differs from region to region:

* ``a``: ``x0 > 0`` (a half-plane);
* ``b``: ``x0 * x1 > 0`` (a checkerboard: the signs agree);
* ``c``: ``x0² + x1² < 2 ln 2`` (a disc holding half the samples).

No single linear boundary fits the three rules, and a model fitted to one region guesses
at about chance level in the others, while one expert per region (gated by region) gets
nearly every sample right. The split is fixed: :data:`SAMPLES_PER_REGION` samples per
region, 25 % of them held out (stratified by region), all seeded.

>>> split = load_split()
>>> split.x_train.shape, split.x_test.shape, split.x_test.dtype
((2250, 4), (750, 4), dtype('float32'))
>>> np.bincount(split.region_test).tolist(), round(float(split.y_test.mean()), 2)
([250, 250, 250], 0.51)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

SEED = 0
FEATURES = 4
REGIONS = ("a", "b", "c")
#: each region's centre; the regions differ in ``x2, x3`` only
CENTERS = np.array([[0.0, 0.0, -3.5, -2.0], [0.0, 0.0, 3.5, -2.0], [0.0, 0.0, 0.0, 4.0]])
SAMPLES_PER_REGION = 1000
TEST_SIZE = 0.25
#: the squared radius of region ``c``'s disc: half of a 2-D standard normal lies inside
DISC_RADIUS2 = 2.0 * np.log(2.0)


def label_rule(region: int, x: np.ndarray) -> np.ndarray:
    """The labels (int64 0/1) region number ``region`` gives the samples ``x`` [N,4]."""
    x0, x1 = x[:, 0], x[:, 1]
    if REGIONS[region] == "a":
        inside = x0 > 0
    elif REGIONS[region] == "b":
        inside = x0 * x1 > 0
    else:
        inside = x0**2 + x1**2 < DISC_RADIUS2
    return inside.astype(np.int64)


def make_dataset(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All samples, region by region: features float32 [N,4], labels int64 [N] and region
    numbers int64 [N] (indices into :data:`REGIONS`)."""
    rng = np.random.default_rng(seed)
    xs, ys, regions = [], [], []
    for region, centre in enumerate(CENTERS):
        x = (centre + rng.standard_normal((SAMPLES_PER_REGION, FEATURES))).astype(np.float32)
        xs.append(x)
        ys.append(label_rule(region, x))
        regions.append(np.full(SAMPLES_PER_REGION, region, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(regions)


@dataclass(frozen=True)
class Split:
    """The fixed train/test split: features float32 [N,4], labels and regions int64 [N]."""

    x_train: np.ndarray
    y_train: np.ndarray
    region_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    region_test: np.ndarray


def load_split(seed: int = SEED) -> Split:
    """The data set split 75 % / 25 %, stratified by region, seeded."""
    x, y, region = make_dataset(seed)
    x_train, x_test, y_train, y_test, r_train, r_test = train_test_split(
        x, y, region, test_size=TEST_SIZE, random_state=seed, stratify=region)
    return Split(x_train=x_train, y_train=y_train, region_train=r_train,
                 x_test=x_test, y_test=y_test, region_test=r_test)
