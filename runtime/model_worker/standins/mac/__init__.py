"""orchzip's own stand-in for the parts of Wallaroo's ``mac`` package that models import.

Wallaroo's Python and BYOP models import ``mac.types.InferenceData``,
``mac.inference.Inference``, ``mac.inference.creation.InferenceBuilder`` and
``mac.config.inference.CustomInferenceConfig``; Wallaroo's runtime provides them. This is a
small implementation of that interface, written for local runs (the real package ships inside
the wallaroo wheel, whose licence does not allow bundling it). Only the model worker puts it
on ``sys.path``, after the model environment's own packages.
"""
