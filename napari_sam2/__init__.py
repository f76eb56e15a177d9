"""napari-sam2: interactive SAM 2 segmentation of images, Z stacks, time-lapses and 3D+t.

The plugin is declared in ``napari.yaml`` (npe2): a dock widget (*Plugins > SAM 2*) and sample
data. Public modules: :mod:`napari_sam2.controller` (``SAM2Controller``: everything the dock
does, without Qt or a viewer, for scripts and tests) and :mod:`napari_sam2.sample_data`.
Importing this package imports neither Qt nor napari nor torch; the dock's module does, when
napari loads it.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
