"""ephys.pipelines: the library behind the ``ephys`` CLI.

Readers, signal processing, CWT, datasets, models, training, metrics and reports,
plus one module per pipeline composing them.
"""

__version__ = "0.1.0"
