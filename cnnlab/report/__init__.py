"""Reports made from run and sweep folders: blocks built from the records (run_blocks, compare_blocks), written
by page.py as self-contained HTML, Markdown, LaTeX and PDF. Two parts also bring a run's model and data back
(cnnlab.engine.restore): prediction pictures and invariance's outputs."""
