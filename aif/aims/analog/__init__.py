"""The analog domain: AIMs that run aihwkit experiments and an IMC chip.

- The experiment as data: ``spec`` and ``model_spec`` (pydantic), ``records`` (the
  record types on their ports), ``experiments`` (the experiment-source AIM).
- From data to aihwkit: ``aihwkit_names``, ``overrides``, ``rpu_configs`` (with
  ``rpu_layers``: per-layer configurations), ``layers``,
  ``torch_models`` (zoo and user torch models through ``convert_to_analog``; the
  architectures in ``zoo``), ``build``, ``datasets`` (with ``data_files``: CIFAR, npz,
  image folders; and ``augment``: crop and flip of training batches).
- The AIMs: ``validator``, ``simulator`` (with ``capabilities``, ``runs``, ``training``,
  ``inference``, ``checkpoint``), ``reporter`` (with ``report_plots``), ``digits``
  (the first demo's source and classifier), and ``imc_chip/``.

torch and aihwkit are imported where a function first needs them, so validating an
experiment's shape and routing it stay cheap. May import: ``aif.aims`` and below.
"""
