"""Torch models from the zoo or from the environment, converted by aihwkit.

``model: {torch: package.module:ClassOrFactory, args: {...}}`` imports the factory
from the Python environment the simulator runs in, as a class-path AIM is imported
(the basic profile trusts the environment; nothing is fetched), and calls it with
``args``, checked against its signature. ``model: {zoo: NAME, args: {...}}`` builds one
of :mod:`aif.aims.analog.zoo`'s architectures for the data's shape and classes. Both
give a digital torch model that aihwkit's own ``convert_to_analog(model, rpu_config)``
converts: every ``Linear`` and ``Conv1d/2d/3d`` becomes an analog layer with the
experiment's RPU configuration (``torch.nn.LSTM`` is not converted by aihwkit 1.2.0),
except the modules ``exclude`` names (``fnmatch`` patterns on module names), and the
root is wrapped in aihwkit's ``AnalogWrapper`` so training, checkpoints and drift
inference use it as they use a layer list.

Every fault is a problem at the field to fix, never a traceback: ``model.torch`` (the
module does not import, the name is missing, the factory raises or does not return a
module, no layer converts), ``model.args.<name>`` (an argument the factory does not
take, a zoo argument out of range), ``model.zoo`` (an unknown name), ``model.exclude.<i>``
(a pattern that matches nothing). :func:`model_problems` also runs the digital model on
one dummy batch of the data's shape, so data that does not fit the model is refused
before anything trains.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from aif.aims.analog import zoo
from aif.aims.analog.aihwkit_names import describe, family_of_class
from aif.aims.analog.layers import shape_text
from aif.aims.analog.model_spec import ModelSpec
from aif.aims.analog.overrides import call_with
from aif.aims.analog.rpu_layers import match, plain, unmatched
from aif.errors import ExperimentError

Problem = tuple[str, str]
Shape = tuple[int, ...]
#: The torch modules aihwkit 1.2.0's ``convert_to_analog`` replaces by default.
CONVERTIBLE = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_RECURRENT = (torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN)
#: The class count a zoo model gets when neither the data nor ``args`` says.
_DEFAULT_CLASSES = 10


def _fail(problems: list[Problem]) -> ExperimentError:
    return ExperimentError("the model cannot be built as written", problems)


def source_path(spec: ModelSpec, path: str = "model") -> str:
    """``model.zoo`` or ``model.torch``: the field a whole-model problem points at."""
    return f"{path}.{spec.source}"


def model_name(spec: ModelSpec) -> str:
    """``zoo model 'resnet'`` or ``tests.helpers.torch_models:TinyNet``, for messages."""
    return f"zoo model {spec.zoo!r}" if spec.zoo is not None else str(spec.torch)


def load_factory(target: str, where: str) -> Callable[..., Any]:
    """Import ``package.module:Name`` (``Name`` may be dotted); ExperimentError if not."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a module that fails while importing is the same fault
        raise _fail(
            [
                (
                    where,
                    f"cannot import module {module_name!r} ({describe(exc)}); is the package "
                    "installed in the simulator's environment?",
                )
            ]
        ) from exc
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            owner = module_name if obj is module else f"{module_name}:{attr}"
            raise _fail([(where, f"{owner} has no {part!r}{hint}")])
        obj = getattr(obj, part)
    if not callable(obj):
        raise _fail([(where, f"{target} is a {type(obj).__name__}, not a class or factory")])
    return obj


def _call_user_factory(spec: ModelSpec, path: str) -> torch.nn.Module:
    where = f"{path}.torch"
    assert spec.torch is not None
    factory = load_factory(spec.torch, where)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: pass args as they are
        signature = None
    if signature is not None and any(
        p.kind is p.VAR_KEYWORD for p in signature.parameters.values()
    ):
        kwargs, problems = dict(spec.args), list[Problem]()
    else:
        kwargs, problems = call_with(factory, spec.args, f"{path}.args")
    if problems:
        raise _fail(problems)
    call = f"{spec.torch.partition(':')[2]}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    try:
        model = factory(**kwargs)
    except Exception as exc:  # the user's code refuses its arguments
        raise _fail(
            [(where, f"{call} raises {describe(exc)}; fix its code or 'model.args'")]
        ) from exc
    if not isinstance(model, torch.nn.Module):
        raise _fail([(where, f"{call} returns a {type(model).__name__}, not a torch.nn.Module")])
    return model


def digital_model(
    spec: ModelSpec, sample_shape: Shape, classes: int | None, path: str = "model"
) -> torch.nn.Module:
    """The zoo or torch model before conversion, with its pre-trained weights if given.

    Raises ExperimentError with every fault.
    """
    model = _architecture(spec, sample_shape, classes, path)
    if spec.weights is not None:
        from aif.aims.analog.pretrained import load_weights_into

        problems = load_weights_into(model, Path(spec.weights), f"{path}.weights")
        if problems:
            raise _fail(problems)
    return model


def _architecture(
    spec: ModelSpec, sample_shape: Shape, classes: int | None, path: str
) -> torch.nn.Module:
    if spec.torch is not None:
        return _call_user_factory(spec, path)
    assert spec.zoo is not None
    problems = zoo.zoo_problems(spec.zoo, spec.args, path)
    given = spec.args.get("classes")
    if not problems and classes is not None and given is not None and given != classes:
        problems.append(
            (
                f"{path}.args.classes",
                f"is {given} but the dataset has {classes} classes; set {classes} or leave it out",
            )
        )
    if problems:
        raise _fail(problems)
    n = classes if classes is not None else (given or _DEFAULT_CLASSES)
    try:
        return zoo.build_zoo_model(spec.zoo, spec.args, sample_shape, n, path)
    except ValueError as exc:  # the architecture does not fit the data (too small an image)
        raise _fail([(f"{path}.zoo", f"{exc}; use larger images or another model")]) from exc


def _excluded(
    model: torch.nn.Module, spec: ModelSpec, path: str
) -> tuple[list[str], list[Problem]]:
    """The module names ``exclude`` matches, and a problem per pattern matching nothing."""
    names = [name for name, _ in model.named_modules() if name]
    matched: list[str] = []
    problems: list[Problem] = []
    for i, pattern in enumerate(spec.exclude):
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            problems.append(
                (f"{path}.exclude.{i}", f"{pattern!r} matches no module (modules: {shown})")
            )
        matched += [n for n in hits if n not in matched]
    return matched, problems


def _convertible(model: torch.nn.Module, excluded: list[str]) -> list[str]:
    """Names of the modules ``convert_to_analog`` will make analog."""

    def kept(name: str) -> bool:
        return not any(name == e or name.startswith(e + ".") for e in excluded)

    return [n for n, m in model.named_modules() if isinstance(m, CONVERTIBLE) and kept(n)]


def _no_analog_layer(model: torch.nn.Module, spec: ModelSpec, path: str) -> Problem:
    after = " that 'exclude' leaves" if spec.exclude else ""
    recurrent = [n for n, m in model.named_modules() if isinstance(m, _RECURRENT)]
    hint = (
        f"; aihwkit 1.2.0 does not convert torch.nn.LSTM/GRU/RNN ({', '.join(recurrent)}): "
        "build them from aihwkit.nn.AnalogRNN or use 'zoo: lstm'"
        if recurrent
        else ""
    )
    return (
        source_path(spec, path),
        f"{model_name(spec)} has no layer{after} aihwkit can convert to analog "
        f"(Linear, Conv1d, Conv2d, Conv3d){hint}",
    )


def convert(
    model: torch.nn.Module,
    spec: ModelSpec,
    rpu_config: Any,
    path: str = "model",
    rpu_path: str = "rpu",
) -> torch.nn.Module:
    """``convert_to_analog(model, rpu_config)``, leaving the ``exclude`` d modules digital."""
    from aihwkit.nn.conversion import convert_to_analog

    excluded, problems = _excluded(model, spec, path)
    convertible = _convertible(model, excluded)
    if not convertible:
        problems.append(_no_analog_layer(model, spec, path))
    problems += unmatched(rpu_config, convertible, rpu_path)
    if problems:
        raise _fail(problems)
    base = plain(rpu_config)

    def per_layer(name: str, module: torch.nn.Module, config: Any) -> Any:
        chosen = match(rpu_config, name)  # per-layer configurations by module name
        return config if chosen is None else copy.deepcopy(chosen)

    try:
        analog: torch.nn.Module = convert_to_analog(
            model,
            base,
            exclude_modules=excluded,
            inplace=True,
            specific_rpu_config_fun=per_layer,
        )
    except Exception as exc:  # aihwkit refuses this configuration for these tiles
        family = family_of_class(type(rpu_config))
        raise _fail(
            [(rpu_path, f"aihwkit cannot convert {model_name(spec)} as {family}: {describe(exc)}")]
        ) from exc
    return analog


def build_torch_model(
    spec: ModelSpec,
    rpu_config: Any,
    sample_shape: Shape,
    classes: int | None = None,
    path: str = "model",
    rpu_path: str = "rpu",
) -> torch.nn.Module:
    """The zoo or torch model of ``spec``, converted to analog with ``rpu_config``."""
    return convert(
        digital_model(spec, sample_shape, classes, path), spec, rpu_config, path, rpu_path
    )


def model_problems(
    spec: ModelSpec,
    sample_shape: Shape | None,
    classes: int | None,
    *,
    single_sample_batch: bool = False,
    nll: bool = False,
    path: str = "model",
) -> list[Problem]:
    """What is wrong with a zoo or torch model whatever the RPU configuration.

    Builds the digital model, checks ``exclude`` and that some layer converts, and runs
    one dummy batch of two samples of ``sample_shape`` through it (eval mode, no
    gradients): the data must fit and give one output per class. ``single_sample_batch``
    (the last batch has one sample) is a fault when the model has BatchNorm; ``nll``
    (the loss) needs log-probabilities out.
    """
    try:
        model = digital_model(spec, sample_shape or (1, 8, 8), classes, path)
    except ExperimentError as exc:
        return exc.problems
    excluded, problems = _excluded(model, spec, path)
    if not _convertible(model, excluded):
        problems.append(_no_analog_layer(model, spec, path))
    if single_sample_batch and any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()
    ):
        problems.append(
            (
                "dataset.batch_size",
                "leaves a last batch of one sample, which BatchNorm cannot train on; "
                "change batch_size or max_train",
            )
        )
    if sample_shape is None:
        return problems
    where = source_path(spec, path)
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *sample_shape))
    except Exception as exc:  # the data does not fit the model
        problems.append(
            (
                where,
                f"{model_name(spec)} fails on the data set's samples, "
                f"{shape_text(sample_shape)}: {describe(exc)}; change 'model.args' or the "
                "data set so they fit",
            )
        )
        return problems
    if (
        not isinstance(out, torch.Tensor)
        or out.dim() != 2
        or (classes is not None and out.shape[1] != classes)
    ):
        got = (
            shape_text(tuple(out.shape[1:]))
            if isinstance(out, torch.Tensor)
            else f"a {type(out).__name__}"
        )
        has = f" but the dataset has {classes} classes" if classes else ""
        problems.append(
            (
                where,
                f"{model_name(spec)} gives {got} per sample{has}; it must return "
                "one output per class (a batch x classes tensor)",
            )
        )
    elif nll and not torch.allclose(out.exp().sum(1), torch.ones(2), atol=1e-3):
        problems.append(
            (
                "training.loss",
                f"nll expects log-probabilities but {model_name(spec)} does not end with "
                "LogSoftmax; use cross_entropy or end the model with LogSoftmax",
            )
        )
    return problems
