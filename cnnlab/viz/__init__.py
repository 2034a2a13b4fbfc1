"""Figures drawn from arrays with matplotlib, each on its own Agg canvas (no screen needed, and pyplot never
involved, so a notebook's backend and open figures stay as they were): training curves, band plots over seeds,
and prediction pictures (colourization rows, segmentation overlays)."""
