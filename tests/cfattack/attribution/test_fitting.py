"""Fitting latent descriptor predictors: known answers on synthetic latents, tiny generators, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cfattack.attribution.fitting import fit_descriptor_model, fit_from_latents
from cfattack.attribution.predictors import load_descriptor_model
from cfattack.attribution.sampling import generator_fingerprint
from cfattack.errors import InvalidInputError
from cfattack.stylegan.generator import Generator
from descriptors import LabelledAttributes, default_descriptors
from tests.cfattack.cli.test_cli import assert_one_line_failure, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_generator(resolution: int = 16, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=resolution, img_channels=1, channel_base=128,
                  channel_max=8, num_layers=3, num_critical=1, margin_size=2).eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(500, 8), None)[:, 0].mean(0))
    return G


def test_ridge_recovers_a_linear_map_and_noise_is_unreliable(synthetic):
    ws, values, a, model = synthetic
    linear, noise = model.fit_of("linear"), model.fit_of("noise")
    assert (linear.kind, linear.score_name) == ("ridge", "r2")
    assert linear.score > 0.999 and linear.reliable and linear.unit == "px" and linear.higher_means == "more"
    assert noise.score < 0.1 and not noise.reliable
    assert linear.num_fit + linear.num_holdout == 600 and linear.num_holdout == 120
    assert linear.std == pytest.approx(values["linear"][:].std(), rel=0.1)
    # The fitted map is the known one: a step along one coordinate changes the prediction by a[i].
    ws2 = ws[:5].clone()
    ws2[:, 1, 3] += 1.0
    step = model.predict(ws2)[:, 0] - model.predict(ws[:5])[:, 0]
    assert torch.allclose(step, torch.full((5,), float(a[11])), atol=0.02)
    pred = model.predict(ws)[:, model.names.index("linear")].double().numpy()
    assert np.abs(pred - values["linear"]).max() < 0.05


def test_logistic_on_a_binary_column(synthetic):
    ws, values, _, model = synthetic
    fit = model.fit_of("label")
    assert (fit.kind, fit.score_name, fit.unit) == ("logistic", "accuracy", "probability")
    assert fit.score > 0.9 and fit.reliable and 0.5 <= fit.majority_rate < 1
    assert fit.skill == pytest.approx((fit.score - fit.majority_rate) / (1 - fit.majority_rate))
    p = model.predict(ws)[:, model.names.index("label")]
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    assert float(((p > 0.5).double().numpy() == values["label"]).mean()) > 0.9


def test_binary_labels_from_a_table_and_auto_detection():
    rng = torch.Generator().manual_seed(3)
    ws = torch.randn(200, 2, 4, generator=rng)
    smiling = (ws[:, 0, 0] > 0).double().numpy() * 2 - 1           # CelebA's -1 / 1
    age = (ws[:, 1, 2] * 10 + 40).double().numpy()
    names = [f"{i:06d}.jpg" for i in range(200)]
    table = LabelledAttributes(names, {"Smiling": smiling, "age": age})
    model = fit_from_latents(ws, table.values(names), table)
    assert model.fit_of("Smiling").kind == "logistic" and model.fit_of("age").kind == "ridge"
    assert model.fit_of("age").score > 0.99 and model.fit_of("Smiling").score > 0.9
    auto = fit_from_latents(ws, {"flag": (smiling > 0).astype(float)}, None)   # names only: 0/1 -> logistic
    assert auto.fit_of("flag").kind == "logistic" and auto.fit_of("flag").group == "labelled"


def test_constant_and_undefined_descriptors_are_dropped_with_a_reason():
    ws = torch.randn(100, 1, 4, generator=torch.Generator().manual_seed(0))
    good = ws[:, 0, 0].double().numpy()
    mostly_nan = np.where(np.arange(100) < 50, np.nan, good)
    some_nan = np.where(np.arange(100) % 25 == 0, np.nan, good)      # 4 % undefined: fitted on the rest
    model = fit_from_latents(ws, {"good": good, "flat": np.full(100, 2.5), "nan": mostly_nan, "some": some_nan},
                             {n: {} for n in ("good", "flat", "nan", "some")})
    assert model.names == ["good", "some"]
    assert "constant" in model.dropped["flat"] and "undefined" in model.dropped["nan"]
    assert model.fit_of("some").score > 0.99 and model.fit_of("some").num_fit + model.fit_of("some").num_holdout == 96
    with pytest.raises(InvalidInputError, match="dropped when fitting"):
        model.fit_of("flat")
    with pytest.raises(InvalidInputError, match="no descriptor could be fitted"):
        fit_from_latents(ws, {"flat": np.zeros(100)})


@pytest.mark.parametrize("kwargs, message", [
    ({"values": {"x": np.zeros(7)}}, "shape"),
    ({"holdout": 1.0}, "holdout"),
    ({"latent": "z"}, "latent"),
    ({"descriptors_or_meta": {"other": {}}}, "no descriptor metadata"),
])
def test_fit_from_latents_rejects_bad_input(kwargs, message):
    ws = torch.randn(50, 2, 4)
    args = {"values": {"x": ws[:, 0, 0].numpy()}, **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        fit_from_latents(ws, **args)
    with pytest.raises(InvalidInputError, match="at least"):
        fit_from_latents(ws[:5], {"x": np.arange(5.0)})


def test_fit_on_a_tiny_generator_end_to_end(tmp_path):
    G = tiny_generator()
    model = fit_descriptor_model(G, default_descriptors(channels=1), num_samples=80, batch=40, seed=2)
    assert set(model.names) | set(model.dropped) == set(default_descriptors(channels=1).names())
    assert model.num_ws == G.num_ws and model.w_dim == G.w_dim and len(model.fits) >= 5
    assert model.fits_generator(G) and not model.fits_generator(tiny_generator(seed=1))
    assert model.metadata["style_mixing"] == 0.5 and model.metadata["num_samples"] == 80
    with torch.no_grad():
        ws = G.mapping(torch.randn(3, G.z_dim), None)
    values = model.predict(ws)
    assert values.shape == (3, len(model)) and torch.isfinite(values).all()
    assert len(model.rank(ws, ws.flip(0), include_unreliable=True)[0]) == len(model)
    again = load_descriptor_model(model.save(tmp_path / "d.pt"))
    assert again.generator_fingerprint == generator_fingerprint(G)


def test_shift_jitter_shows_the_predictors_moved_objects():
    """Half the samples translated by N(0, 3 px): centroid_x spreads, ink area does not."""
    from cfattack.bundle.loader import load_bundle

    G = load_bundle("default").generator
    chosen = default_descriptors(channels=1).select(["centroid_x", "centroid_y", "ink_area"])
    kw = dict(num_samples=60, batch=60, seed=0)
    plain = fit_descriptor_model(G, chosen, **kw)
    moved = fit_descriptor_model(G, chosen, shift_jitter=3.0, **kw)
    assert moved.metadata["shift_jitter"] == 3.0 and plain.metadata["shift_jitter"] == 0.0
    for name in ("centroid_x", "centroid_y"):
        assert moved.fit_of(name).std > 1.3 * plain.fit_of(name).std  # 1.5x with these 60 samples
    assert moved.fit_of("ink_area").std == pytest.approx(plain.fit_of("ink_area").std, rel=0.1)
    with pytest.raises(InvalidInputError, match="shift_jitter must be"):
        fit_descriptor_model(G, chosen, shift_jitter=-1.0, **kw)
    with pytest.raises(InvalidInputError, match="needs latent 'w\\+'"):
        fit_descriptor_model(G, chosen, shift_jitter=1.0, latent="w", **kw)


def test_cli_train_descriptors_then_bundle_create(tmp_path):
    from cfattack.bundle.loader import load_bundle
    from cfattack.classifiers import build_classifier
    from cfattack.classifiers.checkpoint import save_classifier_checkpoint
    from cfattack.stylegan.checkpoint import save_generator_checkpoint
    from cfattack.training.data import FASHION_MNIST_CLASSES

    save_generator_checkpoint(tiny_generator(resolution=32), tmp_path / "G.pt")
    save_generator_checkpoint(tiny_generator(resolution=32, seed=1), tmp_path / "G_other.pt")
    save_classifier_checkpoint(build_classifier(10, width=8, embedding_dim=16).eval(), tmp_path / "C.pt",
                               metadata={"class_names": list(FASHION_MNIST_CLASSES)})
    fit = run_cli("train", "descriptors", "--generator", tmp_path / "G.pt", "--out", tmp_path / "d.pt", "--num", "60",
                  "--batch", "30", "--descriptors", "ink_area,mean_intensity,width", "--quiet", "--threads", "1")
    assert fit.exit_code == 0, fit.output + fit.stderr
    assert "3 predictors" in fit.output and "ink_area" in fit.output and "held-out r2" in fit.output
    assert load_descriptor_model(tmp_path / "d.pt").names == ["ink_area", "mean_intensity", "width"]

    create = ["bundle", "create", tmp_path / "bundle", "--generator", tmp_path / "G.pt", "--classifier",
              f"baseline={tmp_path / 'C.pt'}", "--data", "fashion-mnist", "--name", "tiny"]
    made = run_cli(*create, "--descriptor-model", tmp_path / "d.pt")
    assert made.exit_code == 0, made.output + made.stderr
    assert "descriptor model yes" in made.output
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.spec.descriptor_model == "descriptors.pt"
    assert load_descriptor_model(bundle.descriptor_model_path).fits_generator(bundle.generator)

    refit = run_cli("train", "descriptors", "--bundle", tmp_path / "bundle", "--out", tmp_path / "d2.pt", "--num",
                    "40", "--descriptors", "ink_area", "--quiet", "--threads", "1")
    assert refit.exit_code == 0, refit.output + refit.stderr
    assert load_descriptor_model(tmp_path / "d2.pt").latent == bundle.spec.latent_space

    assert_one_line_failure(run_cli(*create[:4], tmp_path / "G_other.pt", *create[5:], "--descriptor-model",
                                    tmp_path / "d.pt"), "different generator")
    assert_one_line_failure(run_cli(*create, "--descriptor-model", tmp_path / "C.pt"), "not a cfattack descriptor")
    assert_one_line_failure(run_cli("train", "descriptors", "--out", tmp_path / "x.pt"), "exactly one of")
    assert_one_line_failure(run_cli("train", "descriptors", "--generator", tmp_path / "G.pt", "--out",
                                    tmp_path / "x.pt", "--descriptors", "nope"), "unknown descriptor")


def test_mlp_predictor_learns_what_ridge_cannot(tmp_path):
    """A squared latent coordinate: ridge explains nothing of it, the shared MLP most of it."""
    gen = torch.Generator().manual_seed(3)
    ws = torch.randn(1500, 2, 4, generator=gen)
    values = {
        "square": (ws[:, 0, 0] ** 2).double().numpy(),
        "linear": (2 * ws[:, 1, 2]).double().numpy(),
        "label": (ws[:, 0, 1] > 0).double().numpy(),
    }
    ridge = fit_from_latents(ws, values, predictor="ridge", seed=0)
    mlp = fit_from_latents(ws, values, predictor="mlp", seed=0, mlp_hidden=32, mlp_epochs=40)
    assert ridge.fit_of("square").score < 0.1 and not ridge.fit_of("square").reliable
    assert mlp.fit_of("square").kind == "mlp" and mlp.fit_of("square").score > 0.8
    assert mlp.fit_of("linear").score > 0.95
    assert mlp.fit_of("label").kind == "logistic"  # 0/1 columns keep logistic regression
    # Predictions are in the descriptor's units, differentiable, and survive a save/load.
    x = ws[:4].clone().requires_grad_(True)
    mlp.predict(x)[:, mlp.names.index("square")].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    path = mlp.save(tmp_path / "mlp.pt")
    again = load_descriptor_model(path)
    assert torch.equal(again.predict(ws[:50]), mlp.predict(ws[:50]))
    truth = torch.from_numpy(values["square"][:200]).float()
    assert float((mlp.predict(ws[:200])[:, mlp.names.index("square")] - truth).abs().median()) < 0.5
