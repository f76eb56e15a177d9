"""Qt controls of the dock widget (layout only; behaviour lives in ``_widget.py``)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._axes import MODES
from ._confidence_plot import ConfidencePlot
from ._engine import DIRECTIONS
from ._models import DEVICE_CHOICES, MODEL_CHOICES
from ._propagation import AXIS_CHOICES

SHORTCUTS = (
    ("middle-click", "positive click on the current object (any active layer)"),
    ("Ctrl+middle-click", "negative click"),
    ("T", "toggle the polarity of new clicks (+ / -)"),
    ("N", "new object"),
    ("Shift+P", "propagate"),
    ("Shift+J", "jump to the next frame worth a correction click"),
    ("U / Shift+U", "undo / redo (prompts and results)"),
    ("Shift+C", "clear the current object"),
)


def _row(*widgets: QWidget) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x)
    return w


class Controls:
    """All widgets of the dock, created and laid out on ``parent``."""

    def __init__(self, parent: QWidget) -> None:
        root = QVBoxLayout(parent)
        root.setContentsMargins(4, 4, 4, 4)

        # -- image, axes, model --------------------------------------------------------
        box = QGroupBox("Image and model")
        form = QFormLayout(box)
        self.image_combo = QComboBox()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODES))
        self.mode_combo.setToolTip("2D image, Z stack, time-lapse, or T x Z (3D+t): the stack "
                                   "axes before Y, X")
        self.channel_axis = QSpinBox()
        self.channel_axis.setRange(-1, 8)
        self.channel_axis.setSpecialValueText("none")
        self.channel_axis.setValue(-1)
        self.channel_axis.setToolTip("index of a channel axis in the layer data (none for grey or RGB)")
        self.channels_edit = QLineEdit()
        self.channels_edit.setPlaceholderText("e.g. 0,2 (R, G, B; default: first 3)")
        self.model_combo = QComboBox()
        self.model_combo.addItems(list(MODEL_CHOICES))
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("empty: demo / download; or a local .pt file")
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICE_CHOICES))
        self.disk_cache = QCheckBox("cache embeddings on disk")
        self.load_button = QPushButton("Load model")
        self.model_status = QLabel("no model loaded")
        self.model_status.setWordWrap(True)
        form.addRow("image", self.image_combo)
        form.addRow("axes", _row(self.mode_combo, QLabel("channel axis"), self.channel_axis))
        form.addRow("channels", self.channels_edit)
        form.addRow("model", self.model_combo)
        form.addRow("checkpoint", self.checkpoint_edit)
        form.addRow("device", _row(self.device_combo, self.disk_cache))
        form.addRow(self.load_button)
        form.addRow(self.model_status)
        root.addWidget(box)

        # -- objects and prompts ---------------------------------------------------------
        box = QGroupBox("Objects")
        lay = QVBoxLayout(box)
        self.object_list = QListWidget()
        self.object_list.setMaximumHeight(110)
        self.add_object = QPushButton("Add")
        self.delete_object = QPushButton("Delete")
        self.color_object = QPushButton("Colour")
        self.clear_object = QPushButton("Clear")
        lay.addWidget(self.object_list)
        lay.addWidget(_row(self.add_object, self.delete_object, self.color_object, self.clear_object))
        self.negative = QCheckBox("negative clicks (T)")
        self.output_combo = QComboBox()
        self.output_combo.addItems(["one Labels layer (instances)", "one Labels layer per object"])
        self.overwrite = QCheckBox("overwrite other objects")
        lay.addWidget(_row(self.negative, self.overwrite))
        lay.addWidget(self.output_combo)
        self.mask_layer_combo = QComboBox()
        self.mask_id = QSpinBox()
        self.mask_id.setRange(0, 2**31 - 1)
        self.mask_id.setSpecialValueText("all")
        self.mask_id.setToolTip("label value to use (all: every label becomes an object)")
        self.mask_button = QPushButton("Use as mask prompt")
        lay.addWidget(_row(QLabel("Labels"), self.mask_layer_combo, self.mask_id, self.mask_button))
        root.addWidget(box)

        # -- propagation and confidence -------------------------------------------------
        box = QGroupBox("Propagation")
        lay = QVBoxLayout(box)
        self.axis_combo = QComboBox()
        self.axis_combo.addItems(list(AXIS_CHOICES))
        self.axis_combo.setToolTip("ZT: along Z on prompted time points, then along T per slice")
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
        self.auto_repropagate = QCheckBox("correction clicks re-propagate from their frame")
        self.auto_repropagate.setChecked(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.activity_progress = QCheckBox("also in napari's activity panel")
        self.activity_progress.setChecked(True)
        self.activity_progress.setToolTip(
            "napari's activity panel animates a spinner while a task runs; with software OpenGL "
            "(a remote desktop, Xvfb) each redraw is slow and holds the interpreter, which can "
            "slow propagation several-fold. On by default with hardware OpenGL, off with a "
            "software renderer")
        lay.addWidget(_row(QLabel("axis"), self.axis_combo, QLabel("direction"), self.direction_combo,
                           QLabel("mode"), self.memory_combo))
        lay.addWidget(_row(self.propagate_button, self.from_here_button, self.cancel_button))
        lay.addWidget(_row(self.auto_repropagate, self.activity_progress))
        lay.addWidget(self.progress)
        self.plot = ConfidencePlot()
        lay.addWidget(self.plot)
        self.flagged_label = QLabel("no flagged frames")
        self.flagged_label.setWordWrap(True)
        self.next_flagged = QPushButton("Next frame to correct")
        lay.addWidget(self.flagged_label)
        lay.addWidget(self.next_flagged)
        root.addWidget(box)

        # -- automatic ------------------------------------------------------------------
        box = QGroupBox("Automatic (segment everything on this slice)")
        form = QFormLayout(box)
        self.points_per_side = QSpinBox()
        self.points_per_side.setRange(2, 128)
        self.points_per_side.setValue(16)
        self.pred_iou = QDoubleSpinBox()
        self.pred_iou.setRange(0.0, 1.0)
        self.pred_iou.setSingleStep(0.05)
        self.pred_iou.setValue(0.7)
        self.stability = QDoubleSpinBox()
        self.stability.setRange(0.0, 1.0)
        self.stability.setSingleStep(0.05)
        self.stability.setValue(0.8)
        self.min_area = QSpinBox()
        self.min_area.setRange(0, 10**7)
        self.auto_button = QPushButton("Segment everything")
        form.addRow("points per side", self.points_per_side)
        form.addRow("pred. IoU threshold", self.pred_iou)
        form.addRow("stability threshold", self.stability)
        form.addRow("min. region area (px)", self.min_area)
        form.addRow(self.auto_button)
        root.addWidget(box)

        # -- history and help -----------------------------------------------------------
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.commit_button = QPushButton("Commit")
        self.commit_button.setToolTip("freeze the results: forget their prompts so nothing re-predicts them")
        root.addWidget(_row(self.undo_button, self.redo_button, self.commit_button))
        help_text = "<br>".join(f"<b>{k}</b>: {v}" for k, v in SHORTCUTS)
        self.help = QLabel(help_text)
        self.help.setWordWrap(True)
        self.help.setTextFormat(Qt.TextFormat.RichText)
        root.addWidget(self.help)
        root.addStretch(1)
