"""`python -m cnnexp` is the `cnnexp` command."""
from cnnexp.cli import main

main()
