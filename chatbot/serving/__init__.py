"""The OpenAI-compatible HTTP face over the engine (`server`, started by `brandvoice serve`) and
the guard every local HTTP listener shares, the app's included (`http_guard`)."""
