"""Writes cpython.pickle, the pickle the main example loads.

Run: python3 examples/data/make_cpython_pickle.py
"""
import os
import pickle

shared = ["shared", "list"]
value = {
    "name": "reduce",
    "protocols": (0, 1, 2, 3, 4, 5),
    "pi": 3.141592653589793,
    "big": 2**100,
    "bytes": b"\x00\xffpickle",
    "set": {1, 2, 3},
    "nested": [shared, shared, None, True],
}
value["self"] = value  # a cycle: the dict contains itself
with open(os.path.join(os.path.dirname(__file__), "cpython.pickle"), "wb") as f:
    f.write(pickle.dumps(value, protocol=5))
