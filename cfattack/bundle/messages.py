"""Error messages of bundle loading, condensed to one line.

Loading a bundle reads user files with torch and user code; their exceptions are often several
paragraphs long. These helpers keep the reason and drop the boilerplate, so every bundle error
fits on one line naming the bundle and the network.
"""

from __future__ import annotations


def _one_line(exc: BaseException, limit: int = 200) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and "TorchScript interpreter" in lines[0]:  # its stack comes first, the reason last
        lines = lines[-1:]
    text = "; ".join(lines) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _torch_reason(exc: BaseException) -> str:
    """The informative part of a torch loading error, without its boilerplate paragraphs."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # weights_only refusals bury the reason mid-paragraph
        reason = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        return "torch.load(weights_only=True) refused it: " + (" ".join(reason.split()) or "unknown reason")
    if text.startswith("Error(s) in loading state_dict"):  # first line only names the class
        return _one_line(RuntimeError("\n".join(text.splitlines()[1:])))
    if "PytorchStreamReader" in text:  # then several sentences of generic advice
        return text.split(". ", 1)[0]
    return _one_line(exc)
