"""The Modelfile TEMPLATE, executed by Go's text/template (Ollama's engine), renders the same
prompt as the model's Hugging Face chat template, so a model served by Ollama keeps its format."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from llmops_assets.deployment.packaging import chat_markers, ollama_spec
from llmops_assets.training.base_models import CHATML_TEMPLATE, GEMMA_TEMPLATE, build_base_model

RENDERER = Path(__file__).parent.parent / "support" / "render_template.go"
CONVERSATIONS = [
    [{"role": "user", "content": "Add task: Buy milk"}],
    [{"role": "user", "content": "List open tasks"},
     {"role": "assistant", "content": '{"name": "list_tasks", "arguments": {"status": "open"}}'},
     {"role": "user", "content": "Now complete task 3, it's {{done}}"}],
]

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed (.ci/run installs golang-go)")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny") / "model"
    build_base_model("tiny-llama", folder, ["Add task: Buy milk", "List open tasks"] * 50)
    return AutoTokenizer.from_pretrained(folder)


def go_render(template: str, system: str, messages: list[dict]) -> str:
    request = json.dumps({"template": template, "system": system, "messages": messages})
    env = {"GOCACHE": str(Path(tempfile.gettempdir()) / "llmops-go-build"), **os.environ}  # works without $HOME
    done = subprocess.run(["go", "run", str(RENDERER)], input=request, capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("chat_template", [CHATML_TEMPLATE, GEMMA_TEMPLATE], ids=["chatml", "gemma"])
@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=["one-turn", "multi-turn-with-braces"])
def test_go_template_renders_what_the_hf_template_renders(tokenizer, chat_template, conversation):
    tokenizer.chat_template = chat_template
    spec = ollama_spec(chat_markers(tokenizer), "You are the Task API assistant.")
    expected = tokenizer.apply_chat_template(
        [{"role": "system", "content": spec["system"]}, *conversation], tokenize=False, add_generation_prompt=True)
    expected = expected.removeprefix(tokenizer.bos_token or "")  # llama.cpp adds BOS when it tokenizes
    assert go_render(spec["template"], spec["system"], conversation) == expected
