"""The entry-point cache (healthkit/system/entrypoints.py): one scan, then reused until a sys.path folder changes.

The working directory is on sys.path (`-c`, `-m`), and cron runs in a home folder whose mtime moves with every
file written there; the cache must survive that, and still notice a distribution's metadata appearing there.
"""

from __future__ import annotations

import os
import sys

import pytest

from healthkit.system import entrypoints


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    work = tmp_path / "home"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    scans = []
    real = entrypoints._scan
    monkeypatch.setattr(entrypoints, "_scan", lambda: scans.append(1) or real())
    return work, scans


def test_a_second_run_reads_the_cache(cache):
    _, scans = cache
    first = entrypoints.entry_points("healthkit.checks")
    assert entrypoints.entry_points("healthkit.checks") == first and len(scans) == 1


def test_files_written_in_the_working_directory_keep_the_cache(cache):
    work, scans = cache
    entrypoints.entry_points("healthkit.checks")
    (work / ".bash_history").write_text("ls\n")
    os.utime(work, (1, 1))
    entrypoints.entry_points("healthkit.checks")
    assert len(scans) == 1


def test_metadata_appearing_in_the_working_directory_scans_again(cache):
    work, scans = cache
    entrypoints.entry_points("healthkit.checks")
    (work / "plugin-0.1.dist-info").mkdir()
    entrypoints.entry_points("healthkit.checks")
    assert len(scans) == 2


def test_an_installed_folder_changing_scans_again(cache, tmp_path, monkeypatch):
    _, scans = cache
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    entrypoints.entry_points("healthkit.checks")
    os.utime(site, (2, 2))
    entrypoints.entry_points("healthkit.checks")
    assert len(scans) == 2
