"""``python -m poetry_endpoints``: the same as the ``poetry-endpoints`` command."""

from .cli import main

if __name__ == "__main__":
    main()
