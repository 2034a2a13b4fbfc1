"""Sweeps: grids of variants over seeds (or an Optuna search), run by workers that share a study through
Optuna's storage; the runs are ordinary run folders, and statistics read those folders only."""
