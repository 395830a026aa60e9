"""What every NWB file ephys writes says about its subject.

An output NWB file (events, a sorting) is a new file derived from a source recording. Its
``Subject`` is copied from the source when the source is NWB and has one; otherwise it is the NWB
spelling of "not stated" — sex ``"U"`` (unknown) and age ``"P0D/"`` (an open ISO 8601 range: at
least 0 days), with no species guessed — so nwbinspector finds no critical issue and nothing about
the animal is invented (NWB best practices: https://nwbinspector.readthedocs.io, "Subject").
"""

from __future__ import annotations

from pathlib import Path

SUBJECT_FIELDS = ("age", "description", "genotype", "sex", "species", "subject_id", "weight", "strain",
                  "date_of_birth")


def subject_of(source: str | Path):
    """A ``pynwb.file.Subject`` for a file derived from ``source``: a copy of the source's own when
    ``source`` is a readable NWB file with a subject, else the "not stated" subject described in the
    module docstring. Never raises for an unreadable source (the subject is a description, the
    derived data do not depend on it)."""
    from pynwb.file import Subject

    src = Path(str(source))
    if src.suffix.lower() == ".nwb" and src.is_file():
        try:
            from pynwb import NWBHDF5IO

            with NWBHDF5IO(str(src), "r") as io:
                s = io.read().subject
                if s is not None:
                    return Subject(**{k: getattr(s, k) for k in SUBJECT_FIELDS if getattr(s, k, None) is not None})
        except Exception:  # noqa: BLE001 -- fall back to "not stated"
            pass
    return Subject(subject_id="not stated in the source recording", sex="U", age="P0D/",
                   description=f"the subject of {src.name}; the source file does not describe it")
