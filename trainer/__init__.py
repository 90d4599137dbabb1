"""The training daemon: a queue of JSONL files trained one by one with `transformers.Trainer`.

Modules the daemon needs without torch (layout, state, queue, control, pidfile, hooks,
launch, monitor, supervise, daemon) import no torch or transformers at module level;
only `train_file`, `callbacks`, `data` (its dataset half) and `tiny` do.
"""
