"""Analysis: what a network costs, layer by layer."""
