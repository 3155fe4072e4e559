"""The StyleGAN3 synthesis network: ws -> image through a Fourier input and alias-free layers.

Holds the per-layer sampling plan (cutoffs, stopbands, sampling rates; paper section 3.2 and
Appendix F), `SynthesisInput`, `SynthesisLayer` and `SynthesisNetwork`. Class and attribute
names are NVIDIA's (``input``, ``L<i>_<size>_<channels>``, ``up_filter``...), so state_dict
keys match the official implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cfattack.stylegan.layers import FullyConnectedLayer, design_lowpass_filter, modulated_conv2d
from stylegan3_ops import filtered_lrelu

__all__ = ["SynthesisNetwork", "SynthesisInput", "SynthesisLayer"]


@dataclass(frozen=True)
class _LayerPlan:
    """Sampling-theory parameters of one synthesis layer (paper section 3.2 and Appendix F)."""

    channels: int
    size: int
    sampling_rate: int
    cutoff: float
    half_width: float


def _plan_layers(
    img_resolution: int,
    img_channels: int,
    channel_base: int,
    channel_max: int,
    num_layers: int,
    num_critical: int,
    first_cutoff: float,
    first_stopband: float,
    last_stopband_rel: float,
    margin_size: int,
) -> tuple[list[_LayerPlan], np.ndarray]:
    """Plan the input (index 0) and layers 0..num_layers: cutoffs and stopbands grow
    geometrically until the last ``num_critical`` layers, which are critically sampled.

    Returns the plans (index i is layer i's output; layer 0's input uses plan 0 as well)
    and the raw stopbands f_t.
    """
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    progress = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** progress
    stopbands = first_stopband * (last_stopband / first_stopband) ** progress

    # Smallest power-of-two sampling rate that holds the stopband, capped at the image size.
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin_size * 2
    sizes[-2:] = img_resolution  # the last two layers have no margin
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels

    plans = [
        _LayerPlan(
            channels=int(channels[i]),
            size=int(sizes[i]),
            sampling_rate=int(rates[i]),
            cutoff=cutoffs[i],
            half_width=half_widths[i],
        )
        for i in range(num_layers + 1)
    ]
    return plans, stopbands


# ---------------------------------------------------------------------------------------------
# Modules (class names and attribute names are NVIDIA's, so state_dict keys match).


class SynthesisInput(torch.nn.Module):
    """Fourier-feature input: sinusoids of fixed frequencies, rotated and translated by w.

    The ``transform`` buffer is a user-set inverse transform of the resulting image
    (identity by default); see `make_transform`.
    """

    def __init__(
        self, w_dim: int, channels: int, size: int | Sequence[int], sampling_rate: float, bandwidth: float
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = np.broadcast_to(np.asarray(size), [2])
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth

        # Frequencies spread over a disc of radius `bandwidth`; phases uniform in [-0.5, 0.5).
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        phases = torch.rand([channels]) - 0.5

        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        # Starts as the identity rotation (1, 0) and zero translation.
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """w [N, w_dim] -> features [N, channels, size[1], size[0]]."""
        batch = w.shape[0]
        # 1. Rotation (r_c, r_s) and translation (t_x, t_y) from w, normalised by |r|.
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        rot = torch.eye(3, device=w.device).unsqueeze(0).repeat([batch, 1, 1])
        rot[:, 0, 0] = t[:, 0]
        rot[:, 0, 1] = -t[:, 1]
        rot[:, 1, 0] = t[:, 1]
        rot[:, 1, 1] = t[:, 0]
        shift = torch.eye(3, device=w.device).unsqueeze(0).repeat([batch, 1, 1])
        shift[:, 0, 2] = -t[:, 2]
        shift[:, 1, 2] = -t[:, 3]
        transforms = rot @ shift @ self.transform.unsqueeze(0)  # [N, 3, 3]

        # 2. Move the frequencies and phases by the combined transform.
        freqs = self.freqs.unsqueeze(0)  # [1, C, 2]
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = freqs @ transforms[:, :2, :2]  # [N, C, 2]

        # 3. Fade out frequencies a user transform pushed beyond the band (avoid aliasing).
        amplitudes = (
            1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)
        ).clamp(0, 1)

        # 4. Sample the sinusoids on the pixel grid (with the margin), in sampling-rate units.
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grid = F.affine_grid(
            theta.unsqueeze(0), [1, 1, int(self.size[1]), int(self.size[0])], align_corners=False
        )  # [1, H, W, 2]
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
        x = torch.sin((x + phases[:, None, None, :]) * (np.pi * 2))
        x = x * amplitudes[:, None, None, :]  # [N, H, W, C]

        # 5. Learned channel mixing.
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, channels={self.channels}, size={list(self.size)}, "
            f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}"
        )


class SynthesisLayer(torch.nn.Module):
    """Modulated conv, then alias-free leaky ReLU: upsample, bias + lrelu, low-pass, downsample.

    The last layer (``is_torgb``) is a 1x1 modulated conv without demodulation or nonlinearity.
    """

    def __init__(
        self,
        w_dim: int,
        is_torgb: bool,
        is_critically_sampled: bool,
        use_fp16: bool,
        in_channels: int,
        out_channels: int,
        in_size: int | Sequence[int],
        out_size: int | Sequence[int],
        in_sampling_rate: int,
        out_sampling_rate: int,
        in_cutoff: float,
        out_cutoff: float,
        in_half_width: float,
        out_half_width: float,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
        magnitude_ema_beta: float = 0.999,
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        # The nonlinearity runs at a higher rate so the harmonics it creates can be filtered out.
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        # (Creation order matters only for reproducing NVIDIA's random initialisation.)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel])
        )
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        if in_sampling_rate * self.up_factor != self.tmp_sampling_rate:
            raise ValueError("tmp_sampling_rate must be an integer multiple of in_sampling_rate")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer(
            "up_filter",
            design_lowpass_filter(
                numtaps=self.up_taps, cutoff=in_cutoff, width=in_half_width * 2, fs=self.tmp_sampling_rate
            ),
        )

        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        if out_sampling_rate * self.down_factor != self.tmp_sampling_rate:
            raise ValueError("tmp_sampling_rate must be an integer multiple of out_sampling_rate")
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer(
            "down_filter",
            design_lowpass_filter(
                numtaps=self.down_taps,
                cutoff=out_cutoff,
                width=out_half_width * 2,
                fs=self.tmp_sampling_rate,
                radial=self.down_radial,
            ),
        )

        # Padding so that, after upsampling, both filters and downsampling, exactly out_size
        # samples remain, centred by the symmetric sample-position convention (Appendix C.3).
        needed = (self.out_size - 1) * self.down_factor + 1
        have = (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total = needed - have + self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        force_fp32: bool = False,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """x [N, in_channels, in_size[1], in_size[0]], w [N, w_dim] -> [N, out_channels, out_size[1], out_size[0]].

        ``noise_mode`` is accepted for API compatibility; StyleGAN3 has no noise inputs.
        """
        assert noise_mode in ("random", "const", "none"), noise_mode
        assert x.ndim == 4 and x.shape[1:] == (
            self.in_channels,
            int(self.in_size[1]),
            int(self.in_size[0]),
        ), (x.shape, self.in_channels, self.in_size)
        assert w.shape == (x.shape[0], self.w_dim), (w.shape, x.shape[0], self.w_dim)

        if update_emas:
            current = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(current.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel**2))

        use_half = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        dtype = torch.float16 if use_half else torch.float32
        x = modulated_conv2d(
            x.to(dtype),
            self.weight,
            styles,
            demodulate=not self.is_torgb,
            padding=self.conv_kernel - 1,
            input_gain=input_gain,
        )
        x = filtered_lrelu(
            x,
            fu=self.up_filter,
            fd=self.down_filter,
            b=self.bias.to(x.dtype),
            up=self.up_factor,
            down=self.down_factor,
            padding=self.padding,
            gain=1 if self.is_torgb else np.sqrt(2),
            slope=1 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )
        assert x.dtype == dtype
        return x

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, "
            f"use_fp16={self.use_fp16}, in_sampling_rate={self.in_sampling_rate:g}, "
            f"out_sampling_rate={self.out_sampling_rate:g}, in_cutoff={self.in_cutoff:g}, "
            f"out_cutoff={self.out_cutoff:g}, in_size={list(self.in_size)}, out_size={list(self.out_size)}, "
            f"in_channels={self.in_channels}, out_channels={self.out_channels}"
        )


class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> image: Fourier input, ``num_layers`` synthesis layers, ToRGB."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_layers: int = 14,
        num_critical: int = 2,
        first_cutoff: float = 2,
        first_stopband: float = 2**2.1,
        last_stopband_rel: float = 2**0.3,
        margin_size: int = 10,
        output_scale: float = 0.25,
        num_fp16_res: int = 4,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        if num_layers <= num_critical:
            raise ValueError(f"num_layers ({num_layers}) must exceed num_critical ({num_critical})")
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res

        plans, _ = _plan_layers(
            img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
            first_cutoff, first_stopband, last_stopband_rel, margin_size,
        )
        first = plans[0]
        self.input = SynthesisInput(
            w_dim=w_dim,
            channels=first.channels,
            size=first.size,
            sampling_rate=first.sampling_rate,
            bandwidth=first.cutoff,
        )
        self.layer_names: list[str] = []
        for idx, out in enumerate(plans):
            src = plans[max(idx - 1, 0)]
            layer = SynthesisLayer(
                w_dim=w_dim,
                is_torgb=idx == num_layers,
                is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=bool(out.sampling_rate * (2**num_fp16_res) > img_resolution),
                in_channels=src.channels,
                out_channels=out.channels,
                in_size=src.size,
                out_size=out.size,
                in_sampling_rate=src.sampling_rate,
                out_sampling_rate=out.sampling_rate,
                in_cutoff=src.cutoff,
                out_cutoff=out.cutoff,
                in_half_width=src.half_width,
                out_half_width=out.half_width,
                **layer_kwargs,
            )
            name = f"L{idx}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, **layer_kwargs: Any) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> img [N, img_channels, img_resolution, img_resolution] (float32).

        Keyword arguments (``noise_mode``, ``force_fp32``, ``update_emas``) go to every layer.
        """
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), (ws.shape, self.num_ws, self.w_dim)
        per_layer = ws.to(torch.float32).unbind(dim=1)
        x = self.input(per_layer[0])
        for name, w in zip(self.layer_names, per_layer[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, num_layers={self.num_layers}, num_critical={self.num_critical}, "
            f"margin_size={self.margin_size}, num_fp16_res={self.num_fp16_res}"
        )
