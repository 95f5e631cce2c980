"""Reading what a user hands aif, within bounds: text files and YAML.

Workflows, experiment files, ``--set`` values and data files come from users (or from
another process) and are read before anything checks what they mean. Everything here
refuses, with an error naming the file, line and fix, what would otherwise exhaust
time or memory or end in a traceback: files that are not regular files or are too
large (``files``), and YAML that nests too deeply, expands aliases without bound,
repeats a key or holds values no loader should build (``safe_yaml``). One package for
every reader, so the workflow loader and the experiment loader cannot drift apart.

Layer: above ``aif.errors`` only; the workflow loader, the AIMs and the CLI use it.
"""
