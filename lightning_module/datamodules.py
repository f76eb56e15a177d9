"""``SAM2DataModule``: training / validation clips from any mix of sources.

Sources are given as plain dicts so that a YAML config (LightningCLI) can describe them::

    train_sources:
      - {kind: image_folder, images: /data/cells/images, masks: /data/cells/masks}
      - {kind: stack, images: /data/embryo/stacks, masks: /data/embryo/labels, num_frames: 8}
      - {kind: video_folder, root: /data/DAVIS, image_dir: JPEGImages/480p,
         mask_dir: Annotations/480p, num_frames: 8, resize: squash}
      - {kind: coco, annotation_file: /data/coco/instances.json, image_dir: /data/coco/images}
      - {kind: synthetic, length: 100000, num_frames: 8}

Besides its own arguments, a spec may carry ``weight`` (sampling weight) and the geometry keys
``resize`` / ``scale`` / ``scale_jitter``, which override the DataModule's for that source.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from .augment import AugmentConfig
from .data import BatchedClips, EvalClips
from .geometry import Geometry
from .microscopy import ImageFolderSource, StackSource
from .sources import CocoSource, SyntheticSource, VideoFolderSource

__all__ = ["SAM2DataModule", "build_source", "SOURCE_KINDS"]

SOURCE_KINDS = {
    "synthetic": SyntheticSource,
    "video_folder": VideoFolderSource,
    "image_folder": ImageFolderSource,
    "stack": StackSource,
    "coco": CocoSource,
}
_SPEC_KEYS = ("kind", "weight", "resize", "scale", "scale_jitter")


def build_source(spec: Dict[str, Any]) -> Dataset:
    """Instantiate one source from ``{"kind": ..., **kwargs}`` (kinds: :data:`SOURCE_KINDS`)."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"a data source is a dict with a 'kind' key, got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k not in _SPEC_KEYS}
    kind = spec["kind"]
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown source kind {kind!r}; expected one of {sorted(SOURCE_KINDS)}")
    try:
        return SOURCE_KINDS[kind](**kwargs)  # type: ignore[return-value]
    except TypeError as exc:  # a misspelt key: say which kind and what it takes
        import inspect

        params = [n for n in inspect.signature(SOURCE_KINDS[kind]).parameters]
        raise ValueError(f"source {spec!r}: {exc}; kind {kind!r} takes {params} "
                         f"(plus {list(_SPEC_KEYS[1:])})") from exc


def model_image_size(trainer: Optional[pl.Trainer]) -> Optional[Tuple[str, int]]:
    """(name, input side) of the model being trained by ``trainer``, when there is one."""
    module = getattr(trainer, "lightning_module", None) if trainer is not None else None
    model = getattr(module, "model", None)
    size = getattr(model, "image_size", None)
    if size is None:
        return None
    name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    return str(name), int(size)


class SAM2DataModule(pl.LightningDataModule):
    """Clips for :class:`~lightning_module.module.SAM2FineTuner`.

    Args:
        train_sources / val_sources: source specs (see the module docstring).
        image_size: model input side; None (default) takes the model's (256 for nano, 1024
            for the official sizes). A value that differs from the model's is an error when
            training or validation starts, naming both.
        resize: ``"crop"`` (default: the data's own pixel size × ``scale``, random S×S crops
            in training, a fixed grid of S×S tiles in validation) or ``"squash"`` (whole
            frames resized to S×S, as SAM 2 was trained on natural videos).
        scale: zoom applied before cropping (e.g. 2 for objects of ~10 px).
        scale_jitter: ``[low, high]``: extra random zoom of training crops (e.g. [0.8, 1.25]).
        batch_size: clips per training batch (per process).
        train_batches / val_batches: batches per epoch (all processes together); validation
            has at most ``val_batches`` batches of fixed views.
        max_objects: objects per training clip (3 upstream; more objects per crop means more
            supervision per image-encoder pass, e.g. 16 for dense nuclei).
        val_max_objects: cap of objects scored per validation view (all of them, up to this;
            objects beyond it are reported once when validation data is built).
        absent_p: probability that a multi-frame training clip is drawn so that one of its
            objects is absent from some frame (object leaves the field or the Z range), so
            the object-score head learns to say "gone".
        augment: apply SAM 2's augmentation to training clips.
        augment_config: overrides of :class:`~lightning_module.augment.AugmentConfig` fields.
        num_workers: DataLoader workers.
        seed: seed of the training batch composition.
        curriculum: ``{"batches": N, "weights": [...]}``: the first N training batches pick
            their source with these weights (one per train source), e.g. click-prompted
            images before clips; training batches are then read in order, not shuffled.
    """

    def __init__(self, train_sources: Optional[List[Dict[str, Any]]] = None,
                 val_sources: Optional[List[Dict[str, Any]]] = None,
                 image_size: Optional[int] = None, resize: str = "crop", scale: float = 1.0,
                 scale_jitter: Sequence[float] = (1.0, 1.0),
                 batch_size: int = 4, val_batch_size: int = 4, train_batches: int = 1000,
                 val_batches: int = 8, max_objects: int = 3, val_max_objects: int = 64,
                 absent_p: float = 0.25, augment: bool = True,
                 augment_config: Optional[Dict[str, Any]] = None, num_workers: int = 0,
                 seed: int = 0, curriculum: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.geometry = Geometry(resize, float(scale), tuple(scale_jitter))  # type: ignore[arg-type]
        self.train_specs = list(train_sources or [])
        self.val_specs = list(val_sources or [])
        self.curriculum = dict(curriculum or {})
        unknown = set(self.curriculum) - {"batches", "weights"}
        if unknown:
            raise ValueError(f"curriculum takes 'batches' and 'weights', got {sorted(unknown)}")
        self.augment_cfg = AugmentConfig(**(augment_config or {})) if augment else None
        self.train_set: Optional[BatchedClips] = None
        self.val_set: Optional[EvalClips] = None

    @property
    def image_size(self) -> int:
        """The input side the batches are made for (checked against the model's)."""
        return self.check_model(getattr(self, "trainer", None) if self._has_trainer() else None)

    def check_model(self, trainer_or_module: Any) -> int:
        """The input side for the model that ``trainer_or_module`` trains (a Trainer or a
        :class:`~lightning_module.module.SAM2FineTuner`), checked against ``image_size``.

        Raises:
            ValueError: when ``image_size`` was given and differs from the model's, naming
                both; or when neither is known.
        """
        given = self.hparams.image_size
        holder = trainer_or_module
        if holder is not None and not hasattr(holder, "lightning_module"):
            holder = type("_Holder", (), {"lightning_module": holder})()
        found = model_image_size(holder)
        if found is not None:
            name, size = found
            if given is not None and int(given) != size:
                raise ValueError(
                    f"data.image_size is {given} but the model {name} takes {size}x{size} inputs: "
                    f"set data.image_size: {size}, or leave it out (it then follows the model). "
                    "To train at another resolution, pick a model of that input size; to see "
                    "objects larger or smaller, use data.scale.")
            return size
        if given is None:
            raise ValueError("data.image_size is not set and no model is attached to tell it; "
                             "give image_size (256 for nano, 1024 for the official sizes)")
        return int(given)

    def _has_trainer(self) -> bool:
        try:
            return self.trainer is not None
        except RuntimeError:
            return False

    def _geometry(self, spec: Dict[str, Any]) -> Geometry:
        over = {k: spec[k] for k in ("resize", "scale", "scale_jitter") if k in spec}
        if "scale_jitter" in over:
            over["scale_jitter"] = tuple(over["scale_jitter"])
        return replace(self.geometry, **over) if over else self.geometry

    def _sources(self, specs: List[Dict[str, Any]]) -> Tuple[List[Dataset], List[Geometry]]:
        return [build_source(s) for s in specs], [self._geometry(s) for s in specs]

    def setup(self, stage: Optional[str] = None) -> None:
        hp = self.hparams
        size = self.image_size
        if stage in (None, "fit") and self.train_set is None:
            specs = self.train_specs or [{"kind": "synthetic", "length": 100000, "num_frames": 8,
                                          "height": size, "width": size}]
            sources, geoms = self._sources(specs)
            weights = None
            if any("weight" in s for s in specs):
                weights = [float(s.get("weight", 1.0)) for s in specs]
            cur = self.curriculum
            self.train_set = BatchedClips(
                sources, hp.train_batches, hp.batch_size, size, hp.max_objects, self.augment_cfg,
                weights, hp.seed, first_batches=int(cur.get("batches", 0)),
                first_weights=cur.get("weights"), geometries=geoms, absent_p=hp.absent_p)
        if stage in (None, "fit", "validate") and self.val_set is None and self.val_specs:
            sources, geoms = self._sources(self.val_specs)
            self.val_set = EvalClips(sources, hp.val_batches, hp.val_batch_size, size,
                                     hp.val_max_objects, geoms)

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        w = self.hparams.num_workers
        return DataLoader(ds, batch_size=None, shuffle=shuffle, num_workers=w,
                          persistent_workers=w > 0, pin_memory=False)

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        # a curriculum needs the indices in order; each index seeds its own draw, so the
        # batches are random either way
        return self._loader(self.train_set, shuffle=not self.train_set.first_batches)

    def val_dataloader(self) -> List[DataLoader]:
        if self.val_set is None:
            self.setup("validate")
        return [self._loader(self.val_set, shuffle=False)] if self.val_set is not None else []

    def describe(self) -> Dict[str, Any]:
        """Sources, geometry and augmentation, for model cards and logs."""
        return {"train": self.train_specs, "val": self.val_specs,
                "geometry": asdict(self.geometry),
                "curriculum": self.curriculum or None,
                "augment": asdict(self.augment_cfg) if self.augment_cfg else None}
