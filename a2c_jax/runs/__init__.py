"""the host side of one run: the host loop, checkpoints, records, plots, trackers, memory estimates, distributed."""
