"""Schema helpers: which label fields a collection has, and checks of user-chosen fields.

Field names follow FiftyOne: a frame-level field of a video dataset is written
``"frames.<name>"``; everything else is a sample-level field.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

FRAMES_PREFIX = "frames."

# Fields FiftyOne owns; we never write into them.
RESERVED = {"id", "_id", "filepath", "metadata", "tags", "frames", "media_type", "created_at",
            "last_modified_at", "frame_number", "group", "_media_type", "_rand", "_dataset_id"}


def split_field(field: str) -> tuple[bool, str]:
    """``"frames.x"`` -> ``(True, "x")``; ``"x"`` -> ``(False, "x")``."""
    if not isinstance(field, str) or not field:
        raise ValueError(f"expected a field name (str), received {field!r}")
    if field.startswith(FRAMES_PREFIX):
        return True, field[len(FRAMES_PREFIX):]
    return False, field


def label_type_names(types: Iterable[type]) -> str:
    return " or ".join(t.__name__ for t in types)


def label_fields(collection: Any, types: Sequence[type], frames: bool | None = None) -> list[str]:
    """Names of the label fields of ``collection`` whose type is one of ``types``.

    ``frames``: True -> only frame fields (returned as ``"frames.<name>"``), False -> only
    sample fields, None -> both when the collection has frames.
    """
    import fiftyone as fo

    out: list[str] = []
    schemas = []
    if frames in (None, False):
        schemas.append(("", collection.get_field_schema()))
    if frames in (None, True) and _has_frames(collection):
        schemas.append((FRAMES_PREFIX, collection.get_frame_field_schema() or {}))
    for prefix, schema in schemas:
        for name, field in schema.items():
            if not isinstance(field, fo.EmbeddedDocumentField):
                continue
            if any(issubclass(field.document_type, t) for t in types):
                out.append(prefix + name)
    return sorted(out)


def _has_frames(collection: Any) -> bool:
    try:
        return collection._has_frame_fields()
    except Exception:  # older/newer FiftyOne: fall back to the media type
        return getattr(collection, "media_type", None) == "video"


def field_exists(collection: Any, field: str) -> bool:
    is_frame, name = split_field(field)
    if is_frame:
        if not _has_frames(collection):
            return False
        return name in (collection.get_frame_field_schema() or {})
    return name in collection.get_field_schema()


def field_type(collection: Any, field: str) -> type | None:
    """The label class stored in ``field`` (e.g. ``fo.Detections``) or None."""
    import fiftyone as fo

    is_frame, name = split_field(field)
    schema = (collection.get_frame_field_schema() or {}) if is_frame else collection.get_field_schema()
    f = schema.get(name)
    if f is None:
        return None
    if isinstance(f, fo.EmbeddedDocumentField):
        return f.document_type
    return type(f)


def require_label_field(collection: Any, field: str, types: Sequence[type], role: str) -> type:
    """Check that ``field`` exists and holds one of ``types``; returns its label class.

    Raises ValueError naming the role (e.g. "prompt field"), what was expected and what was
    found, and listing the fields that would fit.
    """
    if not field:
        raise ValueError(f"the {role} is required (expected a {label_type_names(types)} field)")
    is_frame, _ = split_field(field)
    if is_frame and not _has_frames(collection):
        raise ValueError(f"{role} {field!r} is a frame field but the collection has no frames "
                         f"(media type {collection.media_type!r})")
    if not field_exists(collection, field):
        fits = label_fields(collection, types)
        raise ValueError(f"{role} {field!r} does not exist; fields of type "
                         f"{label_type_names(types)}: {fits or 'none'}")
    t = field_type(collection, field)
    if t is None or not any(isinstance(t, type) and issubclass(t, k) for k in types):
        got = getattr(t, "__name__", repr(t))
        raise ValueError(f"{role} {field!r} holds {got}; expected {label_type_names(types)}")
    return t


def check_output_name(field: str) -> None:
    """Refuse FiftyOne's own fields and names that are not simple identifiers."""
    _, name = split_field(field)
    if name in RESERVED or name.startswith("_") or "." in name or not name.replace("_", "a").isalnum():
        raise ValueError(f"cannot write results into {field!r}: expected a new field name made of "
                         "letters, digits and '_' that is not one of FiftyOne's own fields")


def declare_field(dataset: Any, field: str, doc_type: type | None = None, ftype: Any = None) -> None:
    """Add ``field`` to the schema if missing (safe when another worker adds it concurrently)."""
    import fiftyone as fo

    is_frame, name = split_field(field)
    if field_exists(dataset, field):
        return
    kwargs: dict[str, Any] = {}
    if doc_type is not None:
        kwargs = {"ftype": fo.EmbeddedDocumentField, "embedded_doc_type": doc_type}
    else:
        kwargs = {"ftype": ftype or fo.StringField}
    try:
        if is_frame:
            dataset.add_frame_field(name, **kwargs)
        else:
            dataset.add_sample_field(name, **kwargs)
    except Exception:
        dataset.reload()
        if not field_exists(dataset, field):
            raise
    keep_earlier_views_loadable(dataset)


def keep_earlier_views_loadable(dataset: Any) -> None:
    """Let views that were used before a reload load samples with fields added since.

    ``Dataset.reload()`` (which FiftyOne's operator executor also does before every operator,
    and which runs here to see other workers' changes) builds new document classes; a view that
    had already loaded samples keeps the old class, which knows nothing of fields added later,
    so it then fails with ``FieldDoesNotExist`` even after another ``reload()``. This declares
    the current classes' fields on those older classes of the same dataset. Best effort: a
    FiftyOne version without these internals leaves it as it was (and logs why).
    """
    try:
        from fiftyone.core.odm import DatasetFrameDocument, DatasetSampleDocument, SampleFieldDocument

        for base, current in ((DatasetSampleDocument, getattr(dataset, "_sample_doc_cls", None)),
                              (DatasetFrameDocument, getattr(dataset, "_frame_doc_cls", None))):
            if current is None:
                continue
            for old in base.__subclasses__():
                if old is current or old.__name__ != current.__name__:
                    continue
                for fname in current._fields_ordered:
                    if fname not in old._fields:
                        old._declare_field(dataset, fname, SampleFieldDocument.from_field(current._fields[fname]))
    except Exception as exc:  # pragma: no cover - depends on FiftyOne internals
        logging.getLogger(__name__).debug("could not update earlier views' document classes: %s", exc)


def require_media(collection: Any, allowed: Sequence[str], what: str) -> str:
    """Check the collection's media type; grouped datasets get a hint to pick a slice."""
    media = collection.media_type
    if media in allowed:
        return media
    hint = ""
    if media == "group":
        hint = ("; this is a grouped dataset: pick a slice first, e.g. "
                "view.select_group_slices('left') (images of a slice can be tracked as a "
                "sequence with sequence_by='group.id' and order_by=<your frame-order field>)")
    raise ValueError(f"{what} needs a collection of {' or '.join(allowed)}; this one holds "
                     f"{media!r}{hint}")
