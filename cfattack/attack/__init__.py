"""The Counterfactual Attack: gradient ascent on ws toward a target class, stopped per item.

Example::

    from cfattack.attack import LatentAttack
    result = LatentAttack(G, classifier, config).run(ws0, target)   # result.ws, result.steps
"""

from cfattack.attack.latent_attack import LatentAttack
from cfattack.attack.objectives import class_probabilities, objective_value, proximity_penalty
from cfattack.attack.result import AttackItemSummary, AttackReason, AttackResult

__all__ = [
    "AttackItemSummary",
    "AttackReason",
    "AttackResult",
    "LatentAttack",
    "class_probabilities",
    "objective_value",
    "proximity_penalty",
]
