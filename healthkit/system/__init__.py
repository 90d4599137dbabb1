"""The operating system, seen safely: bounded file reads, processes, shell quoting, entry points, redaction.

The bottom layer: it imports nothing else from healthkit (tests/test_architecture.py holds the order).
"""
