"""The Optuna side of `--optuna TRIALS`: the sampler and pruner named in the experiment's search section,
and one trial's values drawn from its search space."""

from __future__ import annotations

import optuna

from cnnlab import metrics


def direction(search: dict) -> str:
    return "minimize" if metrics.mode(search["metric"]) == "min" else "maximize"


def objective_name(search: dict) -> str:
    """'best validation accuracy' or 'lowest validation loss': what a search optimises, in words."""
    return metrics.best_words(search["metric"])


def sampler(search: dict, seed: int) -> optuna.samplers.BaseSampler:
    if search["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, search["startup_trials"]))


def pruner(search: dict, epochs: int) -> optuna.pruners.BasePruner:
    """Pruners compare the per-epoch validation metric a trial reports with the other trials' at that epoch."""
    if search["pruner"] == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=search["startup_trials"], n_warmup_steps=search["warmup_epochs"]
        )
    if search["pruner"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, search: dict) -> dict:
    """Draw every searched key (a re-enqueued trial gets back the values it had)."""
    values = {}
    for key, p in search["params"].items():
        if p["type"] == "categorical":
            values[key] = trial.suggest_categorical(key, p["choices"])
        elif p["type"] == "int":
            values[key] = trial.suggest_int(key, int(p["low"]), int(p["high"]), step=int(p["step"] or 1), log=p["log"])
        else:
            values[key] = trial.suggest_float(key, p["low"], p["high"], step=p["step"], log=p["log"])
    return values


def objective(history: list[dict], search: dict):
    """The value of a finished (or pruned) trial: the best value of its metric over the epochs it ran."""
    values = [row[search["metric"]] for row in history if row.get(search["metric"]) is not None]
    if not values:
        return None
    return min(values) if metrics.mode(search["metric"]) == "min" else max(values)
