"""Predictors that wrap a :class:`~sam2_plugins.modeling.sam2.SAM2Model` (never subclass it)."""
