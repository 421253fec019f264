"""Visemes and the one table that maps every speech engine's phone set to them.

Phone sets:
- `espeak`: espeak-ng's phoneme mnemonics (`b`, `aI`, `u:`, `_:` ...), matched by their core (stress and length
  marks stripped) and, for vowels, by their first letter.
- `cmu`: the US-English (CMU / "radio") phones of flite's voices and of festival's kal, ked and slt-hts voices
  (`aa`, `ae`, `b`, `ch`, `pau` ...), matched exactly; anything unknown is MID.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Viseme(enum.IntEnum):
    """Mouth shape classes; the integer is the id stored in the per-frame record."""

    REST = 0  # silence: lips together, relaxed
    CLOSED = 1  # p b m: lips pressed together
    TEETH = 2  # f v: lower lip under the upper teeth
    ROUND = 3  # o u w: small rounded opening
    WIDE = 4  # i e: spread lips, medium opening
    OPEN = 5  # a: jaw open
    MID = 6  # schwa and most consonants: slightly open, neutral width
    DENTAL = 7  # th: tongue between the teeth
    POSTALVEOLAR = 8  # sh ch j: protruded, slightly rounded


@dataclass(frozen=True)
class MouthShape:
    """Target mouth of a viseme: opening in [0, 1], width and rounding in [-1, 1], teeth visibility in [0, 1]."""

    opening: float
    width: float
    rounding: float
    teeth: float


VISEME_SHAPES: dict[Viseme, MouthShape] = {
    Viseme.REST: MouthShape(0.0, 0.0, 0.0, 0.0),
    Viseme.CLOSED: MouthShape(0.0, -0.1, 0.1, 0.0),
    Viseme.TEETH: MouthShape(0.15, 0.1, 0.0, 1.0),
    Viseme.ROUND: MouthShape(0.45, -0.6, 1.0, 0.0),
    Viseme.WIDE: MouthShape(0.45, 0.8, -0.3, 0.8),
    Viseme.OPEN: MouthShape(1.0, 0.2, 0.0, 0.4),
    Viseme.MID: MouthShape(0.35, 0.1, 0.0, 0.3),
    Viseme.DENTAL: MouthShape(0.25, 0.2, 0.0, 1.0),
    Viseme.POSTALVEOLAR: MouthShape(0.3, -0.4, 0.6, 0.8),
}

# ---------------------------------------------------------------------------------------------------------------
# espeak-ng mnemonics

_ESPEAK_CONSONANTS = {
    **dict.fromkeys(["p", "b", "m"], Viseme.CLOSED),
    **dict.fromkeys(["f", "v"], Viseme.TEETH),
    **dict.fromkeys(["T", "D"], Viseme.DENTAL),
    **dict.fromkeys(["S", "Z", "tS", "dZ"], Viseme.POSTALVEOLAR),
    "w": Viseme.ROUND,
}
_ESPEAK_VOWELS = {  # by the first letter of the mnemonic
    **dict.fromkeys("ouUO0w", Viseme.ROUND),
    **dict.fromkeys("ieIEj", Viseme.WIDE),
    **dict.fromkeys("aA", Viseme.OPEN),
}


def phoneme_viseme(name: str) -> Viseme:
    """espeak-ng phoneme mnemonic (e.g. 'b', 'aI', 'u:', '_:') -> its viseme; pauses ('_...') are REST."""
    name = name.strip()
    if not name or name.startswith("_"):
        return Viseme.REST
    core = name.rstrip(":;#'")
    if not core:
        return Viseme.MID
    if core in _ESPEAK_CONSONANTS:
        return _ESPEAK_CONSONANTS[core]
    return _ESPEAK_VOWELS.get(core[0], Viseme.MID)


# ---------------------------------------------------------------------------------------------------------------
# CMU / radio phones (flite; festival kal_diphone, ked_diphone, cmu_us_slt_arctic_hts). Vowels follow the espeak
# mapping of the same sound: aa/ae/ay/aw like espeak 'A:', 'a', 'aI', 'aU' (OPEN), ah/ax/er like 'V', '@', '3:' (MID).

CMU_VISEMES: dict[str, Viseme] = {
    **dict.fromkeys(["pau", "h#", "sil", "ssil", "brth", "#"], Viseme.REST),
    **dict.fromkeys(["p", "b", "m", "em"], Viseme.CLOSED),
    **dict.fromkeys(["f", "v"], Viseme.TEETH),
    **dict.fromkeys(["th", "dh"], Viseme.DENTAL),
    **dict.fromkeys(["sh", "zh", "ch", "jh"], Viseme.POSTALVEOLAR),
    **dict.fromkeys(["w", "ao", "ow", "oy", "uh", "uw"], Viseme.ROUND),
    **dict.fromkeys(["iy", "ih", "eh", "ey", "y"], Viseme.WIDE),
    **dict.fromkeys(["aa", "ae", "ay", "aw"], Viseme.OPEN),
    **dict.fromkeys(["ah", "ax", "axr", "er", "el", "en", "nx", "dx", "hv", "hh", "t", "d", "k", "g", "n", "ng",
                     "l", "r", "s", "z"], Viseme.MID),
}


def cmu_viseme(name: str) -> Viseme:
    """CMU / radio phone (e.g. 'b', 'ay', 'pau'; a trailing stress digit is ignored) -> its viseme."""
    name = name.strip().lower().rstrip("012")
    if not name:
        return Viseme.REST
    return CMU_VISEMES.get(name, Viseme.MID)


PHONESETS = {"espeak": phoneme_viseme, "cmu": cmu_viseme}
"""Phone set name -> function from a phone name to its viseme."""


def viseme_of(name: str, phoneset: str = "espeak") -> Viseme:
    """The viseme of phone `name` in `phoneset` ('espeak' or 'cmu')."""
    try:
        return PHONESETS[phoneset](name)
    except KeyError:
        raise ValueError(f"unknown phone set {phoneset!r}: expected one of {', '.join(PHONESETS)}") from None
