"""Desktop-side training of the hair segmentation models (needs the [train] extra: torch)."""
