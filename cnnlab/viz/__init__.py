"""Figures: training curves, filters, activations, predictions (matplotlib, Agg backend)."""
import matplotlib

matplotlib.use("Agg")
