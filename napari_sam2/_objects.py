"""The object list: the things being segmented, each with an id (its label value), a name
and a colour. Plain Python plus psygnal signals, so it is tested without Qt.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace
from typing import Dict, Iterator, List, Optional, Tuple

from psygnal import Signal

__all__ = ["SegObject", "ObjectList", "default_color"]

RGBA = Tuple[float, float, float, float]


def default_color(obj_id: int) -> RGBA:
    """A distinct, saturated colour per id (golden-ratio hue steps), RGBA in [0, 1]."""
    h = (obj_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
    return (r, g, b, 1.0)


@dataclass(frozen=True)
class SegObject:
    """One object: ``obj_id`` is both the SAM 2 object id and its value in Labels layers."""

    obj_id: int
    name: str
    color: RGBA


class ObjectList:
    """Ordered objects with a current selection.

    Signals:
        changed(): objects were added, removed, renamed or recoloured.
        selected(int): the current object id changed (0 when the list is empty).
    """

    changed = Signal()
    selected = Signal(int)

    def __init__(self) -> None:
        self._objs: Dict[int, SegObject] = {}
        self._current: int = 0

    # -- queries ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._objs)

    def __iter__(self) -> Iterator[SegObject]:
        return iter(list(self._objs.values()))

    def __contains__(self, obj_id: object) -> bool:
        return obj_id in self._objs

    def __getitem__(self, obj_id: int) -> SegObject:
        if obj_id not in self._objs:
            raise KeyError(f"no object with id {obj_id}; ids are {self.ids}")
        return self._objs[obj_id]

    @property
    def ids(self) -> List[int]:
        return list(self._objs)

    @property
    def current(self) -> Optional[SegObject]:
        return self._objs.get(self._current)

    @property
    def current_id(self) -> int:
        """The selected id, 0 when there is none."""
        return self._current if self._current in self._objs else 0

    def next_id(self) -> int:
        return max(self._objs, default=0) + 1

    # -- edits ------------------------------------------------------------------------
    def add(self, name: Optional[str] = None, obj_id: Optional[int] = None,
            color: Optional[RGBA] = None, select: bool = True) -> SegObject:
        """Add an object (id: the next free one) and, by default, select it."""
        oid = self.next_id() if obj_id is None else int(obj_id)
        if oid <= 0:
            raise ValueError(f"object ids must be positive integers, got {oid}")
        if oid in self._objs:
            raise ValueError(f"object id {oid} already exists")
        obj = SegObject(oid, name or f"object {oid}", color or default_color(oid))
        self._objs[oid] = obj
        self.changed.emit()
        if select:
            self.select(oid)
        return obj

    def ensure(self, obj_id: int) -> SegObject:
        """The object with this id, created (unselected) if missing."""
        return self._objs[obj_id] if obj_id in self._objs else self.add(obj_id=obj_id, select=False)

    def select(self, obj_id: int) -> None:
        if obj_id not in self._objs:
            raise KeyError(f"no object with id {obj_id}")
        if obj_id != self._current:
            self._current = obj_id
            self.selected.emit(obj_id)

    def rename(self, obj_id: int, name: str) -> None:
        self._objs[obj_id] = replace(self[obj_id], name=str(name))
        self.changed.emit()

    def recolor(self, obj_id: int, color: RGBA) -> None:
        if len(color) not in (3, 4):
            raise ValueError(f"colour must be RGB or RGBA in [0, 1], got {color}")
        rgba = tuple(float(c) for c in color) + ((1.0,) if len(color) == 3 else ())
        self._objs[obj_id] = replace(self[obj_id], color=rgba)  # type: ignore[arg-type]
        self.changed.emit()

    def remove(self, obj_id: int) -> SegObject:
        obj = self._objs.pop(obj_id)
        self.changed.emit()
        if obj_id == self._current:
            self._current = next(iter(self._objs), 0)
            self.selected.emit(self._current)
        return obj

    # -- snapshots (undo) -------------------------------------------------------------
    def snapshot(self) -> Tuple[Tuple[SegObject, ...], int]:
        return tuple(self._objs.values()), self._current

    def restore(self, snap: Tuple[Tuple[SegObject, ...], int]) -> None:
        objs, cur = snap
        self._objs = {o.obj_id: o for o in objs}
        self.changed.emit()
        self._current = cur if cur in self._objs else next(iter(self._objs), 0)
        self.selected.emit(self._current)

    def color_dict(self) -> Dict[Optional[int], RGBA]:
        """A napari ``DirectLabelColormap`` colour dict (None: every other value)."""
        d: Dict[Optional[int], RGBA] = {None: (0.6, 0.6, 0.6, 1.0), 0: (0, 0, 0, 0)}
        d.update({o.obj_id: o.color for o in self._objs.values()})
        return d
