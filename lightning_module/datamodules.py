"""``SAM2DataModule``: training / validation clips from any mix of sources.

Sources are given as plain dicts so that a YAML config (LightningCLI) can describe them::

    train_sources:
      - {kind: synthetic, length: 100000, num_frames: 8}
      - {kind: video_folder, root: /data/DAVIS, image_dir: JPEGImages/480p,
         mask_dir: Annotations/480p, num_frames: 8}
      - {kind: image_folder, images: /data/cells/images, masks: /data/cells/masks}
      - {kind: coco, annotation_file: /data/coco/instances.json, image_dir: /data/coco/images}
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Dict, List, Optional

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from .augment import AugmentConfig
from .data import BatchedClips
from .sources import CocoSource, ImageFolderSource, SyntheticSource, VideoFolderSource

__all__ = ["SAM2DataModule", "build_source", "SOURCE_KINDS"]

SOURCE_KINDS = {
    "synthetic": SyntheticSource,
    "video_folder": VideoFolderSource,
    "image_folder": ImageFolderSource,
    "coco": CocoSource,
}


def build_source(spec: Dict[str, Any]) -> Dataset:
    """Instantiate one source from ``{"kind": ..., **kwargs}`` (kinds: :data:`SOURCE_KINDS`)."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"a data source is a dict with a 'kind' key, got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k not in ("kind", "weight")}
    kind = spec["kind"]
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown source kind {kind!r}; expected one of {sorted(SOURCE_KINDS)}")
    return SOURCE_KINDS[kind](**kwargs)  # type: ignore[return-value]


class SAM2DataModule(pl.LightningDataModule):
    """Clips for :class:`~lightning_module.module.SAM2FineTuner`.

    Args:
        train_sources / val_sources: source specs (see the module docstring); a spec may carry
            a ``weight`` (sampling weight, default: the source's length).
        image_size: model input side (256 for nano, 1024 for the official sizes).
        batch_size: clips per training batch (per process).
        train_batches / val_batches: batches per epoch (all processes together); validation
            reads its clips in order, each once, so it has at most ``val_batches`` batches.
        max_objects: objects per clip (3 as upstream).
        augment: apply SAM 2's augmentation to training clips.
        augment_config: overrides of :class:`~lightning_module.augment.AugmentConfig` fields.
        num_workers: DataLoader workers.
        seed: seed of the batch composition (validation uses ``seed + 1``).
        curriculum: ``{"batches": N, "weights": [...]}``: the first N training batches pick
            their source with these weights (one per train source), e.g. click-prompted
            images before clips; training batches are then read in order, not shuffled.
    """

    def __init__(self, train_sources: Optional[List[Dict[str, Any]]] = None,
                 val_sources: Optional[List[Dict[str, Any]]] = None, image_size: int = 256,
                 batch_size: int = 4, val_batch_size: int = 4, train_batches: int = 1000,
                 val_batches: int = 8, max_objects: int = 3, augment: bool = True,
                 augment_config: Optional[Dict[str, Any]] = None, num_workers: int = 0,
                 seed: int = 0, curriculum: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_specs = train_sources or [{"kind": "synthetic", "length": 100000,
                                              "num_frames": 8, "height": image_size,
                                              "width": image_size}]
        self.val_specs = val_sources or []
        self.curriculum = dict(curriculum or {})
        unknown = set(self.curriculum) - {"batches", "weights"}
        if unknown:
            raise ValueError(f"curriculum takes 'batches' and 'weights', got {sorted(unknown)}")
        self.augment_cfg = AugmentConfig(**(augment_config or {})) if augment else None
        self.train_set: Optional[BatchedClips] = None
        self.val_set: Optional[BatchedClips] = None

    def _batched(self, specs: List[Dict[str, Any]], num_batches: int, batch_size: int,
                 augment: Optional[AugmentConfig], seed: int,
                 curriculum: Optional[Dict[str, Any]] = None,
                 sequential: bool = False) -> BatchedClips:
        sources = [build_source(s) for s in specs]
        weights = None
        if any("weight" in s for s in specs):
            weights = [float(s.get("weight", 1.0)) for s in specs]
        cur = curriculum or {}
        return BatchedClips(sources, num_batches, batch_size, self.hparams.image_size,
                            self.hparams.max_objects, augment, weights, seed,
                            first_batches=int(cur.get("batches", 0)),
                            first_weights=cur.get("weights"), sequential=sequential)

    def setup(self, stage: Optional[str] = None) -> None:
        hp = self.hparams
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._batched(self.train_specs, hp.train_batches, hp.batch_size,
                                           self.augment_cfg, hp.seed, self.curriculum)
        if stage in (None, "fit", "validate") and self.val_set is None and self.val_specs:
            self.val_set = self._batched(self.val_specs, hp.val_batches, hp.val_batch_size,
                                         None, hp.seed + 1, sequential=True)

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
        """Sources and augmentation, for model cards and logs."""
        return {"train": self.train_specs, "val": self.val_specs,
                "curriculum": self.curriculum or None,
                "augment": asdict(self.augment_cfg) if self.augment_cfg else None}
