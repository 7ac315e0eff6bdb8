"""Pictures: mask overlays and training curves."""
