"""`python -m lipsync_render` runs the CLI."""

from lipsync_render.cli.app import main

if __name__ == "__main__":
    main()
