"""aif-int8-accelerator: an int8 matrix-multiply accelerator AIM for aif.

``Int8MatMul`` (entry point ``int8-matmul``) is the AIM; ``quantise`` holds the
arithmetic of the emulated device, plain numpy, usable without aif.
"""

from aif_int8_accelerator.accelerator import Int8MatMul
from aif_int8_accelerator.quantise import QuantisedWeights, int8_matmul, quantise

__all__ = ["Int8MatMul", "QuantisedWeights", "int8_matmul", "quantise"]
