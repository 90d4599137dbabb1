"""`python -m healthkit`: the console entry (healthkit/console.py), which starts measuring the disk before the CLI loads."""

from healthkit.console import main

main()
