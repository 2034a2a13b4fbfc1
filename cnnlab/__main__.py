"""`python -m cnnlab`: the cnnlab command, as torchrun starts it (`torchrun ... -m cnnlab run EXPERIMENT`)."""

from cnnlab.cli import main

main()
