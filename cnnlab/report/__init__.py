"""Reports: self-contained HTML (images embedded) and Markdown, made from run and sweep folders. Two parts
also bring a run's model and data back (cnnlab.engine.restore): prediction pictures and invariance's outputs."""
