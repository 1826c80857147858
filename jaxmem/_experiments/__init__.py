"""Experiments: grids of configurations, sweeps over every device, the drivers of the two maps
(settings → rows → files), their tables and figures."""
