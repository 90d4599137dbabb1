"""`python -m healthkit`: the console entry (healthkit/launch.py), which starts measuring the disk before the CLI loads."""

from .launch import main

main()
