"""Run a curses program in a pseudo-terminal and read its screen, as a person would.

Just enough of a VT100/xterm to render what ncurses sends for a plain full-screen program:
cursor addressing and motion, erasing, repeats, tabs; colours and modes are ignored.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import termios
import time

_CSI = re.compile(rb"\x1b\[([?>=]?)([0-9;]*)([ -/]*)([@-~])")
_OTHER_ESC = re.compile(rb"\x1b([()*+][0-9A-Za-z]|[=>78cDEHMNOZ\\]|\][^\x07\x1b]*(\x07|\x1b\\))")


class Screen:
    def __init__(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.grid = [[" "] * cols for _ in range(rows)]
        self.r = self.c = 0
        self.saved = (0, 0)
        self.last = " "
        self._pending = b""

    def text(self) -> str:
        return "\n".join("".join(row).rstrip() for row in self.grid)

    def _put(self, ch: str) -> None:
        if self.c >= self.cols:
            self.c = 0
            self.r = min(self.r + 1, self.rows - 1)
        self.grid[self.r][self.c] = ch
        self.last = ch
        self.c += 1

    def _erase_line(self, mode: int) -> None:
        row = self.grid[self.r]
        lo, hi = {0: (self.c, self.cols), 1: (0, self.c + 1), 2: (0, self.cols)}[mode]
        for i in range(lo, min(hi, self.cols)):
            row[i] = " "

    def feed(self, data: bytes) -> None:
        data = self._pending + data
        self._pending = b""
        i = 0
        while i < len(data):
            b = data[i]
            if b == 0x1B:
                m = _CSI.match(data, i)
                if m:
                    self._csi(m.group(1), m.group(2), m.group(4))
                    i = m.end()
                    continue
                m = _OTHER_ESC.match(data, i)
                if m:
                    if m.group(0) == b"\x1b7":
                        self.saved = (self.r, self.c)
                    elif m.group(0) == b"\x1b8":
                        self.r, self.c = self.saved
                    i = m.end()
                    continue
                if len(data) - i < 16:  # an escape cut in two by the read: wait for the rest
                    self._pending = data[i:]
                    return
                i += 1
                continue
            if b == 0x0D:
                self.c = 0
            elif b == 0x0A:
                self.r = min(self.r + 1, self.rows - 1)
            elif b == 0x08:
                self.c = max(self.c - 1, 0)
            elif b == 0x09:
                self.c = min((self.c // 8 + 1) * 8, self.cols - 1)
            elif b >= 0x20:
                # ncurses speaks UTF-8 or ASCII; multi-byte characters do not matter here
                self._put(chr(b) if b < 0x80 else "?")
            i += 1

    def _csi(self, private: bytes, params: bytes, final: bytes) -> None:
        if private:
            return
        args = [int(x) if x else 0 for x in params.split(b";")] if params else []

        def arg(n: int, default: int = 1) -> int:
            return args[n] if len(args) > n and args[n] else default

        f = final.decode()
        if f in "Hf":
            self.r = min(arg(0) - 1, self.rows - 1)
            self.c = min(arg(1) - 1, self.cols - 1)
        elif f == "A":
            self.r = max(self.r - arg(0), 0)
        elif f in "Be":
            self.r = min(self.r + arg(0), self.rows - 1)
        elif f in "Ca":
            self.c = min(self.c + arg(0), self.cols - 1)
        elif f == "D":
            self.c = max(self.c - arg(0), 0)
        elif f in "G`":
            self.c = min(arg(0) - 1, self.cols - 1)
        elif f == "d":
            self.r = min(arg(0) - 1, self.rows - 1)
        elif f == "K":
            self._erase_line(arg(0, 0))
        elif f == "J":
            mode = arg(0, 0)
            if mode == 0:
                self._erase_line(0)
                for r in range(self.r + 1, self.rows):
                    self.grid[r] = [" "] * self.cols
            elif mode in (2, 3):
                self.grid = [[" "] * self.cols for _ in range(self.rows)]
        elif f == "X":
            for i in range(self.c, min(self.c + arg(0), self.cols)):
                self.grid[self.r][i] = " "
        elif f == "b":
            for _ in range(arg(0)):
                self._put(self.last)
        elif f == "@":
            row = self.grid[self.r]
            n = arg(0)
            row[self.c:] = ([" "] * n + row[self.c:])[: self.cols - self.c]
        elif f == "P":
            row = self.grid[self.r]
            n = arg(0)
            row[self.c:] = (row[self.c + n:] + [" "] * n)[: self.cols - self.c]


class PtyProgram:
    """A program on a pty of a fixed size; ``read_until`` feeds its output to a Screen."""

    def __init__(self, argv: list[str], rows: int = 40, cols: int = 200,
                 env: dict[str, str] | None = None) -> None:
        self.screen = Screen(rows, cols)
        self.raw = bytearray()
        full = dict(os.environ)
        full.update(env or {})
        full.update(LINES=str(rows), COLUMNS=str(cols))
        winsize = struct.pack("HHHH", rows, cols, 0, 0)
        pid, fd = os.forkpty()
        if pid == 0:  # the child: size its terminal and exec, nothing else (fork safety)
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, winsize)
                os.execve(argv[0], argv, full)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd

    def pump(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False at EOF."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the program closed the terminal
            return False
        if not data:
            return False
        self.raw += data
        self.screen.feed(data)
        return True

    def read_until(self, predicate, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.screen.text()):
                return self.screen.text()
            if not self.pump(min(0.1, max(deadline - time.monotonic(), 0))):
                break
        text = self.screen.text()
        if predicate(text):
            return text
        raise AssertionError(f"screen never showed what we waited for; it shows:\n{text}")

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float) -> int | None:
        """Exit status after draining output, or None if still running at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
            self.pump(0.05)
        return None

    def close(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
        try:
            os.close(self.fd)
        except OSError:
            pass
