"""Every pydantic config of cfattack: frozen, no unknown keys, each field described.

A run writes its config as JSON next to its outputs, so any result can be traced back to
the exact settings that produced it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FrozenConfig", "FiniteConfig", "SEED_MAX", "DEVICE_PATTERN", "GeneratorLayout", "GanTrainingConfig",
           "EncoderTrainingConfig"]

SEED_MAX = 2**32 - 1
"""Largest seed: numpy's RandomState takes seeds in [0, 2**32 - 1], torch takes those too."""

DEVICE_PATTERN = r"^(cpu|cuda|mps)(:[0-9]{1,3})?$"
"""The torch devices a training config may name (whether one exists is checked when it is used)."""


class FrozenConfig(BaseModel):
    """Base: immutable, rejects unknown fields, validates defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class FiniteConfig(FrozenConfig):
    """Base of settings: a `FrozenConfig` that also refuses NaN and infinity in every float field.

    A bad value raises ``pydantic.ValidationError`` (a ``ValueError``) naming the field, e.g.
    ``AttackConfig(lr=float("nan"))`` -> "lr: Input should be a finite number".
    """

    model_config = ConfigDict(allow_inf_nan=False)


class GeneratorLayout(FiniteConfig):
    """Constructor arguments of a StyleGAN3 `Generator` (config T unless conv_kernel=1 + radial)."""

    z_dim: int = Field(64, ge=1, le=4096, description="Input latent (z) dimensionality.")
    w_dim: int = Field(64, ge=1, le=4096, description="Intermediate latent (w) dimensionality.")
    mapping_layers: int = Field(2, ge=1, le=64, description="Number of dense layers in the mapping network.")
    channel_base: int = Field(2048, ge=1, le=1 << 20, description="Overall multiplier for the number of channels.")
    channel_max: int = Field(64, ge=1, le=4096, description="Maximum number of channels in any layer.")
    num_layers: int = Field(6, ge=2, le=64, description="Synthesis layers, excluding the Fourier input and ToRGB.")
    num_critical: int = Field(2, ge=1, description="Critically sampled layers at the end.")
    margin_size: int = Field(4, ge=0, le=256, description="Extra pixels computed outside the image.")
    filter_size: int = Field(4, ge=1, le=64, description="Low-pass filter taps per (up/down)sampling factor.")
    lrelu_upsampling: int = Field(1, ge=1, le=8, description="Relative sampling rate of the leaky ReLU (2 in the paper).")
    conv_kernel: int = Field(3, ge=1, le=15, description="Convolution kernel size (1 for config R).")
    use_radial_filters: bool = Field(False, description="Radially symmetric downsampling filters (config R).")
    magnitude_ema_beta: float | None = Field(
        None, gt=0, lt=1, description="Decay of the input-magnitude EMA; None = 0.5 ** (batch / 20000)."
    )

    @model_validator(mode="after")
    def _critical_below_layers(self) -> "GeneratorLayout":
        if self.num_critical >= self.num_layers:
            raise ValueError("num_critical must be smaller than num_layers")
        return self

    def generator_kwargs(self, c_dim: int, img_resolution: int, img_channels: int, batch: int) -> dict[str, Any]:
        """Keyword arguments for ``Generator(**kwargs)``."""
        beta = self.magnitude_ema_beta if self.magnitude_ema_beta is not None else 0.5 ** (batch / 20000)
        return dict(
            z_dim=self.z_dim, c_dim=c_dim, w_dim=self.w_dim, img_resolution=img_resolution,
            img_channels=img_channels, mapping_kwargs={"num_layers": self.mapping_layers},
            channel_base=self.channel_base, channel_max=self.channel_max, num_layers=self.num_layers,
            num_critical=self.num_critical, margin_size=self.margin_size, filter_size=self.filter_size,
            lrelu_upsampling=self.lrelu_upsampling, conv_kernel=self.conv_kernel,
            use_radial_filters=self.use_radial_filters, magnitude_ema_beta=beta,
        )


class GanTrainingConfig(FiniteConfig):
    """Settings of `cfattack train gan` (StyleGAN3 generator vs residual discriminator)."""

    data: str = Field("fashion-mnist", description="fashion-mnist, mnist-5k, or an image folder root/<class>/*.png.")
    resolution: int = Field(32, ge=8, le=4096, description="Training resolution (images are resized/padded to it).")
    channels: int = Field(1, ge=1, le=3, description="Image channels (1 grey, 3 RGB).")
    conditional: bool = Field(False, description="Condition G and D on the class label.")
    generator: GeneratorLayout = Field(default_factory=GeneratorLayout, description="Generator layout.")
    d_channel_base: int = Field(2048, ge=1, le=1 << 20, description="Discriminator channel multiplier.")
    d_channel_max: int = Field(64, ge=1, le=4096, description="Discriminator maximum channels.")
    batch: int = Field(32, ge=2, le=65536, description="Images per step.")
    g_lr: float = Field(0.0025, gt=0, le=10, description="Generator Adam learning rate.")
    d_lr: float = Field(0.002, gt=0, le=10, description="Discriminator Adam learning rate.")
    r1_gamma: float = Field(0.05, ge=0, le=1e6, description="R1 penalty weight on real images.")
    r1_interval: int = Field(16, ge=1, le=1_000_000, description="Lazy regularisation: apply R1 every this many steps (scaled up).")
    ema_kimg: float = Field(10.0, ge=0, description="Half-life of the generator EMA, in thousands of images.")
    ema_rampup: float | None = Field(0.05, ge=0, description="EMA half-life ramp-up (fraction of images seen), None = off.")
    augment_translate: float = Field(0.125, ge=0, le=0.5, description="Max random translation (fraction of size) applied to D's inputs.")
    total_kimg: float = Field(200.0, gt=0, le=1e7, description="Stop after this many thousand real images.")
    snapshot_kimg: float = Field(4.0, gt=0, le=1e7, description="Write a checkpoint and a sample grid every this many kimg.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of every random draw (init, data order, z, augmentation).")
    threads: int | None = Field(None, ge=1, le=4096, description="torch CPU threads (None = torch's default).")
    device: str = Field("cpu", pattern=DEVICE_PATTERN, description="torch device for training.")
    init_from: str | None = Field(
        None,
        description="Warm start: a `train gan` checkpoint (file or folder) whose G, G_ema and D weights "
                    "start this run; an unconditional source may start a conditional run.",
    )


class ClassifierTrainingConfig(FiniteConfig):
    """Settings of `cfattack train classifier` (backbone + head trained on a labelled dataset)."""

    data: str = Field("fashion-mnist", description="fashion-mnist, mnist-5k, or an image folder root/<class>/*.png.")
    loss: str = Field(
        "ce", min_length=1,
        description="Training loss by name (cfattack.classifiers.losses.LOSSES): ce, latent_boost, lcc, semantic.",
    )
    head: Literal["linear", "offset_l2"] = Field("linear", description="Classification head on the embedding.")
    backbone: Literal["cnn", "mlp"] = Field(
        "cnn", description="cnn (three conv stages) or mlp (one hidden layer = the embedding, as in Oursland 2025)."
    )
    activation: Literal["relu", "abs"] = Field("relu", description="Hidden activation of the mlp backbone (the cnn uses relu).")
    embedding_dim: int = Field(128, ge=2, le=65536, description="Size of the classifier's explicit embedding.")
    width: int = Field(32, ge=1, le=4096, description="Channels of the first conv stage (then 2x and 4x).")
    dropout: float = Field(0.3, ge=0, lt=1, description="Dropout before the embedding projection.")
    epochs: int = Field(15, ge=1, le=100_000, description="Passes over the training split.")
    batch: int = Field(128, ge=2, le=65536, description="Images per step (the last, smaller batch of an epoch is dropped).")
    optimizer: Literal["adamw", "adam"] = Field("adamw", description="AdamW (decoupled weight decay) or Adam (L2 penalty).")
    lr: float = Field(2e-3, gt=0, le=10, description="Peak learning rate.")
    weight_decay: float = Field(0.05, ge=0, description="Weight decay (decoupled for adamw, L2 for adam).")
    schedule: Literal["cosine", "step", "constant"] = Field("cosine", description="Learning-rate schedule after warm-up.")
    warmup_steps: int = Field(200, ge=0, description="Steps of linear learning-rate warm-up from zero.")
    step_epochs: int = Field(5, ge=1, description="Step schedule: multiply the rate by step_gamma every this many epochs.")
    step_gamma: float = Field(0.1, gt=0, le=1, description="Step schedule: the decay factor.")
    translate_px: int = Field(2, ge=0, le=8, description="Random translation of training images by up to this many pixels (no flips).")
    max_train_images: int | None = Field(None, ge=2, description="Use only the first N training images (smoke tests).")
    max_eval_images: int | None = Field(None, ge=1, description="Use only the first N val and test images (smoke tests).")
    eval_batch: int = Field(500, ge=1, le=65536, description="Images per forward pass when evaluating.")
    save_float16: bool = Field(True, description="Store the final classifier's weights as float16 (test scores use them as stored).")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of every random draw (init, data order, augmentation, dropout).")
    threads: int | None = Field(None, ge=1, le=4096, description="torch CPU threads (None = torch's default).")
    device: str = Field("cpu", pattern=DEVICE_PATTERN, description="torch device for training.")
    # Latent-structuring losses (cfattack.classifiers.losses); each reads only its own fields.
    ce_weight: float = Field(1.0, ge=0, description="Weight of cross-entropy in latent_boost, lcc and semantic.")
    latent_boost_weight: float = Field(
        0.5, ge=0, description="latent_boost: final weight of the Magnet term (reached after its warm-up)."
    )
    latent_boost_warmup_epochs: int = Field(
        1, ge=0, description="latent_boost: epochs over which the Magnet weight rises linearly from 0."
    )
    latent_boost_alpha_start: float = Field(0.0, ge=0, description="latent_boost: Magnet margin alpha at epoch 0.")
    latent_boost_alpha_end: float = Field(
        1.0, ge=0, description="latent_boost: Magnet margin alpha at the last epoch (linear in between)."
    )
    latent_boost_pca_dim: int | None = Field(
        None, ge=1, description="latent_boost: measure the term in the batch's top principal directions (None = full embedding)."
    )
    lcc_weight: float = Field(1.0, ge=0, description="lcc: weight of the cluster-correction term.")
    lcc_warmup_epochs: int = Field(3, ge=0, description="lcc: epochs of plain CE before the first reclustering.")
    lcc_k: int = Field(5, ge=1, description="lcc: neighbours of the kNN graph and of the target means.")
    lcc_resolution: float = Field(1.0, gt=0, description="lcc: Louvain resolution.")
    lcc_max_samples: int | None = Field(
        20000, ge=10, description="lcc: recluster a random subset of this many training images per epoch (None = all)."
    )
    semantic_weight: float = Field(1.0, ge=0, description="semantic: weight of KL(soft target || prediction).")
    semantic_temperature: float = Field(
        0.5, gt=0, description="semantic: soft target of class y is softmax(-hierarchy distance / temperature)."
    )

    @model_validator(mode="after")
    def _activation_needs_mlp(self) -> "ClassifierTrainingConfig":
        if self.backbone == "cnn" and self.activation != "relu":
            raise ValueError(f"activation {self.activation!r} needs backbone 'mlp' (the cnn uses relu)")
        return self


__all__ += ["ClassifierTrainingConfig"]


class EncoderTrainingConfig(FiniteConfig):
    """Settings of `cfattack train encoder` (image -> ws for a fixed, trained generator)."""

    generator: str = Field(..., description="Generator file (cfattack checkpoint or official pickle).")
    data: str = Field("fashion-mnist", description="Real images: training (pixel loss) and evaluation.")
    latent: Literal["w", "w+"] = Field("w+", description="Predict one w (W) or one per layer (W+).")
    channels: int = Field(32, ge=4, le=4096, description="Encoder width at full resolution (doubles per halving).")
    channel_max: int = Field(128, ge=4, le=4096, description="Encoder maximum width.")
    batch: int = Field(32, ge=2, le=65536, description="Images per step (synthetic + real).")
    lr: float = Field(1e-3, gt=0, le=10, description="Adam learning rate (cosine-decayed to 5% over the run).")
    real_fraction: float = Field(0.5, ge=0, le=1, description="Share of each batch taken from real training images.")
    latent_weight: float = Field(1.0, ge=0, description="Weight of the latent loss on synthetic pairs (ws known).")
    pixel_weight: float = Field(1.0, ge=0, description="Weight of the pixel MSE between G(E(x)) and x.")
    feature_classifier: str | None = Field(
        None, description="Optional classifier file; its embedding of G(E(x)) is pulled toward that of x."
    )
    feature_weight: float = Field(0.1, ge=0, description="Weight of the classifier-embedding loss.")
    psi_min: float = Field(0.7, gt=0, le=1, description="Synthetic ws use truncation psi drawn from [psi_min, 1].")
    style_mixing_prob: float = Field(0.5, ge=0, le=1, description="Chance a synthetic ws mixes two latents (W+ coverage).")
    total_kimg: float = Field(100.0, gt=0, le=1e7, description="Stop after this many thousand images.")
    snapshot_kimg: float = Field(4.0, gt=0, le=1e7, description="Checkpoint and evaluate every this many kimg.")
    eval_images: int = Field(200, ge=1, le=1_000_000, description="Real validation images for PSNR/SSIM at each snapshot.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of every random draw.")
    threads: int | None = Field(None, ge=1, le=4096, description="torch CPU threads (None = torch's default).")
    device: str = Field("cpu", pattern=DEVICE_PATTERN, description="torch device.")


class AttackConfig(FiniteConfig):
    """Settings of the counterfactual attack (`cfattack.attack.latent_attack.LatentAttack`).

    The loop is Goldwasser & Hooker's (Adam, lr 0.01, at most 500 steps, stop each item at the
    first iterate past a threshold). Six defaults differ from the paper, each measured by
    ``cfattack evaluate`` (docs/benchmarks.md): the margin objective (well conditioned where
    p(target) is tiny), a stop confidence of 0.9 (the paper uses 0.75 when moving up; 0.5 leaves
    counterfactuals that other classifiers still call the source), judged on the image as
    saved in 8 bits, the objective averaged over 1-px shifted views, a whole-object shift tried
    first, and then a step along the generator's own class direction (the change that makes
    other classifiers agree and keeps the image realistic). ``AttackConfig(objective=
    "probability", threshold=0.5, robust_shift_px=0, shift_search_px=0, class_search_steps=0,
    stop_on_saved=False)`` is the paper's setting (``cfattack evaluate``'s method ``paper``).
    """

    steps: int = Field(500, ge=1, le=100_000, description="Most update steps per item (iterates 0..steps are scored).")
    lr: float = Field(
        0.01, gt=0, le=10, description="Step size of the update rule (at most 10)."
    )
    threshold: float = Field(
        0.9, gt=0, lt=1, description="An item stops at the first iterate whose target probability exceeds this."
    )
    optimizer: Literal["adam", "sgd", "normalized"] = Field(
        "adam", description="Update rule: Adam (the paper), plain gradient, or gradient scaled to length lr."
    )
    objective: Literal["probability", "log_probability", "margin"] = Field(
        "margin",
        description="Quantity raised: target probability (the paper), its log, or target logit minus the largest other.",
    )
    space: Literal["w", "w+", "pixel"] = Field(
        "w+",
        description=(
            "What moves: one w per item shared by all ws entries (the paper's W), every ws entry (W+), "
            "or the image pixels (the baseline that yields adversarial noise)."
        ),
    )
    proximity_weight: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Weight of the penalty mean((ws - ws0)^2) added to the loss."
    )
    layers: tuple[int, ...] | None = Field(
        None,
        description=(
            "W+ only: the ws entries the attack may move, the rest stay at ws0 (None = all). In a "
            "StyleGAN3 generator entry 0 sets only the input's rotation and translation, so (0,) asks "
            "for a purely geometric counterfactual; low entries shape the object, high ones its detail."
        ),
    )
    shift_lr: float | None = Field(
        None,
        gt=0,
        le=10,
        description=(
            "W+ only: also move each item as a whole, this many pixels per step, at most 10 (by the same update "
            "rule, with its own state) along the two directions of ws entry 0 that translate the "
            "image (`cfattack.stylegan.translation`); None = off. A generator trained on centred objects "
            "translates little per unit of w, so without this the attack reshapes rather than moves."
        ),
    )
    shift_search_px: int = Field(
        8,
        ge=0,
        le=8,
        description=(
            "W+ only (ignored in other spaces): before the ascent, try moving each object as a whole by 0.5, 1, "
            "1.5, ... this many pixels along the axis and direction in which a 1-px move raises the objective "
            "most (then a quarter and an eighth of a pixel either side of the best try), and start from the "
            "smallest shift that already passes the stop criterion (`cfattack.attack.shift_search`); 0 = off."
        ),
    )
    class_search_steps: int = Field(
        8,
        ge=0,
        le=64,
        description=(
            "W+ and W (ignored in pixel space): before the ascent, try adding 1/k, 2/k, ... k/k of "
            "class_search_reach times the generator's class direction (target class mean w minus the "
            "source's, `cfattack.stylegan.class_means`) to every ws entry, and start from the first that "
            "passes the stop criterion, else from the one that raised the objective most "
            "(`cfattack.attack.class_search`); 0 = off. Needs a class-conditional generator or class means "
            "labelled by the classifier."
        ),
    )
    class_search_reach: float = Field(
        1.0, gt=0, le=4, description="The largest class step tried, in units of the whole class-mean difference."
    )
    class_mean_samples: int | None = Field(
        None,
        ge=8,
        le=65536,
        description=(
            "Generator samples the classifier labels to find each class's mean w, when the generator has no "
            "class input that matches the classifier (`cfattack.stylegan.class_means.labelled_class_means`); "
            "None = by resolution (1,024 up to 64 px, 256 up to 256 px, 128 above). Each is one forward pass, "
            "once per generator and classifier."
        ),
    )
    stop_on_saved: bool = Field(
        True,
        description=(
            "Judge the stop also on the image as an 8-bit PNG would store it, so the saved counterfactual still "
            "passes (changes smaller than a grey level otherwise vanish on saving). Decoders whose output is "
            "not an image [N, C, H, W] in [-1, 1] are judged as they are."
        ),
    )
    shared_change: bool = Field(
        False,
        description=(
            "W+ only: every ws entry moves by the same w vector, so the change is a W-space move applied to "
            "the W+ inversion (which keeps its fidelity); False = every entry moves on its own."
        ),
    )
    robust_shift_px: int = Field(
        1,
        ge=0,
        le=4,
        description=(
            "Score every iterate also on copies of its image shifted by 1..this many pixels left, right, up "
            "and down and average the objective over the views, so the ascent cannot rest on one pixel "
            "alignment (expectation over translations; 0 = off; decoders whose output is not an image "
            "[N, C, H, W] get no views). The stop is judged on the image itself unless robust_stop."
        ),
    )
    robust_stop: bool = Field(
        False,
        description=(
            "With robust_shift_px: an item stops only when every shifted view also passes the threshold. "
            "Stricter, but a classifier that decides by exact position can then never be satisfied."
        ),
    )
    num_frames: int = Field(8, ge=2, le=1000, description="Evenly spaced iterates kept along each path, start and end included.")
    record_images: bool = Field(True, description="Decode the frames into images (else only their latents are kept).")
    seed: int | None = Field(
        0, ge=0, le=SEED_MAX, description="Seeds torch's generator during the run (random noise in decode); None = leave it."
    )

    @model_validator(mode="after")
    def _w_plus_only_options(self) -> "AttackConfig":
        if self.layers is not None:
            if not self.layers:
                raise ValueError("layers must name at least one ws entry (or be None for all)")
            if min(self.layers) < 0 or len(set(self.layers)) != len(self.layers):
                raise ValueError(f"layers must be distinct non-negative ws indices, got {list(self.layers)}")
            if self.space != "w+":
                raise ValueError(f"layers picks W+ entries; it needs space 'w+', not {self.space!r}")
        if self.shift_lr is not None and self.space != "w+":
            raise ValueError(f"shift_lr moves ws entry 0 on its own; it needs space 'w+', not {self.space!r}")
        if self.shared_change and self.space != "w+":
            raise ValueError(f"shared_change adds one change to every W+ entry; it needs space 'w+', not {self.space!r}")
        if self.shared_change and (self.layers is not None or self.shift_lr is not None):
            raise ValueError("shared_change moves every ws entry alike; it cannot be combined with layers or shift_lr")
        return self


__all__ += ["AttackConfig"]


class InversionConfig(FiniteConfig):
    """Settings of `Inverter`: a start (encoder, search or average), then optimisation of ws.

    Without an encoder (``start="auto"``) the start is the best of ``search_starts`` random
    latents, refined first in W (``search_w_steps``) and then for ``steps`` in ``latent``; the
    ``None`` fields then take `cfattack.inversion.search.schedule_for_resolution`'s values.
    With an encoder nothing changes unless ``start="search"`` is asked for.
    """

    start: Literal["auto", "encoder", "search", "average"] = Field(
        "auto", description="Initial ws: the encoder's guess, the best of many random latents, or w_avg; "
                            "auto = encoder when there is one, else search.")
    steps: int | None = Field(
        None, ge=0, le=100_000,
        description="Refinement steps after the start (0 = the start only); None = by start: 60 after an encoder "
                    "start, 100 after a search or w_avg. 60 steps at lr 0.03 refine an encoder's guess as well as "
                    "100 at 0.02 (22.3 vs 22.5 dB PSNR on 60 held-out Fashion-MNIST images) in 60% of the time.")
    lr: float | None = Field(
        None, gt=0, le=10, description="Adam learning rate on ws; None = by start: 0.03 after an encoder, else 0.02.")
    latent: Literal["w", "w+"] = Field("w+", description="Refine one w shared by all layers (W) or each entry (W+).")
    pixel_weight: float = Field(1.0, ge=0, description="Weight of the pixel mean squared error.")
    structure_weight: float = Field(0.1, ge=0, description="Weight of the structural term 1 - SSIM.")
    proximity_weight: float = Field(
        0.0, ge=0, description="Weight of mean((ws - ws_encoder)^2): keeps the refinement near the encoder's answer."
    )
    flag_psnr_below: float = Field(20.0, description="Flag a reconstruction whose PSNR (dB) is below this.")
    flag_label_change: bool = Field(True, description="Flag a reconstruction the classifier labels differently.")
    search_starts: int | None = Field(
        None, ge=1, le=100_000, description="Random latents the search decodes and scores (None = by resolution).")
    search_truncation: float = Field(
        0.7, gt=0, le=1, description="Truncation psi of the search's random latents (toward w_avg).")
    search_seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of the search's random latents.")
    search_w_steps: int | None = Field(
        None, ge=0, le=100_000, description="Steps in W after the search, before `steps` in `latent` "
                                            "(None = by resolution).")
    search_lr: float = Field(
        0.1, gt=0, le=10, description="Adam learning rate of the W steps after a search (`lr` then applies in W+).")
    search_batch: int | None = Field(
        None, ge=1, le=4096, description="Latents decoded at once while searching (None = by resolution).")
    perceptual_weight: float | None = Field(
        None, ge=0, description="Weight of the classifier-feature distance (0 = off; None = by resolution "
                                "after a search, 1.0 after an encoder start, off after a w_avg start).")
    label_retry_steps: int = Field(
        50, ge=0, le=100_000,
        description="Items whose reconstruction the classifier labels unlike the input are refined again for "
                    "this many steps with label_weight times the cross-entropy toward the input's label added "
                    "(from where they stopped); an attack from a start of another class explains nothing. "
                    "0 = off. The label check and flag come after it.")
    label_weight: float = Field(0.1, ge=0, le=1e3, description="Weight of the label term of that retry.")
    perceptual_layers: tuple[str, ...] | None = Field(
        None, description="Classifier modules (dotted names) whose outputs are the perceptual features "
                          "(None = chosen automatically; see cfattack.inversion.perceptual).")


__all__ += ["InversionConfig"]
