"""cems QoE engine: cited models that turn measured QoS into perceived quality (core).

Pure Python and numpy, no I/O and nothing of cems imported. Each model names its source.
"""

from qoe.errors import QoeInputError

__all__ = ["QoeInputError"]
