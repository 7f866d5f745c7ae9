"""`python -m study.train ...`: the `study train` command, for launchers such as torchrun that start a module."""

from study.cli import main

if __name__ == "__main__":
    main(["train", *__import__("sys").argv[1:]])
