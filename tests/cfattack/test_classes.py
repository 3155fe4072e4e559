"""Class-name matching: normalisation, aliases, indices, digit names, helpful misses."""

from __future__ import annotations

import numpy as np
import pytest

from cfattack.classes import check_class_names, normalize_class_name, resolve_choice, resolve_class
from cfattack.errors import InvalidInputError
from cfattack.training.data import FASHION_MNIST_ALIASES, FASHION_MNIST_CLASSES, MNIST_CLASSES


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ankle-boot", "ankle-boot"),
        ("Ankle boot", "ankle-boot"),
        ("ANKLE_BOOT", "ankle-boot"),
        ("  ankle -_ boot  ", "ankle-boot"),
        ("T-shirt/top", "t-shirt-top"),
        ("t shirt / top", "t-shirt-top"),
        ("Straße", "strasse"),  # casefold, not lower
        ("7", "7"),
    ],
)
def test_normalize_class_name(given, expected):
    assert normalize_class_name(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ankle-boot", 9),
        ("Ankle boot", 9),
        ("ANKLE_BOOT", 9),
        ("t-shirt", 0),
        ("T Shirt", 0),
        ("T-shirt/top", 0),   # the dataset's own name, through the aliases
        ("t-shirt top", 0),
        ("Sneaker", 7),
        (3, 3),
        (np.int64(5), 5),
        ("4", 4),             # digit string = index when no class name is a number
        (" 2 ", 2),
    ],
)
def test_resolve_fashion_mnist(given, expected):
    assert resolve_class(given, FASHION_MNIST_CLASSES, FASHION_MNIST_ALIASES) == expected


def test_every_fashion_alias_resolves_to_its_class():
    for alias, name in FASHION_MNIST_ALIASES.items():
        assert resolve_class(alias, FASHION_MNIST_CLASSES, FASHION_MNIST_ALIASES) == FASHION_MNIST_CLASSES.index(name)


def test_aliases_are_optional():
    assert resolve_class("Ankle boot", FASHION_MNIST_CLASSES) == 9
    with pytest.raises(InvalidInputError, match="unknown class 'T-shirt/top'"):
        resolve_class("T-shirt/top", FASHION_MNIST_CLASSES)


def test_digit_class_names_match_as_names_only():
    assert resolve_class("7", MNIST_CLASSES) == 7
    assert resolve_class(7, MNIST_CLASSES) == 7
    # Classes named by numbers that are not their indices: "1" is the *name* 1 (index 0).
    shifted = ("1", "2", "3")
    assert resolve_class("1", shifted) == 0
    assert resolve_class(1, shifted) == 1
    with pytest.raises(InvalidInputError, match="unknown class '0'"):
        resolve_class("0", shifted)


def test_miss_lists_names_and_suggests_the_closest():
    with pytest.raises(InvalidInputError) as info:
        resolve_class("snaeker", FASHION_MNIST_CLASSES, FASHION_MNIST_ALIASES)
    message = str(info.value)
    assert "\n" not in message
    assert "did you mean 'sneaker'?" in message
    assert "t-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle-boot" in message


def test_miss_through_an_alias_suggests_the_canonical_name():
    with pytest.raises(InvalidInputError, match="did you mean 't-shirt'"):
        resolve_class("T-shirt/tpo", FASHION_MNIST_CLASSES, FASHION_MNIST_ALIASES)


def test_miss_without_a_close_name_has_no_suggestion():
    with pytest.raises(InvalidInputError) as info:
        resolve_class("zebra", FASHION_MNIST_CLASSES)
    assert "did you mean" not in str(info.value) and "valid class names" in str(info.value)


@pytest.mark.parametrize("bad", [10, -1, "10", "-1"])
def test_out_of_range_or_negative_indices(bad):
    with pytest.raises(InvalidInputError):
        resolve_class(bad, FASHION_MNIST_CLASSES)


@pytest.mark.parametrize("bad", [True, 2.0, None, ["shirt"]])
def test_other_types_are_refused(bad):
    with pytest.raises(InvalidInputError, match="name or an integer index"):
        resolve_class(bad, FASHION_MNIST_CLASSES)


def test_check_class_names_accepts_the_dataset_tables():
    check_class_names(FASHION_MNIST_CLASSES, FASHION_MNIST_ALIASES)
    check_class_names(MNIST_CLASSES)


@pytest.mark.parametrize(
    ("names", "aliases", "match"),
    [
        (("cat", "Cat"), None, "same after normalisation"),
        (("t shirt", "t_shirt"), None, "same after normalisation"),
        (("cat", "--"), None, "empty"),
        (("cat", "dog"), {"kitty": "lion"}, "not a class name"),
        (("cat", "dog"), {"Dog": "cat"}, "clashes with class 'dog'"),
        (("cat", "dog"), {"//": "cat"}, "empty"),
        ("cat", None, "not one string"),
    ],
)
def test_check_class_names_refuses_ambiguity(names, aliases, match):
    with pytest.raises(InvalidInputError, match=match):
        check_class_names(names, aliases)


def test_an_alias_equal_to_its_own_class_is_fine():
    check_class_names(("cat", "dog"), {"Cat": "cat", "doggy": "Dog"})
    assert resolve_class("DOGGY", ("cat", "dog"), {"doggy": "Dog"}) == 1


def test_resolve_choice():
    choices = ["baseline", "latent_boost", "lcc"]
    assert resolve_choice("baseline", choices) == "baseline"
    assert resolve_choice("Latent Boost", choices, what="classifier") == "latent_boost"
    with pytest.raises(InvalidInputError, match=r"unknown classifier 'basline' \(did you mean 'baseline'\?\)"):
        resolve_choice("basline", choices, what="classifier")
    with pytest.raises(InvalidInputError, match="must be a string"):
        resolve_choice(0, choices, what="classifier")
