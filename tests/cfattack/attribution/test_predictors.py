"""LatentDescriptorModel: prediction, rankings, the cfattack.descriptors/1 file format, the shipped model."""

from __future__ import annotations

import json

import pytest
import torch

from cfattack.attribution.changes import DescriptorChange
from cfattack.attribution.fitting import fit_from_latents
from cfattack.attribution.predictors import (
    DESCRIPTOR_MODEL_FORMAT,
    LatentDescriptorModel,
    PredictorFit,
    load_descriptor_model,
)
from cfattack.errors import InvalidInputError, NetworkLoadError

pytestmark = pytest.mark.usefixtures("one_thread")


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
    from cfattack.bundle.loader import load_bundle

    bundle = load_bundle("default")
    assert bundle.descriptor_model_path is not None, "bundle.json names no descriptor_model"
    model = load_descriptor_model(bundle.descriptor_model_path)
    assert model.fits_generator(bundle.generator), (
        "descriptors.pt was fitted on another generator: refit with `cfattack train descriptors --bundle default "
        "--out cfattack/assets/default/descriptors.pt --threads 1`")
    assert {"ink_area", "mean_intensity"} <= set(model.reliable_names)
    assert model.fit_of("ink_area").score >= 0.5 and model.fit_of("mean_intensity").score >= 0.5
    assert model.latent == bundle.spec.latent_space and bundle.descriptor_model_path.stat().st_size < 2_000_000
