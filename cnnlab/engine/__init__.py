"""Engine: train one run, nothing else (no figures, no reports; cnnlab.runner records how a run ends).

build       build_run: data, model, optimizer, task and monitored metric from a config
transfer    torchvision models: pretrained weights, the trainable selection per epoch, optimizer groups
trainer     the loop: epochs into a run folder, resumable from last.pt
evaluate    scoring a split: test-time augmentation, fixed-shape batches
average     running averages of the weights (EMA, lookahead), evaluated instead of the raw ones
startup     the clock's origin and the warm-up before the first step
tasks       losses and metric tallies (classification, per-pixel)
optim       learning-rate schedules, L1 penalty
checkpoint  atomic checkpoints and the policy that picks best.pt
summary     the layout of summary.json
peak        the machine's matmul peak per precision, measured once and cached
flags       torch's process-wide switches, set for one run and put back
restore     a finished run's model and data, for reports
distributed one run on several processes under torchrun: process group, collectives, DDP
syncbn      batch norm over the global batch on CPUs (torch's SyncBatchNorm is GPU-only)
loggers     train.log: TensorBoard event files and metrics.csv beside the run's own records
early_stop  train.early_stop: when a run stops improving, counted in last.pt
lr_find     the learning-rate range test on a built run
"""
