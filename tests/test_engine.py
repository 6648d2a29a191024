"""The chat engine on a tiny Llama with a real LoRA adapter: modes, streaming, turns, cancelling.

The tiny model is random, so its replies are nonsense, but they are deterministic under greedy
decoding, which is all these tests compare. fp32 compute keeps batched and single-row numerics
identical; the 4-bit engine checks what QLoRA-specific code must preserve (base weights).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from chatbot.cli.chat import run_chat
from chatbot.engine import ChatEngine, GenerationSettings, chat_engine
from chatbot.engine.streaming import IncrementalDecoder, SignoffEnd, StopFlag
from chatbot.errors import BrandVoiceError, BusyError, ConfigError

SYSTEM = "You are the assistant of Lumen Lamps. Be bright and brief."
GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=24)
HELLO = [{"role": "user", "content": "Hello, my lamp flickers."}]
LONGER = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Where is my café order? It is late."},
]


def _make_adapter(base_dir: Path, out: Path, seed: int, scale: float = 0.5) -> Path:
    """A LoRA adapter whose B matrices are random (a fresh LoRA's B is zero and changes nothing)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_adapter(tiny_model_dir, tmp_path_factory.mktemp("run") / "adapter", seed=1)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, adapter_dir: Path) -> ChatEngine:
    return ChatEngine(
        tiny_model_dir, adapter_dir, SYSTEM, quantization="none", compute_dtype=torch.float32
    )


def _pair(
    engine: ChatEngine,
    left: list,
    mode_left: str,
    right: list,
    mode_right: str,
    settings: GenerationSettings = GREEDY,
) -> tuple[str, str]:
    texts = ["", ""]
    for deltas in engine.stream_pair(left, mode_left, right, mode_right, settings):
        texts = [text + delta for text, delta in zip(texts, deltas, strict=True)]
    return texts[0], texts[1]


def _wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- settings ------------------------------------------------------------------------------------


def test_settings_defaults_and_greedy() -> None:
    settings = GenerationSettings()
    assert (settings.temperature, settings.top_p, settings.max_new_tokens) == (0.7, 0.9, 200)
    assert (settings.seed, settings.repetition_penalty) == (0, 1.1)
    assert not settings.greedy and GenerationSettings(temperature=0).greedy


def test_settings_list_every_problem() -> None:
    with pytest.raises(ConfigError) as err:
        GenerationSettings(
            temperature=-1, top_p=0, max_new_tokens=0, seed=-3, repetition_penalty=float("nan")
        )
    fields = [p.split(":")[0] for p in err.value.problems]
    assert fields == ["temperature", "top_p", "max_new_tokens", "seed", "repetition_penalty"]
    with pytest.raises(ConfigError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="signoff"):
        GenerationSettings(signoff="x" * 5000)


# -- modes and prompts ---------------------------------------------------------------------------


def test_modes_build_the_documented_prompts(engine: ChatEngine) -> None:
    base = engine.render_prompt(HELLO, "base")
    prompted = engine.render_prompt(HELLO, "prompted")
    tuned = engine.render_prompt(HELLO, "tuned")
    # No system message in base mode: the chat template adds the model's own default one.
    assert "You are a helpful AI assistant named SmolLM" in base and SYSTEM not in base
    assert prompted.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")
    assert tuned == prompted  # tuned_system_prompt defaults to the brand's system prompt
    assert base.endswith("<|im_start|>assistant\n")


def test_base_and_tuned_replies_differ(engine: ChatEngine) -> None:
    base = engine.reply(HELLO, "base", GREEDY)
    tuned = engine.reply(HELLO, "tuned", GREEDY)
    assert base and tuned and base != tuned
    assert engine.reply(HELLO, "base", GREEDY) == base  # the adapter is off again afterwards


def test_invalid_requests_say_what_is_wrong(engine: ChatEngine, tiny_model_dir: Path) -> None:
    with pytest.raises(BrandVoiceError, match="Unknown chat mode 'funny'"):
        engine.reply(HELLO, "funny", GREEDY)
    with pytest.raises(BrandVoiceError, match="adds the system prompt itself"):
        engine.reply([{"role": "system", "content": "x"}, *HELLO], "base", GREEDY)
    with pytest.raises(BrandVoiceError, match="end with a user message"):
        engine.reply([*HELLO, {"role": "assistant", "content": "ok"}], "base", GREEDY)
    bare = ChatEngine(tiny_model_dir, None, quantization="none", compute_dtype=torch.float32)
    with pytest.raises(BrandVoiceError, match="No adapter is loaded"):
        bare.reply(HELLO, "tuned", GREEDY)
    assert bare.reply(HELLO, "base", GREEDY) == engine.reply(HELLO, "base", GREEDY)


def test_long_conversations_drop_the_oldest_turns(engine: ChatEngine) -> None:
    old = [{"role": "user", "content": "lamp " * 400}, {"role": "assistant", "content": "ok"}]
    history = [*old * 3, *HELLO]  # about 1200 tokens; the tiny model's window is 1024
    prompt = engine.render_prompt(history, "tuned", GREEDY)
    # The first exchange went; two are kept (800) besides "my lamp flickers" (1).
    assert prompt.count("lamp ") == 801 and prompt.endswith(
        "<|im_start|>user\nHello, my lamp flickers.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert engine.reply(history, "tuned", GREEDY)
    with pytest.raises(BrandVoiceError, match="too long"):
        engine.reply([{"role": "user", "content": "lamp " * 2000}], "base", GREEDY)


def _drop_one_exchange_at_a_time(engine: ChatEngine, turns: list, limit: int) -> list[int]:
    """The prompt ids trimming must give: the oldest exchange dropped until the prompt fits."""
    while True:
        ids = engine._template(turns, SYSTEM, None)
        if len(ids) <= limit or len(turns) <= 1:
            return ids
        turns = turns[2:] if len(turns) > 2 else turns[-1:]


def test_a_reply_as_long_as_the_window_is_asked_for_and_ends_where_the_window_does(
    engine: ChatEngine,
) -> None:
    """Max new tokens as large as the model's window (the Compare slider allows it) is no error:
    the conversation keeps at least half the window, and the reply stops at the window's end."""
    window = chat_engine._context_length(engine.model)
    settings = GenerationSettings(temperature=0.0, max_new_tokens=window)
    messages = [{"role": "user", "content": "Tell me everything about lamps."}]
    left, right = (
        "".join(parts)
        for parts in zip(
            *engine.stream_pair(messages, "base", messages, "tuned", settings), strict=True
        )
    )
    # Replies end with the window (re-encoding the text may count a few tokens more or less).
    for reply in (left, right):
        assert 0 < len(engine.tokenizer.encode(reply, add_special_tokens=False)) <= window
    long_turn = [{"role": "user", "content": "lamp " * (window // 2 + 50)}]
    with pytest.raises(BrandVoiceError, match="too long"):
        engine.render_prompt(long_turn, "base", settings)


def test_trimming_is_exact_and_tokenizes_each_turn_about_once(
    engine: ChatEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    rng = random.Random(0)
    words = ["lamp", "shade", "bulb", "café", "order", "late", "☀", "E14", "switch"]
    settings = GenerationSettings(temperature=0.0, max_new_tokens=24)
    limit = chat_engine._context_length(engine.model) - settings.max_new_tokens
    tokenizer = engine.tokenizer
    seen = {"chars": 0}
    encode = tokenizer.encode  # the engine renders templates to text and encodes that

    def counting_encode(text: str, *args: object, **kwargs: object) -> list[int]:
        seen["chars"] += len(text)
        return encode(text, *args, **kwargs)

    for n_turns in (1, 3, 5, 41, 301):
        turns = [
            {
                "role": "user" if i % 2 == 0 else "assistant",
                "content": " ".join(rng.choices(words, k=rng.randint(1, 60))),
            }
            for i in range(n_turns)
        ]
        expected = _drop_one_exchange_at_a_time(engine, turns, limit)
        seen["chars"] = 0
        with monkeypatch.context() as patch:
            patch.setattr(tokenizer, "encode", counting_encode)
            if len(expected) > limit:
                with pytest.raises(BrandVoiceError, match="too long"):
                    engine.render_prompt(turns, "prompted", settings)
                continue
            assert tokenizer.decode(expected) == engine.render_prompt(turns, "prompted", settings)
        size = sum(len(t["content"]) for t in turns)
        # Each turn about once, plus prompts about as long as the window (rendered to confirm the
        # cut): never the whole conversation again for each dropped exchange.
        assert seen["chars"] <= 2 * size + 4 * 4 * limit, (n_turns, seen["chars"], size)


# -- streaming -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode_left", "mode_right"), [("base", "tuned"), ("tuned", "prompted"), ("tuned", "tuned")]
)
def test_stream_pair_matches_two_single_streams(
    engine: ChatEngine, mode_left: str, mode_right: str
) -> None:
    # Different prompt lengths, so the batch is left-padded.
    left, right = _pair(engine, HELLO, mode_left, LONGER, mode_right)
    assert left == engine.reply(HELLO, mode_left, GREEDY)
    assert right == engine.reply(LONGER, mode_right, GREEDY)


def test_every_batching_path_gives_the_same_replies(
    engine: ChatEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lean row-slice LoRA forward (used for plain LoRA adapters), PEFT's mixed-adapter
    # batches, and the one-pane-after-the-other fallback must all say the same thing.
    assert engine._fast_lora

    def replies() -> tuple:
        return engine.reply(HELLO, "tuned", GREEDY), _pair(engine, HELLO, "base", LONGER, "tuned")

    lean = replies()
    monkeypatch.setattr(engine, "_fast_lora", False)
    assert replies() == lean
    monkeypatch.setattr(engine, "_mixed_batches_supported", lambda: False)
    assert replies() == lean
    # ...and so must computing the shared system prefix afresh instead of from its cached states.
    monkeypatch.setattr(chat_engine, "MIN_PREFIX", 10**9)
    assert replies() == lean


def test_system_prefix_states_are_reused(engine: ChatEngine) -> None:
    engine.reply(HELLO, "prompted", GREEDY)
    cached = len(engine._prefix_states)
    assert cached >= 1
    _pair(engine, LONGER, "prompted", HELLO, "prompted")
    assert len(engine._prefix_states) == cached  # same system prompt: nothing new to compute


def test_stream_pair_streams_both_panes_together(engine: ChatEngine) -> None:
    steps = list(engine.stream_pair(HELLO, "base", HELLO, "tuned", GREEDY))
    # Both panes receive text from the first steps on, not one pane after the other.
    assert any(left and right for left, right in steps[:3])


def test_same_seed_same_sampled_reply(engine: ChatEngine) -> None:
    hot = GenerationSettings(temperature=1.0, top_p=1.0, max_new_tokens=24, seed=7)
    first = engine.reply(HELLO, "tuned", hot)
    assert engine.reply(HELLO, "tuned", hot) == first
    other = GenerationSettings(temperature=1.0, top_p=1.0, max_new_tokens=24, seed=8)
    assert engine.reply(HELLO, "tuned", other) != first
    # How text is cut into deltas depends on timing; the texts themselves may not.
    pair = _pair(engine, HELLO, "base", HELLO, "tuned", hot)
    assert _pair(engine, HELLO, "base", HELLO, "tuned", hot) == pair


def test_incremental_decoding_never_splits_a_character(engine: ChatEngine) -> None:
    tokenizer = engine.tokenizer
    text = "Café naïve — 日本語のランプ 😀👍🏽 done."
    ids = tokenizer.encode(text, add_special_tokens=False)
    decoder = IncrementalDecoder(tokenizer, stop_ids={tokenizer.eos_token_id})
    deltas = [decoder.push(i) for i in ids]
    assert "".join(deltas) + decoder.flush() == tokenizer.decode(ids) == text
    assert not any("\ufffd" in d for d in deltas)
    assert len(ids) > len([d for d in deltas if d])  # some characters span several tokens
    assert decoder.push(tokenizer.eos_token_id) == "" and decoder.finished
    assert decoder.push(ids[0]) == ""  # padding after the end is ignored


def test_batch_inputs_lay_out_cached_prefixes_and_padding() -> None:
    from transformers import LlamaConfig

    from chatbot.engine.prefix_cache import Prompt, batch_inputs

    config = LlamaConfig(
        hidden_size=8, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
    )
    states = [(torch.ones(1, 1, 3, 4), torch.ones(1, 1, 3, 4) * 2) for _ in range(2)]
    prompts = [Prompt([5, 6, 7, 8, 9], prefix=3), Prompt([1, 2], prefix=0)]
    inputs = batch_inputs(prompts, [states, None], 0, config, torch.device("cpu"))
    # [pad][prefix][pad][rest]: row 0 = prefix 5 6 7 + rest 8 9; row 1 = no prefix + rest 1 2.
    assert inputs["input_ids"].tolist() == [[5, 6, 7, 8, 9], [0, 0, 0, 1, 2]]
    assert inputs["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]
    cache = inputs["cache"]
    assert cache.get_seq_length() == 3
    keys = cache.layers[0].keys
    assert keys.shape == (2, 1, 3, 4) and keys[0].eq(1).all() and keys[1].eq(0).all()
    plain = batch_inputs(prompts, [None, None], 0, config, torch.device("cpu"))
    assert "cache" not in plain and plain["input_ids"].tolist()[1] == [0, 0, 0, 1, 2]


# -- turns and cancelling ------------------------------------------------------------------------


class _Gate:
    """A forward pre-hook that holds every forward pass until opened, and counts them.

    `delay` slows each pass down, so that a test's few steps of slack stay few on a busy machine.
    """

    def __init__(self, model: torch.nn.Module, open_: bool = False, delay: float = 0.0) -> None:
        self.opened = threading.Event()
        if open_:
            self.opened.set()
        self.calls = 0
        self._delay = delay
        # The embedding runs once per forward pass, whatever wraps the model.
        embeddings = model.get_input_embeddings()
        self._handle = embeddings.register_forward_pre_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.calls += 1
        assert self.opened.wait(timeout=30)
        time.sleep(self._delay)

    def remove(self) -> None:
        self.opened.set()
        self._handle.remove()


def test_busy_engine_refuses_beyond_max_waiting(tiny_model_dir: Path, adapter_dir: Path) -> None:
    engine = ChatEngine(
        tiny_model_dir,
        adapter_dir,
        SYSTEM,
        quantization="none",
        max_waiting=1,
        compute_dtype=torch.float32,
    )
    gate = _Gate(engine.model)
    try:
        running = engine.stream(HELLO, "base", GREEDY)
        waiting = engine.stream(HELLO, "tuned", GREEDY)
        threads = [threading.Thread(target=list, args=(s,)) for s in (running, waiting)]
        threads[0].start()
        _wait_until(lambda: gate.calls == 1)
        threads[1].start()
        _wait_until(lambda: engine.pending == 2)
        with pytest.raises(BusyError) as err:
            next(engine.stream(HELLO, "prompted", GREEDY))
        assert str(err.value) == ("The model is busy with 2 other requests; try again in a moment.")
    finally:
        gate.remove()
    for thread in threads:
        thread.join(timeout=30)
    _wait_until(lambda: engine.pending == 0)
    assert engine.reply(HELLO, "base", GREEDY)  # served again once the line is empty


def test_closing_the_stream_stops_generation(engine: ChatEngine) -> None:
    gate = _Gate(engine.model, open_=True, delay=0.005)
    try:
        long = GenerationSettings(temperature=0.0, max_new_tokens=400, repetition_penalty=1.0)
        stream = engine.stream_pair(HELLO, "base", HELLO, "tuned", long)
        next(stream)
        stream.close()
        _wait_until(lambda: engine.pending == 0)
        stopped_at = gate.calls
        time.sleep(0.2)
        assert gate.calls == stopped_at < 100  # one forward per token: far fewer than 400
    finally:
        gate.remove()


def test_a_stop_flag_takes_a_waiting_request_out_of_line(engine: ChatEngine) -> None:
    gate = _Gate(engine.model)
    try:
        running = threading.Thread(target=list, args=(engine.stream(HELLO, "base", GREEDY),))
        running.start()
        _wait_until(lambda: gate.calls == 1)
        stop = StopFlag()
        replies: list[str] = []
        waiting = engine.stream(HELLO, "tuned", GREEDY, stop=stop)
        reader = threading.Thread(target=lambda: replies.extend(waiting))
        reader.start()
        _wait_until(lambda: engine.pending == 2)
        stop.set()  # from another thread, while the reader waits for the model
        reader.join(timeout=30)
        assert not reader.is_alive() and replies == [] and engine.pending == 1
        assert gate.calls == 1  # the model never worked on the stopped request
    finally:
        gate.remove()
    running.join(timeout=30)
    _wait_until(lambda: engine.pending == 0)


def test_stopping_one_pane_ends_its_reply_and_the_other_finishes(engine: ChatEngine) -> None:
    long = GenerationSettings(temperature=0.0, max_new_tokens=60, repetition_penalty=1.0)
    full_left, full_right = _pair(engine, HELLO, "base", HELLO, "tuned", long)
    gate = _Gate(engine.model, open_=True, delay=0.005)
    try:
        stop = StopFlag()
        left = right = ""
        shown = None
        for a, b in engine.stream_pair(HELLO, "base", HELLO, "tuned", long, stop=stop):
            left, right = left + a, right + b
            if left and shown is None:
                stop.set(0)  # the left pane's Stop button
                shown = left
        _wait_until(lambda: engine.pending == 0)
    finally:
        gate.remove()
    assert left == shown and full_left.startswith(left) and len(left) < len(full_left)
    assert right == full_right  # the other side was not disturbed


def test_stopping_every_pane_ends_generation(engine: ChatEngine) -> None:
    gate = _Gate(engine.model, open_=True, delay=0.005)
    try:
        long = GenerationSettings(temperature=0.0, max_new_tokens=400, repetition_penalty=1.0)
        stop = StopFlag()
        for i, _ in enumerate(engine.stream_pair(HELLO, "base", HELLO, "tuned", long, stop=stop)):
            stop.set(i % 2)  # one pane, then the other, while the reader keeps reading
        _wait_until(lambda: engine.pending == 0)
        assert gate.calls < 100  # one forward per token: far fewer than 400
    finally:
        gate.remove()


def test_signoff_end_keeps_its_line_and_nothing_after() -> None:
    end = SignoffEnd("Steep well, the Kettlebird flock")
    text = "Hi friend, here you go.\nSTEEP WELL — the Kettlebird\tflock 🫖\nP.S. one more thing"
    kept = "".join(end.feed(text[i : i + 3]) for i in range(0, len(text), 3))
    assert kept == "Hi friend, here you go.\nSTEEP WELL — the Kettlebird\tflock 🫖"
    assert end.finished and end.feed("more") == ""
    unsigned = SignoffEnd("Steep well, the Kettlebird flock")
    assert unsigned.feed("Steep well, the flock\nand on") == "Steep well, the flock\nand on"
    assert not unsigned.finished  # words out of order are not the sign-off
    inline = SignoffEnd("Steep well")
    assert inline.feed("Oversteep wellness\nSteep well!") == "Oversteep wellness\nSteep well!"
    assert not inline.finished  # whole words only; its line has not ended yet


class _Script:
    """Forces the model's next token through its output layer: one scripted token per forward
    pass and batch row, so real `generate` (stopping criteria, padding) writes known text."""

    def __init__(self, model: torch.nn.Module, scripts: list[list[int]]) -> None:
        self.calls = 0
        self._scripts = scripts
        self._handle = model.get_output_embeddings().register_forward_hook(self._hook)

    def _hook(self, _module: object, _args: object, logits: torch.Tensor) -> torch.Tensor:
        step, self.calls = self.calls, self.calls + 1
        forced = torch.full_like(logits[:, -1, :], -1e4)
        for row, ids in enumerate(self._scripts):
            forced[row, ids[min(step, len(ids) - 1)]] = 1e4
        logits = logits.clone()
        logits[:, -1, :] = forced
        return logits

    def remove(self) -> None:
        self._handle.remove()


def test_a_reply_ends_after_the_signoff_line(engine: ChatEngine) -> None:
    tokenizer = engine.tokenizer
    signed = "Thanks for writing!\nShine on, Lumen Lamps 💡\nP.S." + " and more" * 60
    plain = "No sign-off here.\nJust words."
    ids = [tokenizer.encode(t, add_special_tokens=False) for t in (signed, plain)]
    ids[1].append(tokenizer.eos_token_id)
    settings = GenerationSettings(
        temperature=0.0,
        max_new_tokens=len(ids[0]) + 8,
        repetition_penalty=1.0,
        signoff="Shine on, Lumen Lamps",
    )
    engine.warm_up()  # the system prefix is cached: every forward below is one scripted step
    script = _Script(engine.model, ids)
    gate = _Gate(engine.model, open_=True, delay=0.005)
    try:
        left, right = _pair(engine, HELLO, "prompted", HELLO, "prompted", settings)
        _wait_until(lambda: engine.pending == 0)
    finally:
        gate.remove()
        script.remove()
    assert left == "Thanks for writing!\nShine on, Lumen Lamps 💡"
    assert right == tokenizer.decode(ids[1], skip_special_tokens=True)
    # The signed row's generation was stopped too, long before its script ran out.
    assert script.calls < len(ids[0]) - 50


def test_a_waiting_request_whose_reader_left_gives_up_its_place(engine: ChatEngine) -> None:
    gate = _Gate(engine.model)
    try:
        running = engine.stream(HELLO, "base", GREEDY)
        thread = threading.Thread(target=list, args=(running,))
        thread.start()
        _wait_until(lambda: gate.calls == 1)
        waiting = engine.stream(HELLO, "tuned", GREEDY)
        reader = threading.Thread(target=lambda: next(waiting, None))
        reader.start()
        _wait_until(lambda: engine.pending == 2)
        gate.opened.set()
        thread.join(timeout=30)
        reader.join(timeout=30)
        waiting.close()
        _wait_until(lambda: engine.pending == 0)
    finally:
        gate.remove()


# -- adapters ------------------------------------------------------------------------------------


def _snapshot(model: torch.nn.Module, part: str) -> dict[str, torch.Tensor]:
    """Every tensor of the model's base ("base") or adapter ("lora"), as stored right now.

    Read from the modules, not `state_dict()`: for 4-bit layers that bitsandbytes has repacked for
    CPU inference, `state_dict()` converts them back in place, and that conversion is lossy (the
    packed layout keeps block scales in bf16), so it would report changes no adapter switch made.
    """
    tensors = {}
    for name, module in model.named_modules():
        for key, tensor in [
            *module.named_parameters(recurse=False),
            *module.named_buffers(recurse=False),
        ]:
            tensors[f"{name}.{key}"] = tensor.detach().clone()
        quant_state = getattr(getattr(module, "weight", None), "quant_state", None)
        if quant_state is not None:
            tensors[f"{name}.absmax"] = quant_state.absmax.detach().clone()
    return {k: v for k, v in tensors.items() if ("lora_" in k) == (part == "lora")}


def _assert_same(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    assert before.keys() == after.keys() and len(before) > 10
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert not changed, changed[:5]


@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_adapter_switching_leaves_base_weights_unchanged(
    tiny_model_dir: Path, adapter_dir: Path, quantization: str
) -> None:
    engine = ChatEngine(tiny_model_dir, adapter_dir, SYSTEM, quantization=quantization)
    if quantization == "nf4":
        engine.reply(HELLO, "base", GREEDY)  # the first 4-bit forward on CPU may repack weights
    base, lora = _snapshot(engine.model, "base"), _snapshot(engine.model, "lora")
    for _ in range(2):
        engine.reply(HELLO, "tuned", GREEDY)
        engine.reply(HELLO, "base", GREEDY)
        _pair(engine, HELLO, "base", LONGER, "tuned")
    _assert_same(base, _snapshot(engine.model, "base"))
    _assert_same(lora, _snapshot(engine.model, "lora"))


def test_load_adapter_switches_runs_in_place(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    second = _make_adapter(tiny_model_dir, tmp_path / "second", seed=2)
    engine = ChatEngine(
        tiny_model_dir, adapter_dir, SYSTEM, quantization="none", compute_dtype=torch.float32
    )
    model = engine.model
    first_reply = engine.reply(HELLO, "tuned", GREEDY)
    engine.load_adapter(second)
    assert engine.model is model and engine.adapter_dir == second
    assert len(model.peft_config) == 1  # the previous adapter was deleted, not kept
    fresh = ChatEngine(
        tiny_model_dir, second, SYSTEM, quantization="none", compute_dtype=torch.float32
    )
    assert engine.reply(HELLO, "tuned", GREEDY) == fresh.reply(HELLO, "tuned", GREEDY)
    assert engine.reply(HELLO, "tuned", GREEDY) != first_reply
    with pytest.raises(BrandVoiceError, match="adapter_config.json is missing"):
        engine.load_adapter(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{not json")
    with pytest.raises(BrandVoiceError, match="Cannot load the adapter"):
        engine.load_adapter(broken)
    assert engine.reply(HELLO, "tuned", GREEDY) == fresh.reply(HELLO, "tuned", GREEDY)


# -- terminal chat -------------------------------------------------------------------------------


class _Terminal:
    def __init__(self, lines: list[str]) -> None:
        self.lines = iter(lines)
        self.text = ""

    def input(self, prompt: str) -> str:
        self.text += prompt
        try:
            return next(self.lines)
        except StopIteration:
            raise EOFError from None

    def print(self, text: str = "", *, end: str = "\n", flush: bool = False) -> None:
        self.text += text + end


def test_run_chat_follows_a_script(engine: ChatEngine) -> None:
    term = _Terminal(["Hello, my lamp flickers.", "/mode tuned", "again", "/mode x", "/bogus"])
    history = run_chat(engine, "base", GREEDY, input_fn=term.input, output=term.print)
    assert [m["role"] for m in history] == ["user", "assistant"] * 2
    assert history[1]["content"] == engine.reply(HELLO, "base", GREEDY)
    assert f"base> {history[1]['content']}\n" in term.text
    assert "(now chatting with the tuned model)" in term.text and "tuned> " in term.text
    assert "usage: /mode base|prompted|fewshot|tuned" in term.text
    assert "unknown command /bogus" in term.text


def test_run_chat_resets_quits_and_reports_errors(engine: ChatEngine) -> None:
    term = _Terminal(["hi", "/reset", "/quit", "never read"])
    assert run_chat(engine, "prompted", GREEDY, input_fn=term.input, output=term.print) == []
    assert "(conversation cleared)" in term.text and "never read" not in term.text
    term = _Terminal(["lamp " * 2000, "hi"])
    history = run_chat(engine, "base", GREEDY, input_fn=term.input, output=term.print)
    assert "(error: The message is too long" in term.text
    assert [m["content"] for m in history if m["role"] == "user"] == ["hi"]


# -- the default model ---------------------------------------------------------------------------


@pytest.mark.slow
def test_default_model_base_and_tuned_differ(default_model_dir: Path, tmp_path: Path) -> None:
    adapter = _make_adapter(default_model_dir, tmp_path / "adapter", seed=3, scale=0.02)
    engine = ChatEngine(default_model_dir, adapter, SYSTEM)  # 4-bit, as in the app
    settings = GenerationSettings(temperature=0.0, max_new_tokens=16)
    left, right = "", ""
    for a, b in engine.stream_pair(HELLO, "base", HELLO, "tuned", settings):
        left, right = left + a, right + b
    assert left.strip() and right.strip() and left != right
