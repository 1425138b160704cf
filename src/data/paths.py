"""Showing data paths in messages and logs.

A path given as bytes that are not valid UTF-8 (say ``data.root`` typed on a Latin-1 system) reaches
Python as a str with surrogate escapes (PEP 383). It works for opening files, but writing it to a
UTF-8 log file or stdout raises UnicodeEncodeError. ``printable`` shows those bytes as ``\\xff``
escapes and leaves every valid character as it is.
"""
import os


def printable(text) -> str:
    """``text`` (a str or path) with undecodable filename bytes written as \\xNN escapes."""
    return os.fsencode(str(text)).decode("utf-8", "backslashreplace")
