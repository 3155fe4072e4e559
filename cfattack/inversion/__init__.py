"""GAN inversion: image -> ws, by an encoder start (or, without one, a search over random
latents) and optimisation refinement.

Example::

    from cfattack.inversion import Inverter
    result = Inverter(G, encoder, classifier, config).invert(images)   # result.ws, .psnr, .flagged
    result = Inverter(G, None, classifier, config).invert(images)      # search, W, then W+ steps
"""

from cfattack.inversion.encoder import Encoder
from cfattack.inversion.inverter import Inverter

__all__ = ["Encoder", "Inverter"]
