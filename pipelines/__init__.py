"""ephys.pipelines: the library behind the ``ephys`` CLI.

``core/`` is what every pipeline plugs into (it names none of them), ``blocks/`` the shared
building blocks (readers, signal processing, model builders, explanations), and one folder per
pipeline declares, in its ``__init__.py``, what it registers with the core.
"""

__version__ = "0.1.0"

#: The pipelines, in the order ``ephys`` lists them: one folder each, imported by
#: :func:`ephys.pipelines.core.registry.load_pipelines`. Adding a pipeline is a folder and a line here.
PIPELINES = ("sts", "spikes", "mer", "events", "lfp")
