"""The SAM 2 ``nn.Module`` blocks, one per file; :class:`sam2.SAM2Model` holds them."""
