"""Analysis: what a network costs, layer by layer.

count      the rows of a real module (one hooked forward pass on meta stand-ins)
symbolic   the same rows in formulas, from a spec
training   one training step: memory estimated and measured, MACs
whatif     the network changed (input scaled, separable convolutions, no batch norm)
explain    the shape arithmetic of every layer
finetune   whole network versus last layer only, measured
subject    the MODEL argument of `cnnlab summary` and `cnnlab cost` (zoo, spec, experiment, torchvision) made buildable
conventions cnnlab's counting conventions, and what torchinfo, fvcore and Keras print instead (--as)
summary    the pipeline behind `cnnlab summary`; render writes its tables
layers     the per-layer table a run records
"""
