"""A safe reader of PyTorch ``state_dict`` files (``torch.save``, the zip format), without torch.

Published models of other tools ship their trained parameters as ``.pth`` files: a zip archive
holding ``<name>/data.pkl`` (a pickle of an ``OrderedDict`` of parameter name -> tensor), one
``<name>/data/<key>`` file per tensor storage (raw little-endian numbers) and ``<name>/byteorder``
(PyTorch >= 1.6, ``torch.save``'s default ``_use_new_zipfile_serialization=True``).

A pickle can run arbitrary code when loaded; this reader runs none. Its unpickler resolves only
the names a tensor-only state dict refers to — ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor`` / ``_rebuild_parameter`` and the
``torch.<Type>Storage`` classes — to small functions of this module that build numpy arrays; any
other name (``os.system``, a model class, ...) refuses the file. This is the same allow-list idea
as ``torch.load(weights_only=True)``, which ML-STIM's own code uses to read its parameters.

Why not torch itself: it would add a ~200-MB dependency (a several-GB CUDA build where pip does not
find the CPU wheel) to read a few hundred numbers. ``tests/test_torch_state.py`` checks this reader
against files written by ``torch.save`` (and against ``torch.load`` when torch is installed).
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ...core.errors import EphysError

__all__ = ["read_state_dict"]

#: storage classes of a state dict -> numpy dtypes (bfloat16 has no numpy type: refused)
STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                  "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                  "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _Storage:
    """A persistent storage reference: dtype, the archive key of its bytes, element count."""

    def __init__(self, dtype, key: str, numel: int):
        self.dtype, self.key, self.numel = np.dtype(dtype), str(key), int(numel)


class _StateDict(OrderedDict):
    """``collections.OrderedDict`` as unpickled here: it accepts (and drops) the ``_metadata`` state."""

    def __setstate__(self, state):
        self.metadata = state.get("_metadata") if isinstance(state, dict) else None


def _storage_type(name: str):
    def make(*_a, **_k):  # never called: the class is only a dtype marker in the persistent id
        raise pickle.UnpicklingError(f"{name} is not callable here")

    make.dtype = STORAGE_DTYPES[name]
    return make


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, arrays):
        super().__init__(fh)
        self._arrays = arrays  # key -> raw bytes as a numpy array of its dtype (filled lazily)

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return _StateDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return self._rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad=False, backward_hooks=None: data
        if module == "torch" and name in STORAGE_DTYPES:
            return _storage_type(name)
        raise pickle.UnpicklingError(f"refers to {module}.{name}, which a tensor-only state dict does not")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.60}")
        _, kind, key, _location, numel = pid
        dtype = getattr(kind, "dtype", None)
        if dtype is None:
            raise pickle.UnpicklingError("a storage of an unknown type")
        return _Storage(dtype, key, numel)

    def _rebuild_tensor(self, storage, offset, size, stride, *rest):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor without a storage")
        flat = self._arrays(storage)
        size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        if size and (offset + sum((n - 1) * s for n, s in zip(size, stride)) >= flat.size or min(size) < 0):
            raise pickle.UnpicklingError("a tensor reaches beyond its storage")
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                               strides=tuple(s * flat.itemsize for s in stride))
        return np.array(view)  # a copy, C-contiguous


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state-dict file, as numpy arrays (shapes as in PyTorch: an
    ``nn.Linear`` weight is ``(out_features, in_features)``).

    Parameters
    ----------
    path : a ``.pth`` / ``.pt`` file written by ``torch.save(model.state_dict(), path)``.

    Returns
    -------
    dict name -> ndarray (float32 for float tensors), in the file's order.

    Raises
    ------
    EphysError
        Not a zip-format PyTorch file (the legacy pre-1.6 format is not read), a pickle that
        refers to anything but tensors (nothing of it is run), a missing or short storage, a
        big-endian file, a tensor type numpy has no type for.
    """
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise EphysError(f"not a PyTorch zip file ({exc}); only torch.save's zip format (PyTorch >= 1.6) is "
                         "read", path) from None
    with zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise EphysError("not a PyTorch state-dict file (no single data.pkl in the archive)", path)
        prefix = pkl[0][: -len("data.pkl")]
        order = prefix + "byteorder"
        if order in names and zf.read(order).strip() not in (b"little", b""):
            raise EphysError("a big-endian PyTorch file; not read here", path)
        cache: dict[str, np.ndarray] = {}

        def arrays(st: _Storage) -> np.ndarray:
            if st.key not in cache:
                name = f"{prefix}data/{st.key}"
                if name not in names:
                    raise pickle.UnpicklingError(f"storage {st.key} missing from the archive")
                raw = zf.read(name)
                if len(raw) < st.numel * st.dtype.itemsize:
                    raise pickle.UnpicklingError(f"storage {st.key} is shorter than its {st.numel} elements")
                cache[st.key] = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<"), count=st.numel)
            return cache[st.key]

        try:
            with zf.open(pkl[0]) as fh:
                obj = _Unpickler(fh, arrays).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise EphysError(f"not a tensor-only PyTorch state dict: {exc}", path) from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
        raise EphysError("not a state dict (a mapping of parameter names to tensors)", path)
    return {k: v for k, v in obj.items()}
