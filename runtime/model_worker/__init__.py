"""The model worker: runs one non-ONNX pipeline step in the model's own environment.

``python <this folder>`` (see ``__main__.py``) starts it; it speaks the frames of
``protocol.py`` on stdin/stdout with its parent (``orchzip_shim.model_workers.WorkerStep``).
It loads the model once with the loader of its framework (``loaders/<framework>.py``: each
has ``load(path, spec) -> callable(dict[str, np.ndarray]) -> dict[str, np.ndarray]``), then
for each Arrow record batch it receives: converts the columns to NumPy arrays as Wallaroo's
Python runtime does (``arrays.py``), calls the model, converts the returned dict back to a
batch of the output schema and sends it.

It runs on Python 3.10 with numpy and pyarrow plus whatever the model needs, and imports
nothing of orchzip: inside the worker this folder is loaded as a private package, and
``standins/`` (our own small stand-in of Wallaroo's ``mac`` interface, which Python and BYOP
models import) is put on ``sys.path``.
"""
