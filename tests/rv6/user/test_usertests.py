"""usertests on the fake kernel: every case passes; a broken kernel makes it say so."""

from __future__ import annotations

import errno

import pytest

from . import fake_ulib


def test_all_usertests_pass(rv6):
    st, out = rv6.run("usertests")
    assert out.splitlines()[-1] == "ALL TESTS PASSED", out
    assert st == 0 and out.count(": OK") == 39


def test_usertests_in_a_subdirectory(rv6):
    """The cases work relative to any working directory."""
    st, out = rv6.sh("mkdir /ut; cd /ut; usertests subdir iref rmdot dirtest iput exitiput")
    assert st == 0 and out.endswith("ALL TESTS PASSED\n"), out


def test_one_case_by_name_and_the_list(rv6):
    st, out = rv6.run("usertests", "pipe1")
    assert st == 0 and out == "usertests starting\ntest pipe1: OK\nALL TESTS PASSED\n"
    st, out = rv6.run("usertests", "-l")
    assert st == 0 and len(out.split()) == 39 and "outofinodes" in out.split()
    st, out = rv6.run("usertests", "nosuchcase")
    assert st == 2 and "no case nosuchcase" in out


def test_a_failing_case_fails_the_run(rv6, monkeypatch):
    """A kernel whose unlink forgets to remove: the cases that check it fail, and so does
    the run, naming them."""
    monkeypatch.setattr(fake_ulib, "unlink", lambda path: None)
    st, out = rv6.run("usertests", "linktest", "opentest")
    assert st == 1
    assert "test linktest: FAILED" in out and "test opentest: OK" in out
    assert "SOME TESTS FAILED: linktest" in out


def test_a_crashing_case_fails_alone(rv6, monkeypatch):
    def broken_pipe():
        raise fake_ulib.Rv6Error(errno.EMFILE, "no pipes today")
    monkeypatch.setattr(fake_ulib, "pipe", broken_pipe)
    st, out = rv6.run("usertests", "pipe1", "bigfile")
    assert st == 1 and "test pipe1: FAILED" in out and "test bigfile: OK" in out
