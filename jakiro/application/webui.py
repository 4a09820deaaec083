"""Web chat UI: ``python -m jakiro.application.webui [--base-model-path ...] [--ea-model-path ...]``.

One model serves every browser session; answers are queued and generated one at a time, and each
session keeps its own conversation. Listens on 127.0.0.1 unless ``--host`` says otherwise; never
opens a public share link.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import JakiroError
from .chat_app import KEEP, ChatApp
from .options import (add_model_arguments, add_sampling_arguments, check_options, head_label, load_model,
                      quiet_loading)
from .runner import ModelRunner
from .server import check_port
from .session import DRAFT_CLASS, DRAFT_COLOR, ChatSession
from .streaming import Sampling, stream_answer

CSS = f"""
.{DRAFT_CLASS} {{ color: {DRAFT_COLOR}; }}
#jk-status {{ min-height: 1.5em; }}
"""
LEGEND = (f'<span class="{DRAFT_CLASS}" style="color:{DRAFT_COLOR}">Coloured</span>: draft tokens the base model '
          "accepted. Default colour: tokens the base model produced itself.")
GENERATION_EVENT = "model"


def keeping(handler):
    """Wrap a handler so its `KEEP` outputs leave those components unchanged."""
    import gradio as gr

    def wrapped(*args):
        return tuple(gr.skip() if value is KEEP else value for value in handler(*args))

    wrapped.__name__ = handler.__name__
    return wrapped


def build_demo(app: ChatApp, title: str, defaults: Sampling, highlight: bool = False):
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    with gr.Blocks(title="Jakiro chat") as demo:
        gr.Markdown(f"## Jakiro chat\n{title}")
        session = gr.State(ChatSession())
        with gr.Row():
            with gr.Column(scale=4):
                chatbot = gr.Chatbot(label="Chat", elem_id="jk-chat", height=460, feedback_options=None,
                                     buttons=["copy"])
                prompt = gr.Textbox(placeholder="Type a message and press Enter", show_label=False,
                                    elem_id="jk-prompt", lines=1, max_lines=6)
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="jk-send")
                    stop = gr.Button("Stop", variant="stop", elem_id="jk-stop")
                    regenerate = gr.Button("Regenerate", elem_id="jk-regenerate")
                    clear = gr.Button("Clear", elem_id="jk-clear")
                status = gr.Markdown("Ready.", elem_id="jk-status")
            with gr.Column(scale=2):
                speculative = gr.Checkbox(True, label="Use Jakiro (speculative decoding); off = plain decoding",
                                          elem_id="jk-speculative")
                highlighted = gr.Checkbox(highlight, label="Highlight accepted draft tokens", elem_id="jk-highlight")
                gr.Markdown(LEGEND)
                # Ranges hold every value the command line accepts (checked by `check_options` at start).
                temperature = gr.Slider(0.0, max(2.0, defaults.temperature), value=defaults.temperature, step=0.05,
                                        label="Temperature (0 = greedy)")
                top_p = gr.Slider(0.0, 1.0, value=defaults.top_p, step=0.05, label="Top-p (0 = off)")
                top_k = gr.Slider(0, max(200, defaults.top_k), value=defaults.top_k, step=1, label="Top-k (0 = off)")
                max_new = gr.Slider(1, max(2048, defaults.max_new_tokens), value=defaults.max_new_tokens, step=1,
                                    label="Max new tokens")
                speed = gr.Textbox(label="Speed (tokens/s)", interactive=False, elem_id="jk-speed")
                tau = gr.Textbox(label="Mean accepted length τ (tokens per round)", interactive=False,
                                 elem_id="jk-tau")

        outputs = [session, chatbot, status, speed, tau]
        settings = [session, speculative, highlighted, temperature, top_p, top_k, max_new]
        # Answers share one queue slot: one at a time over all sessions, the others wait (our status says so).
        queued = dict(concurrency_limit=1, concurrency_id=GENERATION_EVENT, show_progress="hidden")
        instant = dict(queue=False, show_progress="hidden")
        for trigger in (send.click, prompt.submit):
            first = trigger(app.submit, [prompt, session, highlighted], [prompt, *outputs], **instant)
            first.then(app.generate, settings, outputs, **queued)
        first = regenerate.click(app.regenerate, [session, highlighted], outputs, **instant)
        first.then(app.generate, settings, outputs, **queued)
        # No `cancels`: a stopped answer ends after its current round and shows its final view itself.
        stop.click(keeping(app.stop), [session, highlighted], outputs, **instant)
        for clearing in (clear.click, chatbot.clear):
            clearing(app.clear, [session, highlighted], outputs, **instant)
        highlighted.change(app.rerender, [session, highlighted], chatbot, **instant)
    demo.queue(default_concurrency_limit=1)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jakiro.application.webui",
                                     description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    add_sampling_arguments(parser, temperature=0.5, top_p=0.9)
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1; 0.0.0.0 exposes it on the network)")
    server.add_argument("--port", type=int, default=7860, help="port to listen on (default: 7860)")
    server.add_argument("--highlight", action="store_true", help="start with draft-token highlighting switched on")
    server.add_argument("--stream-delay", type=float, default=0.0,
                        help="pause in seconds after each streamed update (slows answers down for demos and tests)")
    server.add_argument("--no-warmup", action="store_true", help="skip the short warm-up generation at start")
    return parser.parse_args(argv)


def warm_up(model) -> None:
    """One short answer so the first real request does not pay one-time start-up costs."""
    for _ in stream_answer(model, [{"role": "user", "content": "Hello"}], Sampling(max_new_tokens=4)):
        pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_loading()
    try:
        check_options(args)  # options and port first: a mistake costs no model load
        check_port(args.host, args.port)
        model = load_model(args)
        if not args.no_warmup:
            warm_up(model)
    except JakiroError as error:
        print(f"jakiro webui: error: {error}", file=sys.stderr)
        return 1
    title = (f"Base model: `{args.base_model_path}` · draft head: `{head_label(args)}` · "
             f"tree: {model.total_token} tokens, depth {args.depth}, top-k {args.top_k_tree}")
    defaults = Sampling(args.temperature, args.top_p, args.top_k, args.max_new_token)
    demo = build_demo(ChatApp(ModelRunner(model), args.stream_delay), title, defaults, args.highlight)
    print(f"jakiro webui: serving on http://{args.host}:{args.port}", flush=True)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=False, css=CSS, show_error=True)
    except (OSError, OverflowError) as error:  # the port was taken between the check and the launch
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"jakiro webui: error: cannot listen on {args.host}:{args.port} ({reason}): pass another --port",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
