"""Class names as users type them: forgiving matching, aliases, indices, helpful misses.

Wherever cfattack accepts a class (``--target "Ankle boot"``, ``explain(..., target=3)``), the
name is compared after `normalize_class_name`: case is ignored and runs of spaces, hyphens,
underscores and slashes count as one separator, so ``ankle-boot``, ``Ankle boot`` and
``ANKLE_BOOT`` are the same class. A dataset's own label names (``T-shirt/top``) are accepted
through aliases. A miss raises `InvalidInputError` naming the valid classes and the closest one::

    names = ("t-shirt", "trouser", "ankle-boot")
    resolve_class("Ankle boot", names)                            # 2
    resolve_class("T-shirt/top", names, {"T-shirt/top": "t-shirt"})  # 0
    resolve_class(1, names)                                       # 1
    resolve_class("1", names)                                     # 1 (names are not digits)
    resolve_class("trousr", names)   # InvalidInputError: unknown class 'trousr' (did you mean 'trouser'?) ...

Digit strings: when some class name is itself a string of digits (MNIST's ``"0"`` .. ``"9"``), a
digit string is only ever matched as a name, never as an index, so ``"7"`` cannot silently mean
a different class than the one named ``7``. Otherwise ``"3"`` is the index 3.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Mapping, Sequence

from cfattack.errors import InvalidInputError

__all__ = ["normalize_class_name", "check_class_names", "resolve_class", "resolve_choice"]

_SEPARATORS = re.compile(r"[\s\-_/]+")
_DIGITS = re.compile(r"[0-9]+")
_LISTED = 40  # longest list of valid names an error message spells out in full


def normalize_class_name(name: str) -> str:
    """The form names are compared in: casefolded, separators unified to ``-``, ends trimmed.

    ``"T-shirt/top"`` -> ``"t-shirt-top"``, ``" Ankle  boot "`` -> ``"ankle-boot"``.
    """
    if not isinstance(name, str):
        raise InvalidInputError(f"a class name must be a string, got {type(name).__name__}")
    return _SEPARATORS.sub("-", name.casefold()).strip("-")


def _name_table(class_names: Sequence[str], aliases: Mapping[str, str] | None) -> dict[str, int]:
    """normalised name or alias -> class index; raises InvalidInputError on any inconsistency."""
    table: dict[str, int] = {}
    for index, name in enumerate(class_names):
        key = normalize_class_name(name)
        if not key:
            raise InvalidInputError(f"class name {name!r} (index {index}) is empty once separators are removed")
        if key in table:
            other = class_names[table[key]]
            raise InvalidInputError(
                f"class names {other!r} and {name!r} are the same after normalisation ({key!r}); "
                "names must differ in more than case, spaces, hyphens, underscores or slashes"
            )
        table[key] = index
    names_only = dict(table)
    for alias, target in (aliases or {}).items():
        target_key = normalize_class_name(target)
        if target_key not in names_only:
            raise InvalidInputError(f"alias {alias!r} points to {target!r}, which is not a class name")
        key = normalize_class_name(alias)
        if not key:
            raise InvalidInputError(f"alias {alias!r} is empty once separators are removed")
        if table.get(key, names_only[target_key]) != names_only[target_key]:
            raise InvalidInputError(
                f"alias {alias!r} -> {target!r} clashes with class {class_names[table[key]]!r}"
            )
        table[key] = names_only[target_key]
    return table


def check_class_names(class_names: Sequence[str], aliases: Mapping[str, str] | None = None) -> None:
    """Raise `InvalidInputError` unless the names are unique after normalisation and every alias
    points to one of them without clashing with another class."""
    if isinstance(class_names, str):
        raise InvalidInputError("class_names must be a sequence of names, not one string")
    _name_table(list(class_names), aliases)


def _spell_out(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown if len(names) <= _LISTED else f"{shown}, ... ({len(names)} in all)"


def _miss(what: str, given: str, names: Sequence[str], table: Mapping[str, int]) -> InvalidInputError:
    """The one-line error for an unknown name, suggesting the nearest name or alias."""
    close = difflib.get_close_matches(normalize_class_name(given), list(table), n=1, cutoff=0.6)
    hint = f" (did you mean {names[table[close[0]]]!r}?)" if close else ""
    return InvalidInputError(f"unknown {what} {given!r}{hint}; valid {what} names: {_spell_out(names)}")


def resolve_class(
    name_or_index: str | int,
    class_names: Sequence[str],
    aliases: Mapping[str, str] | None = None,
) -> int:
    """The index of a class given by name, alias or index.

    Args:
        name_or_index: a class name or alias (matched after `normalize_class_name`), an integer
            index in ``[0, len(class_names))`` (any object with ``__index__``, e.g. a numpy
            integer), or a digit string meaning an index when no class name is made of digits.
        class_names: the classes in logit order.
        aliases: optional ``{alias: class name}``, e.g. a dataset's original label names.

    Returns:
        The class index (int).

    Raises:
        InvalidInputError: unknown name (listing the valid ones and the closest match), index
            out of range, a value of another type, or inconsistent ``class_names``/``aliases``.
    """
    names = list(class_names)
    table = _name_table(names, aliases)
    if isinstance(name_or_index, bool):  # bool is an int subclass; True is not "class 1"
        raise InvalidInputError(f"a class must be a name or an integer index, got {name_or_index!r}")
    if isinstance(name_or_index, str):
        key = normalize_class_name(name_or_index)
        if key in table:
            return table[key]
        digits_are_names = any(_DIGITS.fullmatch(n.strip()) for n in names)
        if _DIGITS.fullmatch(name_or_index.strip()) and not digits_are_names:
            return _check_index(int(name_or_index.strip()), names)
        raise _miss("class", name_or_index, names, table)
    try:
        index = operator.index(name_or_index)
    except TypeError:
        raise InvalidInputError(
            f"a class must be a name or an integer index, got {type(name_or_index).__name__}"
        ) from None
    return _check_index(index, names)


def _check_index(index: int, names: Sequence[str]) -> int:
    if not 0 <= index < len(names):
        raise InvalidInputError(
            f"class index {index} is out of range: there are {len(names)} classes (0-{len(names) - 1}: "
            f"{_spell_out(names)})"
        )
    return index


def resolve_choice(name: str, choices: Sequence[str], *, what: str = "choice") -> str:
    """The element of ``choices`` that ``name`` matches (exactly, else after normalisation).

    For named things other than classes, e.g. a bundle's classifiers: ``resolve_choice("Baseline",
    ["baseline", "lcc"], what="classifier")`` -> ``"baseline"``. A miss raises `InvalidInputError`
    listing the choices and the closest one.
    """
    choices = list(choices)
    if not isinstance(name, str):
        raise InvalidInputError(f"a {what} name must be a string, got {type(name).__name__}")
    if name in choices:
        return name
    table: dict[str, int] = {}
    for index, choice in enumerate(choices):
        table.setdefault(normalize_class_name(choice), index)
    key = normalize_class_name(name)
    if key in table:
        return choices[table[key]]
    raise _miss(what, name, choices, table)

