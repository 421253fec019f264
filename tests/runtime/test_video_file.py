"""The video-file sink: what the camera showed, encoded to H.264, readable back."""

import cv2
import numpy as np
import pytest

from avatar_desktop.errors import AvatarError
from avatar_desktop.output.video_file import VideoFileSink


def test_recording_keeps_every_frame_in_order(tmp_path):
    sink = VideoFileSink(tmp_path / "out" / "session.mp4", fps=25)
    for k in range(30):
        canvas = np.zeros((72, 128, 3), np.uint8)
        canvas[:, :, 0] = k * 8  # red ramps up
        sink.send(canvas, media_time=k / 25)
    sink.close()
    assert sink.dropped == 0 and sink.frames == 30
    video = cv2.VideoCapture(str(sink.path))
    reds = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        reds.append(frame[36, 64, 2])  # BGR
    assert len(reds) == 30
    assert np.all(np.diff(np.array(reds, int)) > 0)


def test_recording_needs_a_video_file_name(tmp_path):
    with pytest.raises(AvatarError, match=r"\.mp4"):
        VideoFileSink(tmp_path / "session.txt", fps=25)
