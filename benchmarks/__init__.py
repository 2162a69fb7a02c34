"""Scripts that print speed, memory and shortcut figures (FLOPs, step timings, the colour probe)."""
