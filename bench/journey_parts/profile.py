"""Where the time goes: a summary of py-spy's raw (collapsed) stacks, process by process.

`bench/journey --profile DIR` records one run of our journey with
`py-spy record --subprocesses --format raw` (the validating worker, the web server and the worker
included) and prints this summary; `python -m journey_parts.profile FILE` prints it again.
py-spy samples 100 times a second the threads that are on a CPU, so samples / 100 is CPU
seconds.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict

_LINE_RE = re.compile(r"^(.*) (\d+)$")
_FRAME_RE = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")
OURS = ("dashboard/", "audiences/")


def _name(frame: str) -> str:
    """'function (path/file.py:12)' -> 'function (file.py)', shortened past site-packages."""
    m = _FRAME_RE.match(frame)
    if not m:
        return frame
    function, path = m.groups()
    path = path.split("site-packages/")[-1]
    for root in OURS:
        if root in path:
            path = root + path.split(root, 1)[1]
    return f"{function} ({path})"


def _process(frame: str) -> str:
    if frame.startswith("process "):
        label = frame.split(":", 1)[1].strip().strip('"') if ":" in frame else frame
        for words in (
            ("gunicorn", "web server (gunicorn)"),
            ("worker", "manage.py worker"),
            ("ours validate", "validating worker"),
            ("ours run", "journey (submits, polls)"),
        ):
            if words[0] in label:
                return words[1]
        return label[:60]
    return frame[:60]


def summarize(path: str, top: int = 12) -> list[str]:
    total: Counter[str] = Counter()
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    leaf: dict[str, Counter[str]] = defaultdict(Counter)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _LINE_RE.match(line.rstrip("\n"))
            if not m:
                continue
            frames, count = m.group(1).split(";"), int(m.group(2))
            # A child's stacks start with its parents' "process PID:cmdline" frames: the last
            # one names it.
            owners = [fr for fr in frames if fr.startswith("process ")]
            process = _process(owners[-1]) if owners else "process"
            frames = [fr for fr in frames if not fr.startswith(("process ", "thread "))]
            if not frames:
                continue
            total[process] += count
            names = [_name(fr) for fr in frames]
            for name in set(names):
                inclusive[process][name] += count
            leaf[process][names[-1]] += count
    lines = []
    for process, samples in total.most_common():
        if samples < 0.02 * sum(total.values()):
            continue
        lines.append(f"{process}: {samples / 100:.1f} CPU s ({samples} samples)")
        ours = [
            (n, c) for n, c in inclusive[process].most_common() if n.split("(")[-1].startswith(OURS)
        ]
        lines.append("  our functions, time inside them (inclusive):")
        for name, count in ours[:top]:
            lines.append(f"    {count / samples:6.1%}  {name}")
        lines.append("  hottest frames (self time):")
        for name, count in leaf[process].most_common(top):
            lines.append(f"    {count / samples:6.1%}  {name}")
    return lines


if __name__ == "__main__":
    print("\n".join(summarize(sys.argv[1])))
