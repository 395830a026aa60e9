"""What a dataset's samples and groups are called, for messages, logs and reports.

The core never names a pipeline's samples itself: a prepared dataset's ``manifest.json`` may say
(``sample_noun``, ``group_noun``), else its modality's declaration does
(:class:`ephys.pipelines.core.registry.Modality` ``sample_noun`` / ``group_noun``), else the
words are "sample" and "group".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Nouns", "plural", "nouns", "dataset_nouns", "GENERIC"]


def plural(noun: str) -> str:
    """English plural of a noun of the field (``cell`` -> ``cells``, ``patch`` -> ``patches``,
    ``assay`` -> ``assays``, ``recording`` -> ``recordings``)."""
    n = str(noun)
    if not n:
        return n
    if n.endswith(("s", "x", "z", "ch", "sh")):
        return n + "es"
    if n.endswith("y") and len(n) > 1 and n[-2] not in "aeiou":
        return n[:-1] + "ies"
    return n + "s"


@dataclass(frozen=True)
class Nouns:
    """The words for one sample and one group (the unit a split keeps on one side) of a dataset."""

    sample: str = "sample"
    group: str = "group"

    @property
    def samples(self) -> str:
        return plural(self.sample)

    @property
    def groups(self) -> str:
        return plural(self.group)

    def count(self, n: int, what: str = "sample") -> str:
        """``"1 cell"`` / ``"12 cells"`` (``what``: "sample" or "group"), with a thousands separator."""
        word = self.sample if what == "sample" else self.group
        return f"{int(n):,} {word if int(n) == 1 else plural(word)}"


GENERIC = Nouns()


def nouns(manifest: dict | None = None, modality=None) -> Nouns:
    """The nouns of a dataset: its manifest's ``sample_noun`` / ``group_noun``, else the
    modality's (the registered modality named by the manifest when ``modality`` is None), else
    "sample" and, for groups, the sample's word when every sample is its own group, else "group".
    Never raises."""
    manifest = manifest or {}
    if modality is None and manifest.get("modality"):
        try:
            from .registry import modality as find

            modality = find(manifest["modality"])
        except Exception:  # noqa: BLE001 - an unknown modality keeps the generic words
            modality = None
    sample = manifest.get("sample_noun") or getattr(modality, "sample_noun", "") or "sample"
    group = manifest.get("group_noun") or getattr(modality, "group_noun", "")
    if not group:
        samples = manifest.get("samples") or []
        own = bool(samples) and all(isinstance(s, dict) and s.get("group") in (None, s.get("id")) for s in samples)
        group = sample if own else "group"  # every sample its own group: a group is a sample
    return Nouns(str(sample), str(group))


def dataset_nouns(data_dir: str | Path | None) -> Nouns:
    """:func:`nouns` of the prepared dataset in ``data_dir`` (generic words when it is unreadable)."""
    if data_dir is None:
        return GENERIC
    try:
        from .runfolder import read_manifest

        return nouns(read_manifest(data_dir))
    except Exception:  # noqa: BLE001 - words only; the caller reports a missing dataset itself
        return GENERIC
