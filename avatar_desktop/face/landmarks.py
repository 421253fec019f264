"""Named groups of the 468-point face mesh (MediaPipe's face landmark model): indices into FaceMesh.points.

"Left" and "right" are the subject's: the subject's left eye is on the image's right in an unmirrored photo.
Loops are ordered around their outline; upper/lower halves run from the image's left corner to its right.
"""

from __future__ import annotations

FOREHEAD = 10
NOSE_TIP = 1
CHIN = 152
CHEEK_IMAGE_LEFT = 234  # the face's outline at eye height, on the image's left
CHEEK_IMAGE_RIGHT = 454

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)

# lips: corners 61 (image left) and 291 (image right) outside, 78 and 308 inside
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)

# eyes: corners 33 / 133 (subject's right eye, image left) and 362 / 263 (subject's left eye, image right)
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (362, 398, 384, 385, 386, 387, 388, 466, 263)
LEFT_EYE_LOWER = (362, 382, 381, 380, 374, 373, 390, 249, 263)

# brows: upper and lower edges, each from the inner end (near the nose) outwards
RIGHT_BROW_UPPER = (107, 66, 105, 63, 70)
RIGHT_BROW_LOWER = (55, 65, 52, 53, 46)
LEFT_BROW_UPPER = (336, 296, 334, 293, 300)
LEFT_BROW_LOWER = (285, 295, 282, 283, 276)


def loop(upper: tuple[int, ...], lower: tuple[int, ...]) -> tuple[int, ...]:
    """A closed outline from an upper and a lower half that share their two end points."""
    return tuple(upper) + tuple(reversed(lower[1:-1]))


LIPS_OUTER = loop(LIPS_OUTER_UPPER, LIPS_OUTER_LOWER)
LIPS_INNER = loop(LIPS_INNER_UPPER, LIPS_INNER_LOWER)
RIGHT_EYE = loop(RIGHT_EYE_UPPER, RIGHT_EYE_LOWER)
LEFT_EYE = loop(LEFT_EYE_UPPER, LEFT_EYE_LOWER)
# brows as closed outlines: the upper edge inner to outer, then the lower edge back to the inner end
RIGHT_BROW = RIGHT_BROW_UPPER + tuple(reversed(RIGHT_BROW_LOWER))
LEFT_BROW = LEFT_BROW_UPPER + tuple(reversed(LEFT_BROW_LOWER))
