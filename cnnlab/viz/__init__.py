"""Figures from arrays (matplotlib, Agg backend): training curves, band plots over seeds, prediction pictures."""
import matplotlib

matplotlib.use("Agg")
