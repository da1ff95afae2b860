"""The real datasets read in place: official split sizes and class counts, and the training split recipe."""
from __future__ import annotations

import numpy as np
import pytest

from dataset_paths import FER2013_ZIP, FERPLUS_ZIP, needs_fer2013, needs_ferplus
from model_export.data import FER2013_CLASSES, FERPLUS_CLASSES, ferplus_reference_labels, load_dataset
from model_export.run import make_splits

pytestmark = pytest.mark.dataset


@needs_fer2013
def test_fer2013_official_splits_and_counts() -> None:
    ds = load_dataset("fer2013-zip", FER2013_ZIP)
    assert ds.classes == FER2013_CLASSES
    assert {s: int((ds.splits == s).sum()) for s in ("train", "public_test", "test")} == {"train": 28709, "public_test": 3589, "test": 3589}
    # Per-class Training counts as published with the dataset (disgust is the rare class).
    assert ds.split("train").class_counts().tolist() == [3995, 436, 4097, 7215, 4965, 4830, 3171]


@needs_ferplus
def test_ferplus_splits_soft_targets_and_recipe() -> None:
    ds = load_dataset("ferplus", FERPLUS_ZIP)
    assert ds.classes == FERPLUS_CLASSES
    sizes = {s: int((ds.splits == s).sum()) for s in ("train", "public_test", "test")}
    # 28,558 / 3,579 / 3,573 images, less those whose majority vote is unknown or not-a-face.
    assert sizes["train"] <= 28558 and sizes["public_test"] <= 3579 and sizes["test"] <= 3573
    assert sum(sizes.values()) > 35000
    np.testing.assert_allclose(ds.soft.sum(1), 1.0, atol=1e-6)
    assert (ds.soft.argmax(1) == ds.labels).mean() > 0.99  # majority = argmax of votes (ties aside)
    splits = make_splits(ds, 0.125, seed=0)
    n_train, n_val = len(splits["train"].labels), len(splits["val"].labels)
    assert n_train + n_val == sizes["train"] and abs(n_val / (n_train + n_val) - 0.125) < 0.002
    assert len(splits["test"].labels) == sizes["test"]  # the official test set stays intact
    ratio = np.bincount(splits["val"].labels, minlength=8) / np.bincount(splits["train"].labels, minlength=8)
    assert np.all(np.abs(ratio - 1 / 7) < 0.02)  # stratified: every class split 87.5/12.5


@needs_ferplus
def test_ferplus_reference_protocol_and_official_validation() -> None:
    ds = load_dataset("ferplus", FERPLUS_ZIP)
    # The FERPlus reference tooling keeps 3,137 of the 3,573 official test images.
    assert int((ferplus_reference_labels(ds.split("test").votes) >= 0).sum()) == 3137
    splits = make_splits(ds, 0.125, seed=0, val_split="official")
    assert len(splits["train"].labels) == int((ds.splits == "train").sum())  # all of FER2013Train trains
    assert len(splits["val"].labels) == int((ds.splits == "public_test").sum())  # FER2013Valid validates
    assert "public_test" not in splits and len(splits["test"].labels) == int((ds.splits == "test").sum())
    assert splits["test"].votes.shape == (len(splits["test"].labels), 10)
    refit = make_splits(ds, 0.125, seed=0, val_split="none")  # FER2013Train + FER2013Valid train, nothing validates
    assert set(refit) == {"train", "test"} and len(refit["test"].labels) == len(splits["test"].labels)
    assert len(refit["train"].labels) == len(splits["train"].labels) + len(splits["val"].labels)
    assert refit["train"].soft.shape == (len(refit["train"].labels), 8) and refit["train"].votes.shape[1] == 10
