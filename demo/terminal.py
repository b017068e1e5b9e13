"""demo/terminal.py: everything the demo prints, fitted to a projector.

Screen       prints wrapped (never cut), coloured only on a terminal and
             never under NO_COLOR; `screen` is the one the demo uses
wrap, pair_options, wrap_command, shell_words
             prose and commands laid out in N columns; a wrapped command
             still pastes (' \\' continuations, each option with its value)
Pauser       --pause: Enter between cases, when there is a terminal
Result, print_table
             the closing table: case | expected | observed | ok

Reads nothing; writes only to standard output (and reads Enter, --pause).
"""

import re
import shlex
import shutil
import sys
import textwrap
from collections import namedtuple


# --- terminal output -----------------------------------------------------
#
# Everything we print goes through one Screen: it knows the width (the
# terminal's, 100 when unknown, or --width), wraps long lines instead of
# cutting them, and colours only a terminal without NO_COLOR (no-color.org).
# Bold, red and green only: dim text (ANSI 2) vanishes on a projector.

def terminal_width():
    """The terminal's width: $COLUMNS, else the terminal's, else 100."""
    return shutil.get_terminal_size(fallback=(100, 24)).columns


class Screen:
    """Prints wrapped, optionally coloured text at a given width."""

    def __init__(self, width=100, colour=False, quiet=False):
        self.setup(width, colour, quiet)

    def setup(self, width=100, colour=False, quiet=False):
        """Set the width, colour and quietness (main() does, from the options)."""
        self.width, self.colour, self.quiet = max(width, 60), colour, quiet

    def paint(self, text, code):
        """Wrap text in an ANSI colour code when colour is on."""
        return f"\033[{code}m{text}\033[0m" if self.colour and code else text

    def print(self, text=""):
        """Print one line as it is (callers keep it within the width)."""
        if not self.quiet:
            print(text, flush=True)

    def say(self, text, first="", rest=None, code=None):
        """Print prose wrapped to the width; `first` starts the first line
        (painted with `code`), `rest` indents the others."""
        rest = " " * len(first) if rest is None else rest
        for i, line in enumerate(wrap(text, self.width, first, rest)):
            self.print(self.paint(first, code) + line[len(first):] if i == 0 else line)

    def heading(self, text):
        """A case's title line, bold, after a blank line; a parenthesis in it
        is never split across lines."""
        self.print()
        whole = re.sub(r"\([^()]*\)", lambda m: m.group(0).replace(" ", "\u00a0"), text)
        for i, line in enumerate(wrap(whole, self.width, "== ", "   ")):
            line = line.replace("\u00a0", " ")
            self.print(self.paint("== ", "1") + line[3:] if i == 0 else line)

    def command(self, words, prompt="$ "):
        """Print a command line that pastes: wrapped at spaces between words
        with ' \\' continuations, each word shell-quoted."""
        for line in wrap_command(pair_options([shlex.quote(w) for w in words]), self.width, prompt):
            self.print(line)

    def output(self, text, empty="(no output)"):
        """Print a program's output indented behind '| ', wrapped."""
        for line in text.rstrip("\n").splitlines() or [empty]:
            self.say(line.expandtabs(), "   | ", "   |   ")

    def why(self, text):
        """The explanation of a case, behind a bold 'why:'."""
        self.say(text, "why: ", code="1")


def wrap(text, width, first="", rest=""):
    """Split text into lines of at most `width` columns, the first starting
    with `first`, the others with `rest`; at spaces when possible, and a
    word longer than a line is split: nothing is ever cut off."""
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False) or [first.rstrip()]


def pair_options(words):
    """Group each option with its value (["--cacert", "certs/ca.crt"]), so
    that a wrapped command keeps them on one line when it can."""
    units = []
    for word in words:
        after_option = units and len(units[-1]) == 1 and units[-1][0].startswith("-")
        if after_option and not word.startswith("-"):
            units[-1].append(word)
        else:
            units.append([word])
    return units


def wrap_command(units, width, prompt="$ ", indent="    "):
    """Lay units (lists of words) out as shell lines of at most `width`
    columns, ending every line but the last with ' \\' so that the whole
    pastes as one command. A unit too long for a line is split into its
    words; a word too long for a line stands alone (it cannot be split)."""
    lines, line = [], prompt + " ".join(units[0])
    for unit in units[1:]:
        text = " ".join(unit)
        too_long = len(line) + 1 + len(text) + 2 > width and len(indent + text) + 2 > width
        if too_long and len(unit) > 1:
            for word in unit:
                lines, line = add_word(lines, line, word, width, indent)
            continue
        lines, line = add_word(lines, line, text, width, indent)
    return lines + [line]


def add_word(lines, line, text, width, indent):
    """Append text to the current line, or end it with ' \\' and start a new one."""
    if len(line) + 1 + len(text) + 2 <= width:
        return lines, line + " " + text
    return lines + [line + " \\"], indent + text


def shell_words(line):
    """A shell line (as make echoes it) split into words at the spaces outside
    quotes, each kept as written, so that it prints back as it pastes."""
    return re.findall(r"""(?:[^\s'"]+|'[^']*'|"[^"]*")+""", line)


# The one Screen every part of the demo prints through; main() sets it up
# from the options (screen.setup), and `introduced` holds what has been
# explained once in this run, so that it is not explained twice.
screen = Screen()
introduced = set()


class Pauser:
    """--pause: wait for Enter between cases, if there is someone to press it."""

    def __init__(self, wanted):
        self.wanted, self.told = wanted, False

    def wait(self, what):
        """Wait for Enter ("-- press Enter `what` --"); without a terminal, say
        once that we do not."""
        if not self.wanted:
            return
        stdin = sys.stdin
        if stdin is None or stdin.closed or not stdin.isatty():
            if not self.told:
                screen.say("(--pause: input is not a terminal, so the demo does not pause)")
                self.told = True
            self.wanted = False
            return
        screen.print()
        try:
            input(f"-- press Enter {what} (Ctrl-C stops) --")
        except EOFError:
            screen.say("(--pause: input closed, so the demo does not pause any more)")
            self.wanted = False


# --- the closing table ---------------------------------------------------
#
# One row a case: what it should do, what it did, and whether they match
# (ok: True, False, or None for a case skipped). The gallery's exhibits
# return the same Result.

Result = namedtuple("Result", "name expected observed ok")


def word_pieces(word):
    """A word's pieces where a line may break inside it: after each '/' of a
    URI (uri:spiffe:// | example.org/ | other-client), nowhere else."""
    return re.findall(r"[^/]*/+|[^/]+", word) or [word]


def wrap_cell(text, width):
    """Wrap a table cell at spaces, and inside a word too long for the column
    only after a '/': never mid-word (a piece wider than the column, which
    print_table avoids, is the only thing ever cut)."""
    lines, line = [], text[:len(text) - len(text.lstrip())]     # "  + TLS 1.2" keeps its indent
    for word in text.split():
        pieces = [word] if len(word) <= width else word_pieces(word)
        for i, piece in enumerate(pieces):
            glue = " " if line.strip() and i == 0 else ""
            if line.strip() and len(line) + len(glue) + len(piece) > width:
                lines.append(line)
                line, glue = "", ""
            line += glue + piece
            while len(line) > width:
                lines, line = lines + [line[:width]], line[width:]
    return lines + [line]


def column_widths(rows, width):
    """Widths of the four columns within `width`, each at least as wide as the
    longest word in it, else as the longest piece of one (leaving `expected`
    20 columns, or what it needs); None if neither fits."""
    natural = [max(len(line) for row in rows for line in row[i].splitlines() or [""])
               for i in range(4)]
    room = width - natural[0] - natural[3] - 9          # 3 separators of 3
    if natural[1] + natural[2] <= room:
        return natural
    for split in (lambda w: [w], word_pieces):           # whole words first
        least = [max((len(p) for row in rows for w in row[i].split() for p in split(w)),
                     default=1) for i in (1, 2)]
        first = max(min(natural[1], room // 2), room - natural[2], least[0])
        second = max(room - first, least[1])
        if room - second >= max(least[0], min(natural[1], 20)) and room >= 30:
            return [natural[0], room - second, second, natural[3]]
    return None


# The lesson is projected: its table fits an 80-column projector.
LESSON_TABLE_WIDTH = 79


def print_table(results, width=None):
    """The closing table, fitted to `width` (default: the screen's): cells
    wrap at spaces, never inside a word (a URI, after a '/')."""
    rows = [("case", "expected", "observed", "ok")]
    for r in results:
        mark = {True: "yes", False: "NO", None: "skip"}[r.ok]
        rows.append((r.name, "\n".join(filter(None, r.expected)),
                     "\n".join(filter(None, r.observed)), mark))
    widths = column_widths(rows, min(width or screen.width, screen.width))
    if widths is None:                   # too narrow for columns: one block a case
        for name, expected, observed, mark in rows[1:]:
            screen.print()
            screen.say(f"{name}: {mark}")
            screen.say(expected.replace("\n", "; "), "   expected: ")
            screen.say(observed.replace("\n", "; "), "   observed: ")
        return
    screen.print()
    for row in rows:
        # A cell's k-th line (e.g. "server: ...") starts beside the other
        # cells' k-th lines, however many lines the one before it wrapped to.
        lines = [row[i].splitlines() or [""] for i in range(4)]
        for k in range(max(len(cell) for cell in lines)):
            cells = [wrap_cell(cell[k], widths[i]) if k < len(cell) else [""]
                     for i, cell in enumerate(lines)]     # each wrapped to its column
            for n in range(max(len(c) for c in cells)):
                parts = [(c[n] if n < len(c) else "").ljust(widths[i])
                         for i, c in enumerate(cells)]
                first = k == 0 and n == 0
                colour = {"yes": "32", "NO": "31"}.get(parts[3].strip()) if first else None
                parts[3] = screen.paint(parts[3].rstrip(), colour)
                screen.print(" | ".join(parts).rstrip())


