"""Qt controls of the dock (layout only; behaviour lives in ``_widget.py``).

Collapsible sections inside a scroll area, with Undo / Redo / Commit and the status line in a
bar below it that never scrolls away: the dock fits a 1,000 px screen.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._axes import MODES
from ._confidence_plot import ConfidencePlot
from ._engine import DIRECTIONS
from ._models import DEFAULT_CHOICE, DEVICE_CHOICES, MODEL_CHOICES
from ._sections import Section

SHORTCUTS = (
    ("click (SAM2 points layer)", "positive click on the current object"),
    ("Ctrl+click", "negative click"),
    ("middle-click", "positive click, whatever layer is active (Ctrl: negative)"),
    ("T", "toggle the polarity of new clicks (+ / -)"),
    ("N", "new object"),
    ("Shift+P", "propagate"),
    ("Shift+J", "jump to the next frame worth a correction click"),
    ("U / Shift+U", "undo / redo (prompts and results)"),
    ("Shift+C", "clear the current object"),
)
TZ_ALONG = (("Z, then T from every slice", "ZT"), ("Z only", "Z"), ("T only", "T"))


def _row(*widgets: QWidget) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x)
    return w


def _combo(min_chars: int = 14) -> QComboBox:
    """A combo box whose width does not follow its longest entry (the dock stays narrow)."""
    c = QComboBox()
    c.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    c.setMinimumContentsLength(min_chars)
    return c


def _spin(lo: float, hi: float, value: float, step: float = 0.05) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setValue(value)
    return s


class Controls:
    """All widgets of the dock, created and laid out on ``parent``."""

    def __init__(self, parent: QWidget) -> None:
        root = QVBoxLayout(parent)
        root.setContentsMargins(2, 2, 2, 2)
        body = QWidget()
        self.body = QVBoxLayout(body)
        self.body.setContentsMargins(2, 2, 2, 2)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(body)
        root.addWidget(self.scroll, 1)
        self.sections = {}
        self._image_section()
        self._objects_section()
        self._propagation_section()
        self._automatic_section()
        help_text = "<br>".join(f"<b>{k}</b>: {v}" for k, v in SHORTCUTS)
        self.help = QLabel(help_text)
        self.help.setWordWrap(True)
        self.help.setTextFormat(Qt.TextFormat.RichText)
        self._add("Shortcuts", self.help, expanded=False)
        self.body.addStretch(1)
        # -- always visible: history and status --------------------------------------
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.commit_button = QPushButton("Commit")
        self.commit_button.setToolTip("freeze the current object: forget its prompts so nothing re-predicts it")
        root.addWidget(_row(self.undo_button, self.redo_button, self.commit_button))
        self.status = QLabel("")
        self.status.setWordWrap(True)
        root.addWidget(self.status)

    def _add(self, title: str, content: QWidget, expanded: bool = True) -> Section:
        sec = Section(title, content, expanded)
        self.sections[title] = sec
        self.body.addWidget(sec)
        return sec

    def _image_section(self) -> None:
        box = QWidget()
        form = QFormLayout(box)
        form.setContentsMargins(0, 0, 0, 0)
        self.image_combo = _combo()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODES))
        self.mode_combo.setToolTip("2D image, Z stack, time-lapse, or T x Z (3D+t): the stack axes before Y, X. "
                                   "They decide what is encoded and what Propagate runs along.")
        self.along_combo = _combo(10)
        for text, _ in TZ_ALONG:
            self.along_combo.addItem(text)
        self.along_combo.setToolTip("TZ: what Propagate runs along")
        self.channel_axis = QSpinBox()
        self.channel_axis.setRange(-1, 8)
        self.channel_axis.setSpecialValueText("none")
        self.channel_axis.setValue(-1)
        self.channel_axis.setToolTip("index of a channel axis in the layer data (none for grey or RGB)")
        self.channels_edit = QLineEdit()
        self.channels_edit.setPlaceholderText("e.g. 0,2 (default 0,1,2)")
        self.channels_edit.setToolTip("up to 3 channels shown to SAM 2 as R, G, B")
        self.model_combo = _combo()
        self.model_combo.addItems(list(MODEL_CHOICES))
        self.model_combo.setCurrentText(DEFAULT_CHOICE)
        self.model_combo.setToolTip("official weights are downloaded once and cached; the demo model "
                                    "(trained on synthetic shapes only) is for trying the interface")
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("empty, or a local .pt file")
        self.checkpoint_edit.setToolTip("empty: official weights (downloaded once) or the demo weights; "
                                        "or the path of a local checkpoint file")
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICE_CHOICES))
        self.disk_cache = QCheckBox("disk cache")
        self.disk_cache.setToolTip("also keep image / tile embeddings on disk ($NAPARI_SAM2_CACHE_DIR)")
        self.load_button = QPushButton("Load model")
        self.demo_button = QPushButton("Use the demo model")
        self.demo_button.setToolTip("the shipped demo model: synthetic shapes only, for trying the interface")
        self.demo_button.setVisible(False)
        self.model_status = QLabel("no model loaded")
        self.model_status.setWordWrap(True)
        self.tiled = QCheckBox("tiled")
        self.tiled.setToolTip("embed overlapping tiles instead of the whole plane shrunk to the model's input: "
                              "small objects in large images stay visible to SAM 2")
        self.tile_size = QSpinBox()
        self.tile_size.setRange(0, 8192)
        self.tile_size.setSuffix(" px")
        self.tile_size.setSpecialValueText("auto")
        self.tile_size.setToolTip("tile side in pixels (auto: the model's input size, 1024 for official weights)")
        self.tile_overlap = QSpinBox()
        self.tile_overlap.setRange(0, 4096)
        self.tile_overlap.setValue(128)
        self.tile_overlap.setSuffix(" px")
        self.tile_overlap.setToolTip("pixels shared by neighbouring tiles: more than your largest object")
        form.addRow("image", self.image_combo)
        form.addRow("axes", _row(self.mode_combo, self.along_combo))
        form.addRow("channel axis", _row(self.channel_axis, self.channels_edit))
        form.addRow("model", self.model_combo)
        form.addRow("checkpoint", self.checkpoint_edit)
        form.addRow("device", _row(self.device_combo, self.disk_cache))
        form.addRow(_row(self.load_button))
        form.addRow(self.demo_button)
        form.addRow(self.model_status)
        form.addRow("large images", self.tiled)
        form.addRow("tile, overlap", _row(self.tile_size, self.tile_overlap))
        self._add("Image and model", box)

    def _objects_section(self) -> None:
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        self.object_list = QListWidget()
        self.object_list.setMaximumHeight(90)
        self.add_object = QPushButton("Add")
        self.delete_object = QPushButton("Delete")
        self.color_object = QPushButton("Colour")
        self.clear_object = QPushButton("Clear")
        lay.addWidget(self.object_list)
        lay.addWidget(_row(self.add_object, self.delete_object, self.color_object, self.clear_object))
        self.negative = QCheckBox("negative clicks (T)")
        self.overwrite = QCheckBox("overwrite other objects")
        lay.addWidget(_row(self.negative, self.overwrite))
        self.output_combo = QComboBox()
        self.output_combo.addItems(["one Labels layer (instances)", "one Labels layer per object"])
        lay.addWidget(self.output_combo)
        self.mask_layer_combo = _combo(10)
        self.mask_id = QSpinBox()
        self.mask_id.setRange(0, 2**31 - 1)
        self.mask_id.setSpecialValueText("all")
        self.mask_id.setToolTip("label value to use (all: every label becomes an object)")
        self.mask_button = QPushButton("Use as mask prompt")
        lay.addWidget(_row(QLabel("mask from"), self.mask_layer_combo, self.mask_id))
        lay.addWidget(self.mask_button)
        self._add("Objects and prompts", box)

    def _propagation_section(self) -> None:
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(list(DIRECTIONS))
        self.direction_combo.setCurrentText("both")
        from sam2_plugins.predictors.video.modes import MEMORY_MODES

        self.memory_combo = QComboBox()
        self.memory_combo.addItems(list(MEMORY_MODES))
        self.memory_combo.setToolTip("tracking mode: sam2 (upstream memory), samurai (motion-aware), distractor "
                                     "(distractor-aware memory), long (3 memory pathways, ~3x slower)")
        self.propagate_button = QPushButton("Propagate")
        self.from_here_button = QPushButton("From this frame")
        self.from_here_button.setToolTip("re-propagate from the current frame only (after a correction click)")
        self.cancel_button = QPushButton("Cancel")
        self.auto_repropagate = QCheckBox("corrections re-propagate")
        self.auto_repropagate.setToolTip("a click on a propagated sequence re-propagates from its frame")
        self.auto_repropagate.setChecked(True)
        self.activity_progress = QCheckBox("activity panel")
        self.activity_progress.setChecked(True)
        self.activity_progress.setToolTip(
            "also show propagation in napari's activity panel. It animates a spinner while a task runs; with "
            "software OpenGL "
            "(a remote desktop, Xvfb) each redraw is slow and holds the interpreter, which can "
            "slow propagation several-fold. On by default with hardware OpenGL, off with a "
            "software renderer")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.plot = ConfidencePlot()
        self.flagged_label = QLabel("no flagged frames")
        self.flagged_label.setWordWrap(True)
        self.next_flagged = QPushButton("Next frame to correct")
        lay.addWidget(_row(QLabel("direction"), self.direction_combo, QLabel("mode"), self.memory_combo))
        lay.addWidget(_row(self.propagate_button, self.from_here_button, self.cancel_button))
        lay.addWidget(_row(self.auto_repropagate, self.activity_progress))
        lay.addWidget(self.progress)
        lay.addWidget(self.plot)
        lay.addWidget(self.flagged_label)
        lay.addWidget(self.next_flagged)
        self._add("Propagation", box)

    def _automatic_section(self) -> None:
        box = QWidget()
        form = QFormLayout(box)
        form.setContentsMargins(0, 0, 0, 0)
        self.points_per_side = QSpinBox()
        self.points_per_side.setRange(2, 128)
        self.points_per_side.setValue(16)
        self.pred_iou = _spin(0.0, 1.0, 0.7)
        self.stability = _spin(0.0, 1.0, 0.8)
        self.min_area = QSpinBox()
        self.min_area.setRange(0, 10**7)
        self.auto_button = QPushButton("Segment everything")
        self.auto_result = QLabel("")
        self.auto_result.setWordWrap(True)
        self.auto_retry = QPushButton("")
        self.auto_retry.setVisible(False)
        form.addRow("points per side", self.points_per_side)
        form.addRow("pred. IoU threshold", self.pred_iou)
        form.addRow("stability threshold", self.stability)
        form.addRow("min. region area (px)", self.min_area)
        form.addRow(self.auto_button)
        form.addRow(self.auto_result)
        form.addRow(self.auto_retry)
        self._add("Automatic (segment everything on this slice)", box, expanded=False)
