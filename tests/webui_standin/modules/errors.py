"""modules/errors.py: the WebUI logs exceptions raised in script hooks and goes on."""

reported: list[str] = []


def report(message, *, exc_info=False):
    import traceback

    reported.append(message + ("\n" + traceback.format_exc() if exc_info else ""))
