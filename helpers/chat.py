"""Talk to the fine-tuned model: the generation settings panel and the chat box (06_inference, ipywidgets 7 and 8),
and the terminal chat behind `python -m helpers chat`.

Every turn sends the whole conversation through the chat template, so the model sees what was said before; the reply
streams in as it is generated and ends at the end-of-turn token.
"""

from __future__ import annotations

import html
import sys
import time

_STYLE = {"description_width": "150px"}
SETTING_NAMES = ("temperature", "top_p", "max_new_tokens", "repetition_penalty")


# --- the generation settings panel -------------------------------------------------------------------------------

def generation_panel(temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 64,
                     repetition_penalty: float = 1.0):
    """Sliders for the four generation settings, starting at greedy decoding, with a line saying what they do."""
    import ipywidgets as w

    controls = [
        w.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05, description="temperature"),
        w.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05, description="top_p"),
        w.IntSlider(value=max_new_tokens, min=1, max=max(512, max_new_tokens), description="max_new_tokens"),
        w.FloatSlider(value=repetition_penalty, min=1.0, max=2.0, step=0.05, description="repetition_penalty"),
    ]
    for c in controls:
        c.style = _STYLE
        c.layout = w.Layout(width="460px")
    note = w.HTML()
    panel = w.VBox(controls + [note])

    def refresh(_=None) -> None:
        note.value = describe_settings(read_generation_panel(panel))

    for c in controls:
        c.observe(refresh, names="value")
    refresh()
    return panel


def read_generation_panel(panel) -> dict:
    """The panel's values as the keyword arguments of `generation_settings` (and of `reply`, `stream_reply`)."""
    values = {c.description: c.value for c in panel.children if getattr(c, "description", "") in SETTING_NAMES}
    return {"temperature": round(float(values["temperature"]), 2), "top_p": round(float(values["top_p"]), 2),
            "max_new_tokens": int(values["max_new_tokens"]),
            "repetition_penalty": round(float(values["repetition_penalty"]), 2)}


def describe_settings(settings: dict) -> str:
    """What these settings will do, in a sentence or two of HTML."""
    if settings["temperature"] == 0:
        text = "<b>Greedy</b>: the most likely token every time, the same answer on every run (top_p is not used)."
    else:
        text = (f"<b>Sampling</b> at temperature {settings['temperature']:g} from the most likely tokens that together "
                f"hold {settings['top_p']:.0%} of the probability: each run can differ.")
    if settings["repetition_penalty"] != 1:
        text += (f" Tokens already in the prompt or the reply are made less likely (repetition penalty "
                 f"{settings['repetition_penalty']:g}).")
    return text + f" At most {settings['max_new_tokens']} new tokens."


# --- the conversation ----------------------------------------------------------------------------------------------

def context_length(model, tokenizer) -> int | None:
    """How many tokens the model can attend to (prompt + reply), or None if neither model nor tokenizer says."""
    length = getattr(model.config, "max_position_embeddings", None)
    if length is None and getattr(tokenizer, "model_max_length", 10**9) < 10**6:  # unset: a huge placeholder
        length = tokenizer.model_max_length
    return length


def fit_history(tokenizer, messages: list[dict], max_tokens: int | None) -> tuple[list[dict], int]:
    """Drop the oldest exchanges (a system message stays) until the templated prompt fits in max_tokens.

    Returns the messages to send and how many exchanges were dropped. The newest user message is always kept.
    """
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system):]
    dropped = 0
    while max_tokens is not None and len(turns) > 1 and prompt_tokens(tokenizer, system + turns) > max_tokens:
        turns, dropped = turns[2:], dropped + 1  # a user message and the reply to it
    return system + turns, dropped


def prompt_tokens(tokenizer, messages: list[dict]) -> int:
    """The length in tokens of the prompt these messages make (chat template plus the assistant's opening)."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def _settings_of(settings) -> dict:
    """Settings given as a dict, as the panel itself (read at every turn), or None (greedy defaults)."""
    if settings is None:
        return {}
    if hasattr(settings, "children"):
        return read_generation_panel(settings)
    return dict(settings)


# --- the chat box (notebook) ---------------------------------------------------------------------------------------

class ChatBox:
    """A chat with the model in a notebook: a text box, Send, Reset, the conversation so far and a status line.

    `send(text)` does what the Send button does and returns the reply, so a headless run can script an exchange.
    `messages` holds the conversation (user and assistant turns; the system message is added when prompting).
    """

    def __init__(self, model, tokenizer, settings=None, system: str | None = None):
        import ipywidgets as w

        self.model, self.tokenizer, self.settings, self.system = model, tokenizer, settings, system
        self.messages: list[dict] = []
        self.last_prompt = ""  # the exact text the model saw on the last turn, chat template included
        self.last_info: dict = {}
        self.history = w.HTML()
        self.text = w.Text(placeholder="Type a message, then Enter or Send", layout=w.Layout(width="480px"))
        self.send_button = w.Button(description="Send", button_style="primary", layout=w.Layout(width="80px"))
        self.reset_button = w.Button(description="Reset", layout=w.Layout(width="80px"))
        self.status = w.HTML()
        self.widget = w.VBox([self.history, w.HBox([self.text, self.send_button, self.reset_button]), self.status])
        self.send_button.on_click(self._on_send)
        self.reset_button.on_click(lambda _: self.reset())
        if hasattr(self.text, "on_submit"):  # Enter sends; on_submit works on ipywidgets 7 and 8 but warns on 8,
            import warnings  # and its replacement (observe 'value') would also send when the box merely loses focus

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self.text.on_submit(self._on_send)
        self._render()
        self._set_status("Ready. Replies are generated with: " + describe_settings(self._settings()))

    def _settings(self) -> dict:
        from .inference import generation_settings

        settings = _settings_of(self.settings)
        generation_settings(**settings)  # refuse impossible values now, with the allowed range
        defaults = dict(temperature=0.0, top_p=1.0, max_new_tokens=64, repetition_penalty=1.0)
        return {**defaults, **settings}

    def conversation(self) -> list[dict]:
        """The messages the model is prompted with: the system message, if any, then every turn."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.messages

    def send(self, text: str) -> str:
        """Add a user message, stream the model's reply into the box, and return the reply."""
        from .inference import stream_reply

        text = text.strip()
        if not text:
            return ""
        settings = self._settings()
        self.messages.append({"role": "user", "content": text})
        length = context_length(self.model, self.tokenizer)
        budget = None if length is None else length - settings["max_new_tokens"]
        conversation, dropped = fit_history(self.tokenizer, self.conversation(), budget)
        self.last_prompt = self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        info, answer, start = {}, "", time.time()
        self._busy(True)
        try:
            for piece in stream_reply(self.model, self.tokenizer, conversation, info=info, **settings):
                answer += piece
                self._render(partial=answer)
        except BaseException:
            self.messages.pop()  # the turn did not happen: keep the history consistent
            self._render()
            self._set_status("That message failed; it was not added to the conversation.")
            raise
        finally:
            self._busy(False)
        answer = answer.strip()
        self.messages.append({"role": "assistant", "content": answer})
        self.last_info = {**info, "seconds": time.time() - start, "dropped_exchanges": dropped}
        self._render()
        self._set_status(self._turn_summary(length))
        return answer

    def reset(self) -> None:
        """Forget the conversation (the settings and system message stay)."""
        self.messages, self.last_prompt, self.last_info = [], "", {}
        self._render()
        self._set_status("History cleared: the next message starts a new conversation.")

    def transcript(self) -> str:
        """The conversation as plain text, one line per turn."""
        return "\n".join(f"{m['role']:>9}: {m['content']}".replace("\n", "\n" + " " * 11) for m in self.conversation())

    def _turn_summary(self, length: int | None) -> str:
        i = self.last_info
        end = ("ended at the end-of-turn token" if i.get("stopped") else
               "<b>cut at max_new_tokens</b> (raise it in the panel)")
        context = f" of {length}" if length else ""
        text = (f"Turn {len(self.messages) // 2}: {i.get('new_tokens', '?')} new tokens in {i['seconds']:.1f} s, "
                f"{end}. The prompt was {i.get('prompt_tokens', '?')} tokens{context}: the whole conversation.")
        if i["dropped_exchanges"]:
            text += (f" The oldest {i['dropped_exchanges']} exchange(s) no longer fit in the context and were left "
                     "out: the model no longer sees them.")
        return text

    def _on_send(self, _) -> None:
        text, self.text.value = self.text.value, ""
        try:
            self.send(text)
        except Exception as e:  # a callback's exception would vanish into the browser console: show it instead
            self._set_status(f"<span style='color:#b00'>Error: {html.escape(f'{type(e).__name__}: {e}'[:500])}"
                             "</span>")

    def _busy(self, busy: bool) -> None:
        self.send_button.disabled = self.reset_button.disabled = busy
        if busy:
            self._set_status("generating...")

    def _set_status(self, text: str) -> None:
        self.status.value = f"<span style='color:#666;font-size:90%'>{text}</span>"

    def _render(self, partial: str | None = None) -> None:
        messages = self.conversation() + ([{"role": "assistant", "content": partial + " ▌"}] if partial else [])
        self.history.value = chat_html(messages)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def chat_html(messages: list[dict]) -> str:
    """The conversation as HTML: one bubble per message, every text escaped (a message is data, never markup)."""
    colours = {"user": ("#dbeafe", "auto", "0"), "assistant": ("#f1f5f9", "0", "auto"),
               "system": ("#fef9c3", "0", "0")}
    if not messages:
        return "<div style='color:#888;padding:4px'>(no messages yet)</div>"
    bubbles = []
    for m in messages:
        background, left, right = colours.get(m["role"], colours["system"])
        bubbles.append(
            f"<div style='background:{background};color:#111;margin:4px {right} 4px {left};padding:6px 10px;"
            f"border-radius:8px;max-width:80%;width:fit-content;white-space:pre-wrap;font-family:monospace'>"
            f"<b>{html.escape(m['role'])}</b><br>{html.escape(m['content'])}</div>")
    return "<div style='max-width:680px'>" + "".join(bubbles) + "</div>"


def chat_box(model, tokenizer, settings=None, system: str | None = None) -> ChatBox:
    """A chat box widget for the model. `settings`: a dict from `read_generation_panel`, or the panel itself (then
    moving a slider changes the next reply), or None for greedy decoding. Display it by ending a cell with it."""
    return ChatBox(model, tokenizer, settings=settings, system=system)


# --- the terminal chat (python -m helpers chat) --------------------------------------------------------------------

def terminal_chat(run_dir: str | None = None, profile: str | None = None, input_fn=None, out=None,
                  temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 256,
                  system: str | None = None) -> int:
    """Chat with the run's fine-tuned model in a terminal, replies streamed; returns the exit status (0)."""
    from .inference import generation_settings, load_finetuned, stream_reply
    from .rundir import open_run

    input_fn, out = input_fn or input, out or sys.stdout  # looked up now, so a test can stand in for either
    settings = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    generation_settings(**settings)  # a bad value fails before the model is loaded, with the allowed range
    cfg, run = open_run(run_dir, profile=profile)
    model, tokenizer = load_finetuned(cfg, run)
    length = context_length(model, tokenizer)
    decoding = "greedy" if temperature == 0 else f"sampling, temperature {temperature:g}, top-p {top_p:g}"
    what = f"+ the LoRA adapter in {run.adapter_dir}" if cfg.method != "full" else f"fully fine-tuned, {run.model_dir}"
    out.write(f"Chatting with {cfg.model.model_id} {what}\n"
              f"({cfg.profile} profile, {decoding}, at most {max_new_tokens} new tokens per reply).\n"
              "Commands: /reset forgets the conversation, /quit leaves (so do Ctrl-D and Ctrl-C).\n\n")
    messages: list[dict] = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            text = input_fn("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            out.write("\nbye\n")
            return 0
        if text in ("/quit", "/exit"):
            out.write("bye\n")
            return 0
        if text == "/reset":
            messages = messages[:1] if system else []
            out.write("(conversation forgotten)\n")
            continue
        if text.startswith("/") or not text:
            out.write("commands: /reset, /quit\n" if text else "")
            continue
        messages.append({"role": "user", "content": text})
        conversation, dropped = fit_history(tokenizer, messages, None if length is None else length - max_new_tokens)
        if dropped:
            out.write(f"(the oldest {dropped} exchange(s) no longer fit in the model's {length} tokens: left out)\n")
        out.write("model> ")
        info, answer = {}, ""
        try:
            for piece in stream_reply(model, tokenizer, conversation, info=info, **settings):
                piece = piece if answer else piece.lstrip()  # the reply's leading space or newline
                answer += piece
                out.write(piece)
                out.flush()
        except KeyboardInterrupt:
            out.write("\n(interrupted)\nbye\n")
            return 0
        out.write("\n" if info.get("stopped") else f"\n(cut at {max_new_tokens} new tokens: --max-new-tokens)\n")
        messages.append({"role": "assistant", "content": answer.strip()})


def add_chat_arguments(parser) -> None:
    """The options of `python -m helpers chat`."""
    parser.add_argument("--run-dir", help="the run directory whose adapter to chat with "
                                          "(default: COURSE_RUN_DIR, else runs/<profile>)")
    parser.add_argument("--profile", choices=["tiny", "t4", "ampere"], help="default: from the hardware")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy; 0.7 is a common start")
    parser.add_argument("--top-p", type=float, default=1.0, help="sample from the top P of the probability (default 1)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="the most tokens per reply (default 256)")
    parser.add_argument("--system", help="a system message to start the conversation with")


def cmd_chat(args) -> int:
    """`python -m helpers chat`: a terminal chat with the run's fine-tuned model."""
    return terminal_chat(args.run_dir, profile=args.profile, temperature=args.temperature, top_p=args.top_p,
                         max_new_tokens=args.max_new_tokens, system=args.system)
