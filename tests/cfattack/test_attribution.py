"""Latent descriptor predictors: known answers on synthetic latents, the file format, rankings, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cfattack.attribution import (
    DESCRIPTOR_MODEL_FORMAT,
    DescriptorChange,
    LatentDescriptorModel,
    PredictorFit,
    fit_descriptor_model,
    fit_from_latents,
    generator_fingerprint,
    load_descriptor_model,
    measured_changes,
)
from cfattack.errors import InvalidInputError, NetworkLoadError
from cfattack.generator import Generator
from descriptors import LabelledAttributes, default_descriptors
from tests.cfattack.test_cli import assert_one_line_failure, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

META = {"linear": {"unit": "px", "meaning": "a known linear map of ws", "higher_means": "more"},
        "noise": {"unit": "px", "meaning": "noise independent of ws"},
        "label": {"unit": "0/1", "meaning": "sign of a linear map", "kind": "binary"}}


def tiny_generator(resolution: int = 16, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=resolution, img_channels=1, channel_base=128,
                  channel_max=8, num_layers=3, num_critical=1, margin_size=2).eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(500, 8), None)[:, 0].mean(0))
    return G


@pytest.fixture(scope="module")
def synthetic():
    """ws [600, 2, 8] with a linear target, a noise target and a binary label; the fitted model."""
    rng = torch.Generator().manual_seed(0)
    ws = torch.randn(600, 2, 8, generator=rng) * 0.7 + 0.3
    a = torch.randn(16, generator=rng, dtype=torch.float64)
    flat = ws.reshape(600, 16).double()
    values = {"linear": (flat @ a + 3.0).numpy(),
              "noise": torch.randn(600, generator=rng, dtype=torch.float64).numpy(),
              "label": (flat @ a.flip(0) > 0.5).double().numpy()}
    model = fit_from_latents(ws, values, META, seed=1)
    return ws, values, a, model


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


def test_save_load_round_trip_is_exact(synthetic, tmp_path):
    ws, _, _, model = synthetic
    path = model.save(tmp_path / "sub" / "descriptors.pt")
    loaded = load_descriptor_model(path)
    assert torch.equal(loaded.predict(ws), model.predict(ws))
    assert loaded.fits == model.fits and loaded.names == model.names and loaded.dropped == model.dropped
    assert (loaded.latent, loaded.num_ws, loaded.w_dim) == ("w+", 2, 8)
    assert loaded.metadata == model.metadata and json.dumps(loaded.metadata)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == DESCRIPTOR_MODEL_FORMAT and raw["weight"].dtype == torch.float32
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["descriptors.pt"]   # no temporary files left


def test_bad_files_raise_network_load_error(synthetic, tmp_path):
    _, _, _, model = synthetic
    good = model.save(tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file at all")
    torch.save({"format": "cfattack.encoder/1"}, tmp_path / "encoder.pt")
    payload = torch.load(good, weights_only=True)
    torch.save({**payload, "weight": payload["weight"][:3]}, tmp_path / "shape.pt")
    torch.save({**payload, "fits": [{"name": "x"}] * len(payload["fits"])}, tmp_path / "fits.pt")
    torch.save({k: v for k, v in payload.items() if k != "bias"}, tmp_path / "nobias.pt")
    cases = {"missing.pt": "no such", "truncated.pt": "not a readable", "garbage.pt": "not a readable",
             "encoder.pt": "not a cfattack descriptor model", "shape.pt": "do not fit together",
             "fits.pt": "bad predictor record", "nobias.pt": "lacks bias"}
    for name, message in cases.items():
        with pytest.raises(NetworkLoadError, match=message) as info:
            load_descriptor_model(tmp_path / name)
        assert "\n" not in str(info.value)


def _hand_model() -> LatentDescriptorModel:
    """Three ridge predictors of ws [N, 1, 3] reading one coordinate each, with stds 1, 10, 0.5."""
    def fit(name: str, std: float, reliable: bool = True) -> PredictorFit:
        return PredictorFit(name=name, unit="u", meaning=name, kind="ridge", score=0.9 if reliable else 0.1,
                            score_name="r2", skill=0.9 if reliable else 0.1, train_score=0.9, reliable=reliable,
                            mean=0.0, std=std, penalty=0.0, num_fit=10, num_holdout=5)

    return LatentDescriptorModel([fit("a", 1.0), fit("b", 10.0), fit("c", 0.5, reliable=False)],
                                 weight=torch.eye(3), bias=torch.zeros(3), x_mean=torch.zeros(3),
                                 x_scale=torch.ones(3), latent="w+", num_ws=1, w_dim=3)


def test_rank_orders_by_standardised_change_with_signs():
    model = _hand_model()
    ws0 = torch.zeros(2, 1, 3)
    ws_cf = torch.tensor([[[1.0, -20.0, 0.1]], [[-0.5, 2.0, 3.0]]])
    first, second = model.rank(ws0, ws_cf)
    assert [r.name for r in first] == ["b", "a"] and [r.name for r in second] == ["a", "b"]
    b = first[0]
    assert isinstance(b, DescriptorChange) and b.source == "predicted" and b.reliable and b.score == 0.9
    assert (b.before, b.after, b.change, b.standardized_change) == (0.0, -20.0, -20.0, -2.0)
    assert second[0].standardized_change == -0.5 and second[1].standardized_change == pytest.approx(0.2)
    everything = model.rank(ws0, ws_cf, include_unreliable=True)[1]
    assert [r.name for r in everything] == ["c", "a", "b"] and not everything[0].reliable
    assert everything[0].standardized_change == pytest.approx(6.0)
    with pytest.raises(InvalidInputError, match="same shape"):
        model.rank(ws0, ws_cf[:1])
    with pytest.raises(InvalidInputError, match=r"\[N, 1, 3\]"):
        model.predict(torch.zeros(2, 2, 3))


def test_predict_is_differentiable_and_w_models_average_layers():
    model = _hand_model()
    ws = torch.randn(4, 1, 3, requires_grad=True)
    (model.predict(ws) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(ws.grad, torch.tensor([1.0, 2.0, 3.0]).expand(4, 1, 3))

    ws = torch.randn(300, 4, 3, generator=torch.Generator().manual_seed(0))
    mean_first = ws.mean(1)[:, 0].numpy()
    w_model = fit_from_latents(ws, {"m": mean_first}, {"m": {}}, latent="w")
    assert w_model.fit_of("m").score > 0.999 and w_model.x_mean.shape == (3,)
    assert torch.allclose(w_model.predict(ws), w_model.predict(ws.mean(1)), atol=1e-6)   # [N, w_dim] accepted
    assert torch.allclose(w_model.predict(ws.double())[:, 0], ws.mean(1)[:, 0].double(), atol=1e-3)


def test_measured_changes_on_two_squares():
    small, large = -torch.ones(1, 1, 16, 16), -torch.ones(1, 1, 16, 16)
    small[..., 6:8, 6:8] = 1.0                                       # 4 px of ink
    large[..., 4:10, 4:10] = 1.0                                     # 36 px
    ds = default_descriptors(channels=1)
    (rows,) = measured_changes(ds, small, large, std={"ink_area": 0.1})
    by_name = {r.name: r for r in rows}
    ink = by_name["ink_area"]
    assert (ink.before, ink.after) == pytest.approx((4 / 256, 36 / 256))
    assert ink.change == pytest.approx(32 / 256) and ink.standardized_change == pytest.approx(32 / 256 / 0.1)
    assert ink.source == "measured" and ink.score is None and ink.reliable
    assert by_name["width"].change == 4.0 and by_name["mean_intensity"].change == pytest.approx(32 / 256)
    assert [abs(r.standardized_change) for r in rows] == sorted((abs(r.standardized_change) for r in rows),
                                                                reverse=True)
    (back,) = measured_changes(ds, large, small)
    assert {r.name: r.change for r in back}["ink_area"] == pytest.approx(-32 / 256)
    with pytest.raises(InvalidInputError, match="same shape"):
        measured_changes(ds, small, large[..., :8, :8])
    with pytest.raises(InvalidInputError, match="positive"):
        measured_changes(ds, small, large, std={"ink_area": 0.0})


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
    from cfattack.bundle import load_bundle

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


@pytest.mark.cuda
def test_predict_on_cuda(synthetic, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    ws, _, _, model = synthetic
    gpu = load_descriptor_model(model.save(tmp_path / "d.pt"), device="cuda")
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.predict(ws.cuda()).cpu(), model.predict(ws), atol=1e-5)
    rows = gpu.rank(ws[:2].cuda(), ws[2:4].cuda())
    assert [len(r) for r in rows] == [len(r) for r in model.rank(ws[:2], ws[2:4])]


def test_shipped_default_model_fits_the_default_generator():
    from cfattack.bundle import load_bundle

    bundle = load_bundle("default")
    assert bundle.descriptor_model_path is not None, "bundle.json names no descriptor_model"
    model = load_descriptor_model(bundle.descriptor_model_path)
    assert model.fits_generator(bundle.generator), (
        "descriptors.pt was fitted on another generator: refit with `cfattack train descriptors --bundle default "
        "--out cfattack/assets/default/descriptors.pt --threads 1`")
    assert {"ink_area", "mean_intensity"} <= set(model.reliable_names)
    assert model.fit_of("ink_area").score >= 0.5 and model.fit_of("mean_intensity").score >= 0.5
    assert model.latent == bundle.spec.latent_space and bundle.descriptor_model_path.stat().st_size < 2_000_000


def test_cli_train_descriptors_then_bundle_create(tmp_path):
    from cfattack.bundle import load_bundle
    from cfattack.classifiers import build_classifier
    from cfattack.classifiers.checkpoint import save_classifier_checkpoint
    from cfattack.legacy import save_generator_checkpoint
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
