"""Class hierarchies: how far apart two classes are, for semantic targets and mistake severity.

A `ClassHierarchy` gives every class a path of group names from the root, all paths equally
long. The distance of two classes is the height of their lowest common ancestor (LCA): 0 for
the same class, 1 for siblings in the same innermost group, ..., ``depth`` for classes that
only share the root. Semantic label losses turn these distances into soft targets; the
mistake-severity metric averages them over the errors.

Our Fashion-MNIST hierarchy (a choice, written for this project; depth 3)::

    root
    ├── clothing
    │   ├── tops        t-shirt, pullover, coat, shirt
    │   ├── one-piece   dress
    │   └── bottoms     trouser
    ├── footwear
    │   └── shoes       sandal, sneaker, ankle-boot
    └── accessories
        └── bags        bag

Why this shape: the four upper-body garments are what the classifiers confuse most (shirt vs
t-shirt vs pullover vs coat), so they are siblings (distance 1). A dress covers both halves
of the body, so it is neither a top nor a bottom: its own group under clothing (distance 2 to
tops and to trousers). All footwear are siblings; the bag shares only the root with anything
(distance 3), as do shoes with garments.

    h = hierarchy_for(FASHION_MNIST_CLASSES)
    h.distance("shirt", "t-shirt"), h.distance("dress", "coat"), h.distance("bag", "sneaker")  # 1, 2, 3
    h.distance_matrix()            # [10, 10] numpy int64, in the class order given
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["ClassHierarchy", "FASHION_MNIST_HIERARCHY", "HIERARCHIES", "hierarchy_for"]


class ClassHierarchy:
    """A tree over classes given as ``{class name: (group, subgroup, ...)}``, all paths the same length.

    Args:
        paths: for each class, the names of its ancestor groups from the root down (root
            itself omitted). All paths must have the same length ``depth - 1``.
        class_names: the class order of `distance_matrix` (default: the order of ``paths``).

    Raises:
        ValueError: paths of different lengths, or ``class_names`` not exactly the classes of ``paths``.
    """

    def __init__(self, paths: Mapping[str, Sequence[str]], class_names: Sequence[str] | None = None) -> None:
        if not paths:
            raise ValueError("a hierarchy needs at least one class")
        lengths = {len(p) for p in paths.values()}
        if len(lengths) != 1:
            raise ValueError(f"every class path must have the same length, got lengths {sorted(lengths)}")
        names = tuple(paths) if class_names is None else tuple(class_names)
        if sorted(names) != sorted(paths):
            raise ValueError(f"class_names {names} are not the classes of the hierarchy {tuple(paths)}")
        self.class_names = names
        self.paths = {name: tuple(paths[name]) for name in names}
        self.depth = lengths.pop() + 1  # the leaf level counts too

    def distance(self, a: str, b: str) -> int:
        """Height of the lowest common ancestor of classes ``a`` and ``b`` (0 when a == b)."""
        if a == b:
            return 0
        # Full path = groups + the leaf; count the shared prefix from the root.
        pa, pb = self.paths[a] + (a,), self.paths[b] + (b,)
        shared = 0
        for x, y in zip(pa, pb):
            if x != y:
                break
            shared += 1
        return self.depth - shared

    def distance_matrix(self) -> np.ndarray:
        """[K, K] int64 LCA heights in ``class_names`` order (symmetric, zero diagonal)."""
        k = len(self.class_names)
        out = np.zeros((k, k), dtype=np.int64)
        for i, a in enumerate(self.class_names):
            for j, b in enumerate(self.class_names):
                out[i, j] = self.distance(a, b)
        return out

    def reordered(self, class_names: Sequence[str]) -> "ClassHierarchy":
        """The same tree with `distance_matrix` in another class order."""
        return ClassHierarchy(self.paths, class_names)


FASHION_MNIST_HIERARCHY = ClassHierarchy({
    "t-shirt": ("clothing", "tops"),
    "trouser": ("clothing", "bottoms"),
    "pullover": ("clothing", "tops"),
    "dress": ("clothing", "one-piece"),
    "coat": ("clothing", "tops"),
    "sandal": ("footwear", "shoes"),
    "shirt": ("clothing", "tops"),
    "sneaker": ("footwear", "shoes"),
    "bag": ("accessories", "bags"),
    "ankle-boot": ("footwear", "shoes"),
})
"""Fashion-MNIST in the dataset's label order (`cfattack.training.data.FASHION_MNIST_CLASSES`)."""

HIERARCHIES: dict[str, ClassHierarchy] = {"fashion-mnist": FASHION_MNIST_HIERARCHY}
"""Known hierarchies by dataset name."""


def hierarchy_for(class_names: Sequence[str]) -> ClassHierarchy | None:
    """The known hierarchy over exactly these classes, in this order, or None if there is none."""
    wanted = sorted(class_names)
    for hierarchy in HIERARCHIES.values():
        if sorted(hierarchy.class_names) == wanted and len(set(class_names)) == len(class_names):
            return hierarchy.reordered(class_names)
    return None
