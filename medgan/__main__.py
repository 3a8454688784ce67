"""``python -m medgan`` (and ``torchrun -m medgan``): the same CLI as the ``medgan`` command."""

from medgan.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
