"""The main window: preview, start/stop, portrait, expression, state, devices, model, banners, status bar."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QEvent, Qt, QTimer
from PySide6.QtGui import QAction, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from avatar_desktop import DESCRIPTION, PROJECT_LINE, __version__
from avatar_desktop.audio.capture import CaptureConfig
from avatar_desktop.config import EngineConfig
from avatar_desktop.engine.portrait import load_portrait
from avatar_desktop.errors import AvatarError, InputFileError
from avatar_desktop.gui.catalog import (
    ICONS,
    PORTRAIT_SUFFIXES,
    ModelChoice,
    audio_devices,
    bundled_portrait,
    model_choice_for,
    model_choices,
)
from avatar_desktop.gui.controller import Problem, SessionController
from avatar_desktop.gui.settings import RESOLUTIONS, SettingsStore
from avatar_desktop.gui.widgets import Banner, ExpressionPanel, PreviewWidget, StatePanel
from avatar_desktop.models.folders import model_search_path
from avatar_desktop.output.camera import CameraConfig, driver_advice
from avatar_desktop.runtime.session import RuntimeConfig, SessionConfig

THUMBNAIL_SIZE = 96


def application_icon() -> QIcon:
    """The app's icon at every size packaging/make_icons.py made (assets/icons); an empty icon without the files."""
    icon = QIcon()
    for path in sorted(ICONS.glob("avatar-desktop-*.png")):
        icon.addFile(str(path))
    return icon


class MainWindow(QMainWindow):
    """The desktop window around one SessionController.

    store: where settings live; portrait: a portrait path that wins over the remembered one; model: a model key,
    name or folder that wins over the remembered one; runtime: how sessions run (tests use one worker thread);
    autostart: start the live session as soon as the window opens.
    """

    def __init__(self, *, store: SettingsStore, portrait: str | None = None, model: str | None = None,
                 runtime: RuntimeConfig = RuntimeConfig(), autostart: bool = True):
        super().__init__()
        self.setWindowTitle("Avatar Desktop")
        self.setWindowIcon(application_icon())
        self.setAcceptDrops(True)
        self.store = store
        self.runtime = runtime
        self.settings, settings_notice = store.load()
        self.controller = SessionController(parent=self)
        self.banners: dict[str, Banner] = {}
        self.portrait_image: np.ndarray | None = None
        self.running_wanted = False  # the user wants a live session (Start, or autostart), until Stop
        self.choices = model_choices()
        self._build()
        self._connect()
        if settings_notice:
            self.show_problem(Problem("settings", settings_notice))
        if self.settings.geometry:
            self.restoreGeometry(QByteArray(base64.b64decode(self.settings.geometry)))
        else:
            self.resize(1180, 760)
        self._fill_model_picker(model or self.settings.model)
        self._fill_devices()
        self.expression_panel.set_presets(self.settings.expression_presets)
        self.expression_panel.set_expression(self.settings.expression)  # -> the controller's ExpressionState
        self.preview.set_overlay_visible(self.settings.overlay_visible)
        self.overlay_action.setChecked(self.settings.overlay_visible)
        self._open_first_portrait(portrait)
        if autostart:
            QTimer.singleShot(0, self.start_session)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.preview = PreviewWidget()
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.busy_label = QLabel("")
        self.busy_label.setObjectName("busy")
        self.busy_bar = QProgressBar()  # indeterminate: shown while something runs in the background
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(160)
        self.busy_bar.hide()
        self.banner_area = QVBoxLayout()
        self.state_panel = StatePanel()
        controls = QHBoxLayout()
        controls.addWidget(self.start_button)
        controls.addWidget(self.stop_button)
        controls.addWidget(self.busy_bar)
        controls.addWidget(self.busy_label, 1)
        left = QVBoxLayout()
        left.addLayout(self.banner_area)
        left.addWidget(self.preview, 1)
        left.addWidget(self.state_panel)
        left.addLayout(controls)

        side = QVBoxLayout()
        side.addWidget(self._portrait_box())
        expression_box = QGroupBox("Expression")
        self.expression_panel = ExpressionPanel()
        QVBoxLayout(expression_box).addWidget(self.expression_panel)
        side.addWidget(expression_box)
        side.addWidget(self._devices_box())
        side.addStretch(1)
        side_widget = QWidget()
        side_widget.setLayout(side)
        scroll = QScrollArea()
        scroll.setWidget(side_widget)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(380)

        central = QWidget()
        row = QHBoxLayout(central)
        row.addLayout(left, 1)
        row.addWidget(scroll)
        self.setCentralWidget(central)

        view = self.menuBar().addMenu("&View")
        self.overlay_action = QAction("Show &overlay (fps, latency, state)", self, checkable=True)
        self.overlay_action.setShortcut("Ctrl+Shift+O")
        view.addAction(self.overlay_action)
        self.about_action = QAction("&About Avatar Desktop", self)
        self.menuBar().addMenu("&Help").addAction(self.about_action)
        self.about_box: QMessageBox | None = None
        self.status_label = QLabel("Not started")
        self.statusBar().addWidget(self.status_label, 1)

    def _portrait_box(self) -> QGroupBox:
        box = QGroupBox("Portrait")
        self.thumbnail = QLabel("none")
        self.thumbnail.setFixedSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.open_button = QPushButton("Open…")
        self.recent_box = QComboBox()
        self.recent_box.setPlaceholderText("Recent portraits")
        column = QVBoxLayout()
        column.addWidget(self.open_button)
        column.addWidget(self.recent_box)
        column.addWidget(QLabel("or drop an image on the window"))
        row = QHBoxLayout(box)
        row.addWidget(self.thumbnail)
        row.addLayout(column, 1)
        return box

    def _devices_box(self) -> QGroupBox:
        box = QGroupBox("Model and devices")
        form = QFormLayout(box)
        self.model_box = QComboBox()
        self.mic_box = QComboBox()
        self.far_box = QComboBox()
        self.out_box = QComboBox()
        self.camera_check = QCheckBox("Send to the virtual camera")
        self.resolution_box = QComboBox()
        self.resolution_box.addItems(RESOLUTIONS)
        self.mirror_check = QCheckBox("Mirror")
        self.refresh_button = QPushButton("Refresh devices")
        form.addRow("Model", self.model_box)
        form.addRow("Microphone", self.mic_box)
        form.addRow("Far end (call audio)", self.far_box)
        form.addRow("Lip-synced audio out", self.out_box)
        form.addRow(self.camera_check)
        form.addRow("Camera size", self.resolution_box)
        form.addRow(self.mirror_check)
        form.addRow(self.refresh_button)
        return box

    def _connect(self) -> None:
        c = self.controller
        c.frame_ready.connect(self.preview.show_frame)
        c.status_changed.connect(self._show_status)
        c.state_changed.connect(self.state_panel.show_state)
        c.problem_found.connect(self.show_problem)
        c.problem_solved.connect(self.clear_problem)
        c.busy_changed.connect(self._show_busy)
        c.session_stopped.connect(lambda: self.status_label.setText("Stopped"))
        self.start_button.clicked.connect(self.start_session)
        self.stop_button.clicked.connect(self.stop_session)
        self.state_panel.override_chosen.connect(c.set_state_override)
        self.expression_panel.expression_changed.connect(self._expression_changed)
        self.expression_panel.save_button.clicked.connect(self._ask_preset_name)
        self.expression_panel.presets_changed.connect(self._presets_changed)
        self.overlay_action.toggled.connect(self._overlay_toggled)
        self.about_action.triggered.connect(self.show_about)
        self.open_button.clicked.connect(self._open_dialog)
        self.recent_box.textActivated.connect(self.open_portrait)
        self.model_box.currentIndexChanged.connect(self._model_chosen)
        for box in (self.mic_box, self.far_box, self.out_box, self.resolution_box):
            box.currentIndexChanged.connect(self._devices_changed)
        for check in (self.camera_check, self.mirror_check):
            check.toggled.connect(self._devices_changed)
        self.refresh_button.clicked.connect(self._fill_devices)

    # ------------------------------------------------------------------ session
    def session_config(self) -> SessionConfig:
        """The live session the controls describe."""
        s = self.settings
        width, height = (int(v) for v in s.camera_resolution.split("x"))
        camera = CameraConfig(width=width, height=height, mirror=s.mirror) if s.camera_enabled else None
        return SessionConfig(
            model=self.model_choice.spec, engine=EngineConfig(), mic=CaptureConfig(device=s.mic or None),
            far_end=CaptureConfig(device=s.far_end) if s.far_end else None, camera=camera,
            runtime=self.runtime, audio_out=s.audio_out or None,
        )

    def start_session(self, what: str = "Starting the live session") -> None:
        self.running_wanted = True
        if self.portrait_image is None:
            self.show_problem(Problem("portrait", "Choose a portrait to animate: Open…, or drop an image here."))
            return
        self.controller.start(self.portrait_image, self.session_config(), what)

    def stop_session(self) -> None:
        self.running_wanted = False
        self.controller.stop()

    def restart_session(self, what: str) -> None:
        """Apply changed devices or model: a new session, started in the background (unless the user stopped)."""
        if self.running_wanted:
            self.start_session(what)

    # ------------------------------------------------------------------ portrait
    def _open_first_portrait(self, explicit: str | None) -> None:
        """The portrait given on the command line, else the last one, else the bundled one, else ask."""
        candidates = [explicit] if explicit else [self.settings.portrait, bundled_portrait()]
        for candidate in filter(None, candidates):
            try:
                self._set_portrait(str(candidate), load_portrait(candidate))
                return
            except InputFileError as error:
                self.show_problem(Problem("portrait", f"{error}"))
                if explicit:
                    return
        if not self.banners.get("portrait"):
            self.show_problem(Problem("portrait", "No portrait yet: choose one with Open… or drop an image here."))

    def open_portrait(self, path: str) -> None:
        """Use the image at `path`: decoded (and sent to the worker) in the background."""
        needs_face = self.model_choice.spec.kind == "motion"
        self.controller.set_portrait(path, lambda image: self._portrait_loaded(path, image), needs_face=needs_face)

    def _portrait_loaded(self, path: str, image: np.ndarray) -> None:
        self._set_portrait(path, image)
        self.clear_problem("portrait")
        if self.running_wanted and self.controller.session is None and not self.controller.model_loading:
            self.start_session()

    def _set_portrait(self, path: str, image: np.ndarray) -> None:
        self.portrait_image = image
        self.settings.remember_portrait(str(Path(path).resolve()))
        height, width = image.shape[:2]
        qimage = QImage(image.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
        self.thumbnail.setPixmap(QPixmap.fromImage(qimage).scaled(
            THUMBNAIL_SIZE, THUMBNAIL_SIZE, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation))
        self.thumbnail.setToolTip(path)
        self.recent_box.blockSignals(True)
        self.recent_box.clear()
        self.recent_box.addItems(self.settings.recent_portraits)
        self.recent_box.setCurrentIndex(-1)
        self.recent_box.blockSignals(False)

    def _open_dialog(self) -> None:
        patterns = " ".join(f"*{suffix}" for suffix in PORTRAIT_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Choose a portrait", "", f"Images ({patterns})")
        if path:
            self.open_portrait(path)

    def dragEnterEvent(self, event) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_portrait(files[0])

    # ------------------------------------------------------------------ model and devices
    def _fill_model_picker(self, wanted: str) -> None:
        try:
            choice = model_choice_for(wanted, self.choices)
        except AvatarError as error:  # a damaged model folder named on the command line or remembered
            choice = model_choice_for("", self.choices)
            self.show_problem(Problem("model_choice", f"model {wanted!r} cannot be used ({error}); using {choice.key}"))
        else:
            if wanted and choice.key not in (wanted, f"model:{wanted}"):
                self.show_problem(Problem("model_choice", (
                    f"model {wanted!r} was not found (in models/ or {model_search_path()[-2]}); using "
                    f"{choice.label} instead. Choose another one, or put the model folder there.")))
        if choice not in self.choices:
            self.choices.insert(0, choice)
        self.model_box.blockSignals(True)
        self.model_box.addItems([c.label for c in self.choices])
        self.model_box.setCurrentIndex(self.choices.index(choice))
        self.model_box.blockSignals(False)
        self._use_model(choice)

    def _use_model(self, choice: ModelChoice) -> None:
        self.model_choice = choice
        self.settings.model = choice.key
        self.expression_panel.set_components(choice.expression_components())
        if not choice.trained:
            self.show_problem(Problem("untrained", (
                f"No trained model is selected: {choice.spec.name} runs with random weights, so the avatar shows "
                "noise (for testing only). Put a trained model in models/ or choose one in Model and devices.")))
        else:
            self.clear_problem("untrained")

    def _model_chosen(self, index: int) -> None:
        choice = self.choices[index]
        if choice.spec is None:  # a damaged folder: the running model goes on
            self.show_problem(Problem("model", f"model {choice.key.removeprefix('model:')!r} cannot be used: "
                                               f"{choice.problem}"))
            return
        self._use_model(choice)
        if self.controller.session is not None:
            self.controller.set_model(self.model_choice.spec)
        else:  # starting, or stopped: the next session uses it
            self.restart_session(f"Loading model {self.model_choice.spec.label}")

    def _fill_devices(self) -> None:
        inputs, outputs, problem = audio_devices()
        if problem:
            self.show_problem(Problem("mic", problem))
        s = self.settings
        fills = ((self.mic_box, "System default microphone", inputs, s.mic),
                 (self.far_box, "None", inputs, s.far_end), (self.out_box, "Off", outputs, s.audio_out))
        for box, empty, names, current in fills:
            box.blockSignals(True)
            box.clear()
            box.addItem(empty, "")
            for name in names:
                box.addItem(name, name)
            if current and current not in names:
                box.addItem(f"{current} (not found)", current)
            box.setCurrentIndex(max(0, box.findData(current)))
            box.blockSignals(False)
        for widget, value in ((self.camera_check, s.camera_enabled), (self.mirror_check, s.mirror)):
            widget.blockSignals(True)
            widget.setChecked(value)
            widget.blockSignals(False)
        self.resolution_box.blockSignals(True)
        self.resolution_box.setCurrentText(s.camera_resolution)
        self.resolution_box.blockSignals(False)

    def _devices_changed(self, *_) -> None:
        s = self.settings
        s.mic, s.far_end, s.audio_out = (box.currentData() or "" for box in (self.mic_box, self.far_box, self.out_box))
        s.camera_enabled = self.camera_check.isChecked()
        s.mirror = self.mirror_check.isChecked()
        s.camera_resolution = self.resolution_box.currentText()
        self.restart_session("Switching devices")

    # ------------------------------------------------------------------ expression, overlay
    def _expression_changed(self, expression: dict) -> None:
        """The sliders moved: the controller's ExpressionState holds the values (the settings get them on saving)."""
        self.controller.set_expression(expression)

    def _ask_preset_name(self) -> None:
        name, ok = QInputDialog.getText(self, "Save expression preset", "Preset name:")
        if ok and name.strip():
            self.expression_panel.save_preset(name.strip())

    def _presets_changed(self) -> None:
        self.settings.expression_presets = dict(self.expression_panel.presets)

    def _overlay_toggled(self, visible: bool) -> None:
        self.settings.overlay_visible = visible
        self.preview.set_overlay_visible(visible)

    def show_about(self) -> None:
        """Help > About: the version, what the app does, the licence and project line (window-modal, not blocking)."""
        self.about_box = QMessageBox(self)
        self.about_box.setWindowTitle("About Avatar Desktop")
        self.about_box.setIconPixmap(self.windowIcon().pixmap(64))
        self.about_box.setText(f"<b>Avatar Desktop</b> {__version__}")
        self.about_box.setInformativeText(f"{DESCRIPTION}\n\n{PROJECT_LINE}")
        self.about_box.open()

    # ------------------------------------------------------------------ problems and status
    def show_problem(self, problem: Problem) -> None:
        """One banner per kind (a new message replaces the old one), with the action that helps."""
        self.clear_problem(problem.kind)
        actions = {
            "camera": ("Re-check", lambda: self.start_session("Re-checking the virtual camera")),
            "mic": ("Re-check", self._recheck_devices),
            "session": ("Retry", self.start_session),
            "portrait": ("Open…", self._open_dialog),
            "model": ("Choose model", self.model_box.showPopup),
            "model_choice": ("Choose model", self.model_box.showPopup),
        }
        message = problem.message
        if problem.kind == "camera" and "install" not in message and "busy" not in message:
            message = f"{message}. To fix: {driver_advice()}."
        if problem.kind == "worker":
            message = f"The generator stopped and was restarted; the camera kept the last frame. ({message})"
        banner = Banner(problem.kind, message, actions.get(problem.kind))
        banner.destroyed.connect(lambda *_, kind=problem.kind, b=banner: self._forget_banner(kind, b))
        self.banners[problem.kind] = banner
        self.banner_area.addWidget(banner)

    def clear_problem(self, kind: str) -> None:
        banner = self.banners.pop(kind, None)
        if banner is not None:
            banner.hide()
            banner.deleteLater()

    def _forget_banner(self, kind: str, banner: Banner) -> None:
        if self.banners.get(kind) is banner:
            del self.banners[kind]

    def _recheck_devices(self) -> None:
        self._fill_devices()
        self.start_session("Re-checking the microphone")

    def _show_busy(self, text: str) -> None:
        self.busy_label.setText(f"{text}…" if text else "")
        self.busy_bar.setVisible(bool(text))

    def _show_status(self, status: dict) -> None:
        fps = status["avatar_fps"]
        latency = status["latency_p50_ms"]
        parts = [f"worker {status['worker_pid']} {'running' if status['worker_alive'] else 'down'}",
                 f"{status['path'] or 'loading'}: model {status['model']}", f"mic {status['mic']}",
                 f"camera {status['camera'] or 'off (preview only)'}"]
        if status["worker_restarts"]:
            parts.append(f"{status['worker_restarts']} worker restart(s)")
        if status["last_error"]:
            parts.append(f"last warning: {status['last_error']}")
        self.status_label.setText(" · ".join(parts))
        self.preview.set_overlay(
            f"camera {status['camera_fps'] or 0:.1f} fps · avatar {fps or 0:.1f} fps · latency {latency or 0:.0f} ms"
            f" · delay {status['target_delay_ms'] or 0:.0f} ms · {status['state']}")

    def changeEvent(self, event) -> None:
        """No preview work while the window is minimized (the camera goes on)."""
        if event.type() == QEvent.Type.WindowStateChange:
            self.controller.preview.enabled = not self.isMinimized()
        super().changeEvent(event)

    # ------------------------------------------------------------------ closing
    def save_settings(self) -> None:
        self.settings.expression = self.controller.expression.values
        self.settings.geometry = base64.b64encode(bytes(self.saveGeometry())).decode()
        self.store.save(self.settings)

    def closeEvent(self, event) -> None:
        self.save_settings()
        self.controller.shutdown()
        super().closeEvent(event)

