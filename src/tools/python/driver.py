# ossterm's python tool: a notebook-like REPL fed over a private pipe.
# Each cell arrives as "<byte length>\n<code>"; its output goes to stdout (stderr merged),
# then a line "\n<sentinel>:<0|1>\n" (1 = the cell raised) marks the end of the cell.
import ast, os, sys, traceback

_chan = os.fdopen(os.dup(0), "rb", buffering=0)
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
sys.stdin = open(os.devnull)
os.dup2(1, 2)
_sentinel = sys.argv[1]
_ns = {"__name__": "__main__"}


def _read_exact(n):
    parts = []
    while n > 0:
        part = _chan.read(n)
        if not part:
            raise EOFError
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _run(code):
    tree = ast.parse(code, "<cell>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<cell>", "exec"), _ns)
    if last is not None:
        value = eval(compile(last, "<cell>", "eval"), _ns)
        if value is not None:
            print(repr(value))


while True:
    header = _chan.readline()
    if not header:
        break
    try:
        code = _read_exact(int(header)).decode("utf-8", "replace")
    except (EOFError, ValueError):
        break
    failed = 0
    try:
        _run(code)
    except BaseException as error:  # SystemExit and KeyboardInterrupt must not end the REPL
        failed = 1
        # Drop the driver's own frame so the traceback shows only the cell.
        sys.stdout.write("".join(traceback.format_exception(type(error), error, error.__traceback__.tb_next)))
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    # Straight to fd 1: the cell may have replaced sys.stdout.
    os.write(1, ("\n%s:%d\n" % (_sentinel, failed)).encode())
