"""napari-sam2: interactive SAM 2 segmentation of images, Z stacks, time-lapses and 3D+t.

The plugin is declared in ``napari.yaml`` (npe2): a dock widget
(:class:`napari_sam2._widget.SAM2Widget`) and sample data. Importing this package imports
neither Qt nor napari nor torch; the widget module does, when napari loads it.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
