"""`python -m dcbench` (and `torchrun -m dcbench`) runs the CLI."""

from dcbench.cli import main

if __name__ == "__main__":
    main()
