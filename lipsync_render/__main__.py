"""`python -m lipsync_render` runs the CLI."""

from lipsync_render.cli import main

if __name__ == "__main__":
    main()
