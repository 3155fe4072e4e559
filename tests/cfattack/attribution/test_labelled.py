"""fit_labelled_predictors: predictors of image labels fitted on the images' inversions (the paper's CelebA route)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cfattack.attribution.labelled import fit_labelled_predictors
from cfattack.attribution.predictors import load_descriptor_model
from cfattack.errors import InvalidInputError
from descriptors import LabelledAttributes

pytestmark = pytest.mark.usefixtures("one_thread")

FOOTWEAR = ("sandal", "sneaker", "ankle-boot")
UPPER_BODY = ("t-shirt", "pullover", "coat", "shirt")


@pytest.fixture(scope="module")
def fashion_inversions():
    """The default bundle's encoder on 300 Fashion-MNIST test images: (G, ws [300, num_ws, w_dim], class names)."""
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    from cfattack.bundle.loader import load_bundle
    from cfattack.training.data import load_fashion_mnist

    torch.set_num_threads(1)
    bundle = load_bundle("default")
    data = load_fashion_mnist("test")
    with torch.no_grad():
        ws = bundle.encoder(data.images[:300])
    names = [data.class_names[i] for i in data.labels[:300].tolist()]
    return bundle.generator, ws, names


def test_footwear_from_fashion_mnist_inversions(fashion_inversions, tmp_path):
    G, ws, classes = fashion_inversions
    labels = {"footwear": np.isin(classes, FOOTWEAR).astype(float),
              "coin_flip": np.random.default_rng(0).integers(0, 2, len(classes)).astype(float)}
    model = fit_labelled_predictors(ws, labels, generator=G)
    foot, coin = model.fit_of("footwear"), model.fit_of("coin_flip")
    assert (foot.kind, foot.score_name, foot.group, foot.unit) == ("logistic", "accuracy", "labelled", "probability")
    assert foot.num_holdout == 60 and foot.score >= 0.95 and foot.skill >= 0.8 and foot.reliable
    assert not coin.reliable and coin.skill < 0.5                                     # labels unrelated to images
    assert model.fits_generator(G)

    # Saved in the descriptor-model format the explainer loads, and usable for ranking.
    again = load_descriptor_model(model.save(tmp_path / "labels.pt"))
    assert again.names == model.names and again.fits == model.fits
    shoes = torch.from_numpy(np.isin(classes, FOOTWEAR))
    p = again.predict(ws)[:, again.names.index("footwear")]
    assert p[shoes].mean() > 0.8 and p[~shoes].mean() < 0.2
    (rows,) = again.rank(ws[~shoes][:1], ws[shoes][:1])                             # garment -> shoe latents
    assert rows[0].name == "footwear" and rows[0].change > 0.5


def test_labels_from_a_csv_table(fashion_inversions, tmp_path):
    G, ws, classes = fashion_inversions
    image_names = [f"img{i:04d}.png" for i in range(len(classes))]
    lines = ["image,footwear,upper_body"] + [f"{n},{1 if c in FOOTWEAR else -1},{1 if c in UPPER_BODY else -1}"
                                             for n, c in zip(image_names, classes)]     # CelebA's -1 / 1
    (tmp_path / "attrs.csv").write_text("\n".join(lines) + "\n")
    table = LabelledAttributes.from_csv(tmp_path / "attrs.csv")
    order = np.random.default_rng(1).permutation(len(classes))        # ws rows in another order than the table
    model = fit_labelled_predictors(ws[order], table, image_names=[f"data/{image_names[i]}" for i in order],
                                    latent="w")
    fit, upper = model.fit_of("footwear"), model.fit_of("upper_body")
    assert fit.kind == "logistic" and fit.score >= 0.95 and model.latent == "w"
    assert upper.kind == "logistic" and upper.score >= 0.85 and upper.reliable      # a harder split, still learnt
    assert "attrs.csv" in fit.meaning and model.generator_fingerprint is None


def test_bad_labels_are_clear_errors():
    ws = torch.randn(40, 2, 4)
    with pytest.raises(InvalidInputError, match="image_names"):
        fit_labelled_predictors(ws, LabelledAttributes(["a"], {"x": [1.0]}))
    with pytest.raises(InvalidInputError, match="column 'x' has 39 values for 40 images"):
        fit_labelled_predictors(ws, {"x": np.zeros(39)})
    with pytest.raises(InvalidInputError, match="not in the table"):
        fit_labelled_predictors(ws, LabelledAttributes(["a"], {"x": [1.0]}), image_names=["b"] * 40)
    with pytest.raises(InvalidInputError, match=r"float tensor \[N, num_ws, w_dim\]"):
        fit_labelled_predictors(ws[0], {"x": np.zeros(40)})
    with pytest.raises(InvalidInputError, match="mapping"):
        fit_labelled_predictors(ws, [1, 0])
