"""Figures drawn from arrays with matplotlib's Agg backend (no screen needed): training curves, band plots over
seeds, and prediction pictures (colourization rows, segmentation overlays)."""
import matplotlib

matplotlib.use("Agg")
