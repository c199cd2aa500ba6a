import sys

from .cli import main

if __name__ == "__main__":  # the multi-process embedding pool starts its workers by importing this module again
    sys.exit(main())
