"""Building blocks both StyleGAN3 networks share: the equalised-lr dense layer, modulated conv, filter design.

`FullyConnectedLayer` keeps NVIDIA's class and attribute names, so state_dict keys match;
`modulated_conv2d` and `design_lowpass_filter` are the pure maths the synthesis layers run on.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stylegan3_ops import bias_act

__all__ = ["FullyConnectedLayer", "modulated_conv2d", "design_lowpass_filter"]


# ---------------------------------------------------------------------------------------------
# Pure helpers.


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    padding: int = 0,
    input_gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """Convolve each sample with its own style-modulated copy of ``weight``.

    Args:
        x: input [N, I, H, W].
        weight: shared kernel [O, I, k, k].
        styles: per-sample input-channel scales [N, I].
        demodulate: rescale each output channel's kernel to unit norm (not for ToRGB).
        padding: zero padding on every side.
        input_gain: optional extra input-channel scale, [], [I] or [N, I].

    Returns:
        [N, O, H + 2*padding - k + 1, W + 2*padding - k + 1]
    """
    batch = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    assert x.ndim == 4 and x.shape[1] == in_ch, (x.shape, weight.shape)
    assert styles.shape == (batch, in_ch), (styles.shape, batch, in_ch)

    # Normalising the kernel and the styles first keeps fp16 from overflowing; demodulation
    # below removes the overall scale again, so this changes nothing in exact arithmetic.
    if demodulate:
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()

    w = weight.unsqueeze(0) * styles[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    if input_gain is not None:
        w = w * input_gain.expand(batch, in_ch)[:, None, :, None, None]

    # One grouped convolution over the whole batch: the batch becomes the group axis.
    y = F.conv2d(
        x.reshape(1, batch * in_ch, *x.shape[2:]),
        w.reshape(batch * out_ch, in_ch, kh, kw).to(x.dtype),
        padding=padding,
        groups=batch,
    )
    return y.reshape(batch, out_ch, *y.shape[2:])


def design_lowpass_filter(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
) -> torch.Tensor | None:
    """Windowed-sinc (separable, 1-D) or windowed-jinc (radial, 2-D) low-pass filter.

    Returns None for a single tap (identity filter); otherwise float32 [numtaps] or
    [numtaps, numtaps]. Both use a Kaiser window sized for a transition band of ``width``.
    """
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    # Kaiser's empirical formulas: the stop-band attenuation (dB) a filter of this length can
    # reach over a transition band of ``width`` (as a fraction of Nyquist), and the window's beta.
    atten = 2.285 * (numtaps - 1) * np.pi * (width / (fs / 2)) + 7.95
    if atten > 50:
        beta = 0.1102 * (atten - 8.7)
    elif atten > 21:
        beta = 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    else:
        beta = 0.0
    window = np.kaiser(numtaps, beta)
    if not radial:
        # Ideal low-pass (a sinc at the cutoff) times the window, normalised to unit DC gain.
        # Plain numpy on purpose: this runs while a network is built, and importing
        # scipy.signal for it cost about a second of every CLI call.
        relative_cutoff = 2 * cutoff / fs  # as a fraction of Nyquist
        taps = relative_cutoff * np.sinc(relative_cutoff * (np.arange(numtaps) - (numtaps - 1) / 2))
        taps = taps * window
        return torch.as_tensor(taps / np.sum(taps), dtype=torch.float32)

    # Radially symmetric: the 2-D ideal low-pass is a jinc, J1(2 pi fc r) / (pi r).
    import scipy.special  # only the radial (config R) filters need a Bessel function

    coords = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    radius = np.hypot(*np.meshgrid(coords, coords))
    taps = scipy.special.j1(2 * cutoff * (np.pi * radius)) / (np.pi * radius)
    taps = taps * np.outer(window, window)
    taps = taps / np.sum(taps)
    return torch.as_tensor(taps, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# Modules (class names and attribute names are NVIDIA's, so state_dict keys match).


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalised learning rate: weights are stored divided by their runtime gain."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "linear",
        bias: bool = True,
        lr_multiplier: float = 1.0,
        weight_init: float = 1.0,
        bias_init: float | Sequence[float] = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.weight = torch.nn.Parameter(
            torch.randn([out_features, in_features]) * (weight_init / lr_multiplier)
        )
        if bias:
            init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
            self.bias = torch.nn.Parameter(torch.from_numpy(init / lr_multiplier))
        else:
            self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, in_features] -> [N, out_features]."""
        weight = self.weight.to(x.dtype) * self.weight_gain
        bias = None
        if self.bias is not None:
            bias = self.bias.to(x.dtype)
            if self.bias_gain != 1:
                bias = bias * self.bias_gain
        if self.activation == "linear" and bias is not None:
            return torch.addmm(bias.unsqueeze(0), x, weight.t())
        return bias_act(x.matmul(weight.t()), bias, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"
