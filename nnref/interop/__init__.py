"""nnref as an engine's oracle (the optional extra ``interop``)."""
