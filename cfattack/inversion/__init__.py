"""GAN inversion: image -> ws, by an encoder start and optimisation refinement.

Example::

    from cfattack.inversion import Inverter
    result = Inverter(G, encoder, config).invert(images)   # result.ws, result.psnr, result.flagged
"""

from cfattack.inversion.encoder import Encoder
from cfattack.inversion.inverter import Inverter

__all__ = ["Encoder", "Inverter"]
