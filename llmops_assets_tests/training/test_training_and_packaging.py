import pytest

from llmops_assets.core.chat import model_messages, prompt_and_completion
from llmops_assets.deployment.packaging import chat_markers, modelfile, ollama_spec
from llmops_assets.training.backends import select_backend
from llmops_assets.training.base_models import build_base_model
from llmops_assets.training.runner import validation_rise

SEED = [{"role": "user", "content": "Add task: Buy milk"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"function": {"name": "add_task", "arguments": "{\"title\": \"Buy milk\"}"}}]}]


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny") / "model"
    facts = build_base_model("tiny-llama", folder, ["Add task: Buy milk", "Delete task 3", "List open tasks"] * 50)
    assert facts["architecture"] == "LlamaForCausalLM" and (folder / "tokenizer.model").exists()
    return AutoTokenizer.from_pretrained(folder)


def test_completion_is_the_answer_and_turn_end_only(tiny_tokenizer):
    prompt, completion = prompt_and_completion(tiny_tokenizer, model_messages(SEED, "SYS"))
    assert prompt.endswith("<|im_start|>assistant\n") and "SYS" in prompt and "Buy milk" in prompt
    assert completion == '{"name": "add_task", "arguments": {"title": "Buy milk"}}<|im_end|>\n'


def test_modelfile_template_reproduces_the_chat_template(tiny_tokenizer):
    markers = chat_markers(tiny_tokenizer)
    assert markers == {"system_prefix": "<|im_start|>system\n", "user_prefix": "<|im_start|>user\n",
                       "assistant_prefix": "<|im_start|>assistant\n", "turn_end": "<|im_end|>\n", "stop": "<|im_end|>"}
    text = modelfile("model.gguf", ollama_spec(markers, "SYS"))
    assert text.startswith("FROM ./model.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in text and 'SYSTEM """SYS"""' in text


def test_unknown_base_model_fails_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="set stages.training.base_model to that folder"):
        build_base_model("no-such-org/no-such-model", tmp_path / "m", [])


def test_backend_selection():
    assert select_backend("auto", cuda_available=False) == "trl"
    assert select_backend("trl", cuda_available=True) == "trl"
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU"):
        select_backend("unsloth", cuda_available=False)


def test_validation_rise_defines_diverging():
    assert validation_rise([(10, 1.0), (20, 0.5), (30, 0.4)]) == 0.0
    assert validation_rise([(10, 1.0), (20, 0.5), (30, 0.6)]) == pytest.approx(0.2)  # the last one was kept
    # Early stopping restored the best checkpoint (step 20): the adapter kept did not diverge.
    assert validation_rise([(10, 1.0), (20, 0.5), (30, 0.6)], kept_step=20) == 0.0
    # One evaluation, or none, says nothing about convergence: the gate cannot pass on it.
    assert validation_rise([(10, 0.5)]) == float("inf") and validation_rise([]) == float("inf")


def test_a_fixed_port_in_use_is_refused_with_the_fix(tmp_path):
    import socket

    from llmops_assets.deployment.servers import start_llamacpp

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match="set stages.deployment.port: 0"):
            start_llamacpp(tmp_path / "m.gguf", "m", "127.0.0.1", port, 1, 256, tmp_path)
