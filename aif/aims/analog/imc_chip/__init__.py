"""The IMC chip: a hardware AIM that runs analog inference on in-memory-computing tiles.

Three parts meet at one wire format:

* ``messages.py`` and ``protocol.py``: the messages a chip, real or emulated, speaks
  (INFO, PROGRAM, READ, MVM, WAIT, RESET) and their little-endian binary encoding over
  TCP (``docs/imc-protocol.md``).
* ``tiles.py`` and ``emulator.py``: a chip in software (crossbar tiles of PCM
  conductances with aihwkit's programming noise, drift and read noise, DAC/ADC
  quantisation) and the separate process that serves it behind the protocol, so the
  rest can be tested and measured without hardware.
* ``client.py``, ``twin.py``, ``mapping.py``, ``emulator_child.py`` and ``driver.py``:
  the host side: an asyncio client of the protocol, the digital twin of a trained
  model, the mapping of its analog layers onto tiles, the emulator as a child process,
  and the ``imc_chip`` AIM (an ``aif.aims`` entry point, as a third party's would be).

A real chip replaces the emulator, not the driver.

Public: ``ChipClient`` (to drive a chip or a board by hand), imported on first use so
that the emulator's process loads only what it serves with.
"""

import typing

from aif import lazy_exports as _lazy

if typing.TYPE_CHECKING:
    from aif.aims.analog.imc_chip.client import ChipClient

__getattr__, __dir__ = _lazy.lazy_exports(
    __name__, {"ChipClient": "aif.aims.analog.imc_chip.client"}
)

__all__ = ["ChipClient"]
