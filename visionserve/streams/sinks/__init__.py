"""Where a stream pipeline's results go: one module per sink (`memory`, `jsonl`, `video`, `webhook`, `feed`), all
following `base.Sink`. Import the sink from its module, so a pipeline loads only the libraries its sinks use."""
