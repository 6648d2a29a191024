"""brandvoice engine: brand data in, a fine-tuned voice out. Never imports gradio."""

import logging as _logging

__version__ = "0.1.0"

# bitsandbytes (0.50) on CPUs with AVX512-BF16 tries an optional hub kernel for 4-bit inference at
# import and logs a warning when the `kernels` package is absent; its own kernel is used instead.
# The product never fetches kernels from a hub, so the warning would only confuse users.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
