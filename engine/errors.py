"""The one exception type for bad input: the CLI prints it as a paragraph (exit 2), the dashboard as a message."""


class CrossLensError(ValueError):
    pass
