"""The window's parts: preview with overlay, problem banners, expression sliders, state buttons."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from avatar_desktop.config import State

SLIDER_STEPS = 100
"""A slider runs from -SLIDER_STEPS to +SLIDER_STEPS for an expression component in [-1, 1]."""


class PreviewWidget(QWidget):
    """Shows the newest camera frame, scaled to fit, with an optional one-line overlay (fps, latency, state)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.image: QImage | None = None
        self.overlay_text = ""
        self.overlay_visible = True
        self.frames_shown = 0
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def show_frame(self, image: QImage) -> None:
        self.image = image
        self.frames_shown += 1
        self.update()

    def set_overlay(self, text: str) -> None:
        self.overlay_text = text
        self.update()

    def set_overlay_visible(self, visible: bool) -> None:
        self.overlay_visible = visible
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(20, 22, 26))
        if self.image is not None:
            size = self.image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRectF((self.width() - size.width()) / 2, (self.height() - size.height()) / 2,
                            size.width(), size.height())
            painter.drawImage(target, self.image)
        else:
            painter.setPen(QColor(200, 200, 200))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No video yet")
        if self.overlay_visible and self.overlay_text:
            metrics = painter.fontMetrics()
            box = QRectF(8, 8, metrics.horizontalAdvance(self.overlay_text) + 16, metrics.height() + 8)
            painter.fillRect(box, QColor(0, 0, 0, 160))
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self.overlay_text)
        painter.end()


class Banner(QFrame):
    """A problem and what to do about it, with an optional action button and a close button."""

    def __init__(self, kind: str, message: str, action: tuple[str, object] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.kind = kind
        self.setObjectName(f"banner-{kind}")
        self.setStyleSheet("QFrame { background: #fff3cd; border: 1px solid #e0b252; border-radius: 4px; }"
                           "QLabel { border: none; color: #3d2e00; }")
        layout = QHBoxLayout(self)
        self.label = QLabel(message)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label, 1)
        self.action_button: QPushButton | None = None
        if action is not None:
            text, callback = action
            self.action_button = QPushButton(text)
            self.action_button.clicked.connect(callback)
            layout.addWidget(self.action_button)
        close = QPushButton("Dismiss")
        close.clicked.connect(self.deleteLater)
        layout.addWidget(close)

    @property
    def message(self) -> str:
        return self.label.text()


class ExpressionPanel(QWidget):
    """One slider per expression component, applied live; reset; named presets the user can save.

    expression_changed(dict) fires on every slider move; presets_changed() when a preset is saved.
    """

    expression_changed = Signal(dict)
    presets_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.presets: dict[str, dict[str, float]] = {}
        self.sliders: dict[str, QSlider] = {}
        self._grid = QGridLayout()
        layout = QVBoxLayout(self)
        layout.addLayout(self._grid)
        row = QHBoxLayout()
        self.preset_box = QComboBox()
        self.preset_box.setPlaceholderText("Presets")
        self.preset_box.textActivated.connect(self.apply_preset)
        self.reset_button = QPushButton("Reset")
        self.reset_button.clicked.connect(self.reset)
        self.save_button = QPushButton("Save preset…")
        row.addWidget(self.preset_box, 1)
        row.addWidget(self.save_button)
        row.addWidget(self.reset_button)
        layout.addLayout(row)

    def set_components(self, names: tuple[str, ...]) -> None:
        """Rebuild the sliders for a model's components, keeping the values of the names that stay."""
        values = self.expression()
        while self._grid.count():
            self._grid.takeAt(0).widget().deleteLater()
        self.sliders = {}
        for row, name in enumerate(names):
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setObjectName(f"slider-{name}")
            slider.setRange(-SLIDER_STEPS, SLIDER_STEPS)
            slider.setValue(round(values.get(name, 0.0) * SLIDER_STEPS))
            slider.valueChanged.connect(self._moved)
            self._grid.addWidget(QLabel(name.replace("_", " ")), row, 0)
            self._grid.addWidget(slider, row, 1)
            self.sliders[name] = slider

    def expression(self) -> dict[str, float]:
        """Non-zero components as {name: value in [-1, 1]}."""
        return {name: s.value() / SLIDER_STEPS for name, s in self.sliders.items() if s.value()}

    def set_expression(self, values: dict[str, float]) -> None:
        """Move the sliders (one expression_changed at the end)."""
        for name, slider in self.sliders.items():
            slider.blockSignals(True)
            slider.setValue(round(values.get(name, 0.0) * SLIDER_STEPS))
            slider.blockSignals(False)
        self._moved()

    def reset(self) -> None:
        self.set_expression({})

    def set_presets(self, presets: dict[str, dict[str, float]]) -> None:
        self.presets = dict(presets)
        self.preset_box.clear()
        self.preset_box.addItems(sorted(self.presets))

    def save_preset(self, name: str) -> None:
        self.presets[name] = self.expression()
        self.set_presets(self.presets)
        self.presets_changed.emit()

    def apply_preset(self, name: str) -> None:
        if name in self.presets:
            self.set_expression(self.presets[name])

    def _moved(self, *_) -> None:
        self.expression_changed.emit(self.expression())


class StatePanel(QWidget):
    """Auto / Speaking / Listening / Idle (Ctrl+1..4) and the state the session uses now.

    override_chosen(object): a State to force, or None for Auto (voice activity decides).
    """

    override_chosen = Signal(object)
    CHOICES = (("Auto", None), ("Speaking", State.SPEAKING), ("Listening", State.LISTENING), ("Idle", State.IDLE))

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QPushButton] = {}
        for index, (text, state) in enumerate(self.CHOICES):
            button = QPushButton(text)
            button.setCheckable(True)
            button.setToolTip(f"{text} (Ctrl+{index + 1})")
            self.group.addButton(button, index)
            layout.addWidget(button)
            self.buttons[text] = button
            shortcut = QShortcut(QKeySequence(f"Ctrl+{index + 1}"), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(button.click)
        self.buttons["Auto"].setChecked(True)
        self.group.idClicked.connect(lambda index: self.override_chosen.emit(self.CHOICES[index][1]))
        self.indicator = QLabel("State: —")
        self.indicator.setObjectName("state-indicator")
        layout.addWidget(self.indicator, 1)

    def show_state(self, state: str) -> None:
        """The state the session uses now (what Auto chose, or the forced one)."""
        how = "auto" if self.buttons["Auto"].isChecked() else "forced"
        self.indicator.setText(f"State: <b>{state}</b> ({how})")
