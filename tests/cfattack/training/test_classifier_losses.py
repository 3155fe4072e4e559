"""Each training loss in a tiny run (a few steps on a small subset), its metrics, resume, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cfattack.classifiers import load_classifier_checkpoint, read_classifier_checkpoint
from cfattack.config import ClassifierTrainingConfig
from cfattack.training.classifier import train_classifier
from cfattack.training.data import FASHION_MNIST_DIR
from tests.cfattack.training.test_classifier_training import TINY, splits  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

# Loss settings that make every mechanism act inside a two-epoch run.
ACTIVE = dict(latent_boost_warmup_epochs=1, lcc_warmup_epochs=1, lcc_k=3, lcc_max_samples=120)
HEADS = {"ce": "offset_l2", "latent_boost": "linear", "lcc": "linear", "semantic": "linear"}


def _needs_hierarchy(loss: str, splits) -> None:
    if loss == "semantic" and splits["train"].name != "fashion-mnist":
        pytest.skip("the semantic loss needs Fashion-MNIST's class hierarchy (apt-get install dataset-fashion-mnist)")


@pytest.mark.parametrize("loss", ["ce", "latent_boost", "lcc", "semantic"])
def test_each_loss_trains_and_reports_the_new_metrics(tmp_path, splits, loss: str) -> None:  # noqa: F811
    _needs_hierarchy(loss, splits)
    config = ClassifierTrainingConfig(**{**TINY, **ACTIVE, "loss": loss, "head": HEADS[loss]})
    result = train_classifier(config, tmp_path, progress=False, datasets=splits)
    assert result.finished and result.step == 10
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    test = metrics["test"]
    for key in ("accuracy", "macro_f1", "silhouette", "davies_bouldin", "knn_purity", "dead_units", "mistake_severity"):
        assert key in test
    assert -1 <= test["silhouette"] <= 1 and test["davies_bouldin"] >= 0 and 0 <= test["knn_purity"] <= 1
    assert 0 <= test["dead_units"] <= 8
    if splits["train"].name == "fashion-mnist":
        assert 1 <= test["mistake_severity"] <= 3  # errors are at LCA height 1, 2 or 3
    first, second = metrics["history"]
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in metrics["history"])
    assert second["val_silhouette"] is not None
    if loss == "latent_boost":
        assert first["magnet_weight"] == 0.0 and second["magnet_weight"] == 0.5
        assert second["train_magnet"] > 0 and "train_ce" in second
    if loss == "lcc":
        assert first["lcc_active"] is False
        assert second["lcc_active"] is True and second["lcc_clustered_samples"] == 120
        assert 0 <= second["lcc_misclustered_share"] <= 1 and second["lcc_clusters"] >= 1
        assert "train_lcc" in second
    if loss == "semantic":
        assert second["train_semantic_kl"] > 0
    clf, meta = load_classifier_checkpoint(result.classifier_path)
    assert clf.factory_kwargs["head"] == HEADS[loss]
    assert meta["metrics"]["test_silhouette"] == test["silhouette"]
    assert meta["metrics"]["test_mistake_severity"] == test["mistake_severity"]


@pytest.mark.parametrize("loss", ["latent_boost", "lcc"])
def test_stateful_losses_resume_exactly(tmp_path, splits, loss: str) -> None:  # noqa: F811
    config = ClassifierTrainingConfig(**{**TINY, **ACTIVE, "loss": loss})
    unbroken = train_classifier(config, tmp_path / "a", progress=False, datasets=splits)
    # Stop in the middle of epoch 2, after LCC's reclustering and the schedules' step.
    paused = train_classifier(config, tmp_path / "b", progress=False, max_steps=7, datasets=splits)
    assert not paused.finished and paused.step == 7
    resumed = train_classifier(config, tmp_path / "b", progress=False, datasets=splits)
    a, b = read_classifier_checkpoint(unbroken.classifier_path), read_classifier_checkpoint(resumed.classifier_path)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    history = [json.loads((tmp_path / run / "metrics.json").read_text())["history"] for run in ("a", "b")]
    for h in history:  # wall-clock figures differ between runs
        for record in h:
            record.pop("lcc_seconds", None)
    assert history[0] == history[1]


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_cli_trains_every_loss_with_the_offset_l2_head(tmp_path) -> None:
    from cfattack.cli.root import cli

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"batch": 32, "width": 4, "embedding_dim": 8, "warmup_steps": 0, **ACTIVE}))
    for loss in ("latent_boost", "lcc", "semantic"):
        out = tmp_path / loss
        result = CliRunner().invoke(cli, [
            "train", "classifier", "--out", str(out), "--config", str(cfg), "--loss", loss, "--head", "offset_l2",
            "--epochs", "2", "--max-train-images", "160", "--max-eval-images", "64", "--quiet", "--threads", "1",
        ], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "finished after epoch 2" in result.output and "silhouette" in result.output
        assert "mistake_severity" in result.output
        config = json.loads((out / "config.json").read_text())
        assert config["loss"] == loss and config["head"] == "offset_l2" and config["max_train_images"] == 160


@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_mlp_backbone_trains_with_the_offset_l2_head(tmp_path, splits, activation: str) -> None:  # noqa: F811
    config = ClassifierTrainingConfig(**{**TINY, "backbone": "mlp", "activation": activation, "head": "offset_l2",
                                         "embedding_dim": 16})
    result = train_classifier(config, tmp_path, progress=False, datasets=splits)
    clf, _ = load_classifier_checkpoint(result.classifier_path)
    assert clf.factory_kwargs["backbone"] == "mlp" and clf.factory_kwargs["activation"] == activation
    first, second = result.metrics["history"]
    assert second["train_loss"] < first["train_loss"]  # it learns
    with pytest.raises(ValueError, match="needs backbone 'mlp'"):
        ClassifierTrainingConfig(activation="abs")
