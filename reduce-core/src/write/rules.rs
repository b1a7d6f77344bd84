//! CPython's rules for containers, shared by both writers.
